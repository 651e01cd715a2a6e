"""Stage ``recover``: the whole study end to end, tracked in MLflow.

world (or your files) -> features -> generators per (model, level) (tune, fit,
calibrate) -> recovery grid -> analysis report. The parent run ``recover/<study>`` logs
the configuration, a child run per job (winner, scores), the results tables as artifacts,
recovery accuracy per level and N as metrics (``recovery_accuracy_<level>``, step = N, so
the MLflow UI plots one curve per level) and the HTML report.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from modelrecovery.analysis.metrics import level_sort_key
from modelrecovery.config import load_config, split_overrides
from modelrecovery.devices import require_device
from modelrecovery.features.io import load_features
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.grid import GridConfig, Job, Level, jobs_of
from modelrecovery.recovery.job import JobResult
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.stages.common import human_exclusion_keys
from modelrecovery.stages.generators import (
    Generator,
    build_generators,
    probe_parameters,
    settings_from_config,
)
from modelrecovery.stages.inputs import (
    StudyInputs,
    check_study_files,
    model_names,
    select_names,
    study_inputs,
)
from modelrecovery.tracking import (
    TRACKING_DIR,
    file_hash,
    setup_experiment,
    source_hash,
    standard_tags,
)


def grid_config(
    config: dict[str, Any], models: list[str], provenance: dict | None = None
) -> GridConfig:
    """The grid of the study's configuration; ``provenance`` (hashes of every input and
    the generators' keys, see :func:`grid_provenance`) enters the job ids."""
    grid = dict(config["grid"])
    levels = tuple(Level(lv["family"], lv.get("k")) for lv in grid.pop("levels"))
    grid.setdefault("stopping", config.get("probe", {}).get("stopping", "converged"))
    if "triplet_selection" in grid:
        grid["triplet_selection"] = tuple(grid["triplet_selection"])
    return GridConfig(
        generators=tuple(select_names(config.get("generators"), models, "generators")),
        candidates=tuple(select_names(config.get("candidates"), models, "candidates")),
        sizes=tuple(int(n) for n in grid.pop("sizes")),
        seeds=tuple(int(s) for s in grid.pop("seeds")),
        levels=levels,
        lams=tuple(float(v) for v in grid.pop("lams")),
        extra=provenance or {},
        **grid,
    )


def level_grids(grid: GridConfig, config: dict[str, Any]) -> list[GridConfig]:
    """``grid`` split by the levels' own ``sizes`` / ``seeds`` (``grid.levels[i].sizes``,
    the study's: zero-shot, diagonal and rectangular at 4 sizes x 10 seeds, full W at 18 x
    30): one grid per distinct (sizes, seeds), in level order. Job ids do not depend on
    the sizes or seeds lists, so a level's jobs are the same whichever grid runs them."""
    groups: dict[tuple, list[Level]] = {}
    for level, entry in zip(grid.levels, config["grid"]["levels"], strict=True):
        sizes = tuple(int(n) for n in (entry.get("sizes") or grid.sizes))
        seeds = tuple(int(v) for v in (entry.get("seeds") or grid.seeds))
        groups.setdefault((sizes, seeds), []).append(level)
    return [
        dataclasses.replace(grid, sizes=sizes, seeds=seeds, levels=tuple(levels))
        for (sizes, seeds), levels in groups.items()
    ]


def grid_provenance(
    inputs: StudyInputs, candidates: list[str], generators: dict[tuple[str, str], Generator]
) -> dict:
    """What the jobs' results depend on besides the grid's settings: the content of every
    candidate's feature file, the human data, the package's source code, and each
    generator's run (per level and model)."""
    by_level: dict[str, dict[str, str]] = {}
    for (level, model), g in generators.items():
        by_level.setdefault(level, {})[model] = g.run_id
    return {
        "inputs": {
            "features": {m: file_hash(inputs.feature_paths[m]) for m in sorted(candidates)},
            "human": inputs.human.data_hash,
            "code": source_hash(),
        },
        "generators": by_level,
    }


def recovery_curve(jobs: pd.DataFrame) -> pd.DataFrame:
    """Recovery accuracy per flexibility level and N (one condition per level in a run),
    and per triplet selection when the grid has designs (column ``triplet_selection``)."""
    keys = ["level", "n_train"]
    if "triplet_selection" in jobs.columns:
        jobs = jobs.assign(triplet_selection=jobs["triplet_selection"].fillna("random"))
        keys = ["level", "triplet_selection", "n_train"]
    curve = jobs.groupby(keys)["recovered"].agg(recovery_accuracy="mean", n_jobs="size")
    curve = curve.reset_index()
    order = sorted(curve["level"].unique(), key=level_sort_key)
    curve["level"] = pd.Categorical(curve["level"], categories=order, ordered=True)
    return curve.sort_values(keys).astype({"level": str}).reset_index(drop=True)


@functools.cache
def _context_tags() -> dict[str, str]:
    """MLflow's own run tags (user, source, git) as ``mlflow.start_run`` resolves them,
    resolved once per process instead of once per job run."""
    from mlflow.tracking.context.registry import resolve_tags

    return {k: v for k, v in resolve_tags().items() if k.startswith("mlflow.")}


def _log_job(job: Job, result: JobResult, device: str = "cpu") -> None:
    """One child run of the active (recover) run per finished job: its parameters, tags
    and metrics in three requests to the tracking server (create, one batch, terminate)
    instead of four or more; against a remote server each request costs it ~30 ms of CPU,
    taken from the workers when they share its machine (``benchmarks/tracking_overhead.py``)."""
    from mlflow.entities import Metric, Param, RunStatus
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    row = result.job.iloc[0]
    tags = standard_tags("job", job.generator, job.level.family) | {
        "winner": str(row["winner"]),
        "job_id": job.job_id,
        "level": job.level.label,
    }
    params = {
        "generator": job.generator,
        "n_train": job.n_train,
        "seed": job.seed,
        "family": job.level.family,
        "k": job.level.k,
        "level": job.level.label,
        "tie_rule": row["tie_rule"],
        "stopping": row["stopping"],
        "device": device,
    }
    metrics = {
        "recovered": float(row["recovered"]),
        "generator_rank": float(row["generator_rank"]),
        "n_tied_top": float(row["n_tied_top"]),
        "seconds": float(row["seconds"]),
    }
    for _, s in result.scores.iterrows():
        metrics[f"score_{s['candidate']}"] = float(s["score"])
    parent = mlflow.active_run()
    if parent is None:  # no recover run (a library caller): a top-level run
        with mlflow.start_run(run_name=f"job/{job.job_id}", tags=tags):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
        return
    client = MlflowClient()
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"job/{job.job_id}",
        tags=_context_tags() | tags | {MLFLOW_PARENT_RUN_ID: parent.info.run_id},
    )
    now = int(time.time() * 1000)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        status = RunStatus.to_string(RunStatus.FINISHED)
    finally:
        client.set_terminated(run.info.run_id, status)


def models_table(
    generators: dict[tuple[str, str], Generator], metadata: dict[str, dict] | None = None
) -> pd.DataFrame:
    """Per (model, level) properties for the analysis (docs/results_tables.md)."""
    metadata = metadata or {}
    rows = []
    for (level, model), g in generators.items():
        n_parameters = metadata.get(model, {}).get("n_parameters")
        rows.append(
            {
                "model": model,
                "family": g.family,
                "k": g.k,
                "level": level,
                "feature_dim": g.feature_dim,
                "n_parameters": pd.NA if n_parameters is None else int(n_parameters),
                "probe_parameters": probe_parameters(g.family, g.k, g.feature_dim),
                "human_accuracy": g.human_test_accuracy,
                "human_nll": g.human_test_nll,
                "lam": g.lam,
                "temperature": g.temperature,
                "generator_run": g.run_id,
            }
        )
    table = pd.DataFrame(rows)
    for column in ("k", "n_parameters"):
        table[column] = table[column].astype("Int64")
    return table


def run_study(
    config: dict[str, Any],
    *,
    executor: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the study of ``config`` (see conf/default.yaml); returns a summary."""
    start = time.perf_counter()
    study = config["study"]
    execution = config.get("executor") or {}
    executor = executor or execution.get("kind", "inprocess")
    # bad names, sizes or devices fail before any work and before any run is created
    checked = grid_config(config, model_names(config))
    check_study_files(config)
    specs, tune = settings_from_config(config)
    for spec in specs:
        require_device(spec.device, "probe.device")
    if executor == "inprocess" or not execution.get("address"):  # else the workers check
        require_device(checked.device, "grid.device")
    jobs_per_gpu = int(execution.get("jobs_per_gpu", 2))
    if jobs_per_gpu < 1:
        raise ValueError(f"executor.jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    experiment_id = setup_experiment(study)
    tags = standard_tags("recover") | {"study": study}
    timings: dict[str, float] = {}
    with mlflow.start_run(run_name=f"recover/{study}", tags=tags) as parent:
        mlflow.log_dict(config, "config.yaml")
        mlflow.log_params(
            {
                "study": study,
                "rules": config.get("rules", "platform"),
                "executor": executor,
                "device": checked.device,
                "probe_device": specs[0].device if specs else "cpu",
            }
        )
        tic = time.perf_counter()
        inputs = study_inputs(config, progress)
        timings["inputs_seconds"] = time.perf_counter() - tic
        models = list(inputs.feature_paths)
        wanted = select_names(config.get("generators"), models, "generators")
        if set(checked.triplet_selection) - {"random"}:  # designs need every candidate's probe
            chosen = select_names(config.get("candidates"), models, "candidates")
            wanted = wanted + [m for m in chosen if m not in wanted]
        tic = time.perf_counter()
        generators = build_generators(
            {m: inputs.feature_paths[m] for m in wanted},
            inputs.human,
            experiment_id=experiment_id,
            specs=specs,
            tune=tune,
            progress=progress,
            workers=config["probe"].get("workers", 1),
        )
        timings["generators_seconds"] = time.perf_counter() - tic
        candidates = select_names(config.get("candidates"), models, "candidates")
        grid = grid_config(config, models, grid_provenance(inputs, candidates, generators))
        mlflow.log_params(
            {
                "levels": ",".join(level.label for level in grid.levels),
                "stopping": grid.stopping,
                "tie_rule": grid.tie_rule,
                "warm_start": grid.warm_start,
                "criterion": grid.criterion,
                "triplet_selection": ",".join(grid.triplet_selection),
                "selection_criterion": grid.selection_criterion,
                "reduction": grid.reduction,
                "evaluation": grid.evaluation,
                "reshuffle": grid.reshuffle,
                "matmul_precision": grid.matmul_precision,
                "sampling": "paper_compatible" if grid.paper_compatible_sampling else "uniform",
            }
        )
        features = {
            m: load_features(inputs.feature_paths[m], n_concepts=inputs.human.train.n_concepts)
            for m in grid.candidates
        }
        exclude = human_exclusion_keys(inputs.human)
        grid_inputs = GridInputs(
            {key: (g.z, g.temperature) for key, g in generators.items()},
            features,
            exclude,
            human_test=inputs.human.test,
        )
        store = ResultsStore(config.get("store") or TRACKING_DIR / "results" / study)
        tic = time.perf_counter()
        ran = []
        grids = level_grids(grid, config)
        for part in grids:  # one grid per distinct (sizes, seeds) of the levels
            ran += run_grid(
                part,
                grid_inputs,
                store,
                executor=executor,
                dask_address=execution.get("address"),
                n_workers=int(execution.get("n_workers", 2)),
                jobs_per_gpu=jobs_per_gpu,
                progress=progress,
                on_done=functools.partial(_log_job, device=grid.device),
            )
        timings["jobs_seconds"] = time.perf_counter() - tic
        tables = store.load({job.job_id for part in grids for job in jobs_of(part)})
        curve = recovery_curve(tables["jobs"])
        for _, row in curve.iterrows():
            selection = row.get("triplet_selection", "random")
            suffix = "" if selection == "random" else f"_{selection}"
            mlflow.log_metric(
                f"recovery_accuracy_{row['level']}{suffix}",
                row["recovery_accuracy"],
                step=int(row["n_train"]),
            )
        models_df = models_table(generators, inputs.metadata)
        for level, part in models_df.groupby("level"):
            mlflow.log_metric(f"human_accuracy_{level}", float(part["human_accuracy"].mean()))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "results"
            folder.mkdir()
            for name, frame in {**tables, "models": models_df}.items():
                frame.to_parquet(folder / f"{name}.parquet", index=False)
            curve.to_csv(folder / "recovery_curve.csv", index=False)
            # the model groups (training objective, architecture), for `analyze` to pool
            (folder / "groups.json").write_text(json.dumps(model_groups(inputs.metadata)))
            mlflow.log_artifacts(str(folder), artifact_path="results")
        report_path = None
        if config.get("report", True):
            tic = time.perf_counter()
            report_path = _report(tables, models_df, generators, features, inputs, parent)
            timings["report_seconds"] = time.perf_counter() - tic
        summary = {
            "run_id": parent.info.run_id,
            "experiment": study,
            "jobs": len(tables["jobs"]),
            "jobs_run_now": len(ran),
            "store": str(store.root),
            "report": str(report_path) if report_path else None,
            **timings,
            "seconds": time.perf_counter() - start,
        }
        mlflow.log_metrics({**timings, "seconds": summary["seconds"]})
    print(curve.to_string(index=False))
    return summary


def model_groups(metadata: dict[str, dict]) -> dict[str, dict[str, str]]:
    """The report's groupings from the models' metadata: training objective and
    architecture, where the study's config gives them."""
    from modelrecovery.analysis.groups import group_labels

    out = {key: group_labels(metadata, key) for key in ("objective", "architecture")}
    return {key: labels for key, labels in out.items() if labels}


def _report(tables, models_df, generators, features, inputs, parent):
    """Build the analysis report; log it and its paper table; returns the ``Report``."""
    from modelrecovery.analysis import ReportConfig, build_report

    # geometry: the most flexible level's transforms (the others are in their runs)
    levels = sorted({level for level, _ in generators}, key=level_sort_key)
    top = levels[-1]
    transforms = {}
    for (level, name), g in generators.items():
        if level == top:
            local = mlflow.artifacts.download_artifacts(run_id=g.run_id, artifact_path="generator")
            transforms[name] = np.load(Path(local) / "W.npy")
    out_dir = TRACKING_DIR / "reports" / parent.info.run_id
    provenance = {
        "recover_run": parent.info.run_id,
        "git_commit": standard_tags("recover")["git_commit"],
        "human_data_hash": inputs.human.data_hash,
        "generator_runs": {f"{m}/{lv}": g.run_id for (lv, m), g in generators.items()},
        "geometry_level": top,
        **inputs.provenance,
    }
    report = build_report(
        tables["jobs"],
        tables["scores"],
        models_df,
        features={m: features[m] for m in transforms if m in features},
        transforms=transforms,
        human_embedding=inputs.human_embedding,
        provenance=provenance,
        out_dir=out_dir,
        config=ReportConfig(geometry_level=top),
        groups=model_groups(inputs.metadata),
    )
    mlflow.log_artifacts(str(out_dir), artifact_path="report")
    if report.paper_table is not None:
        print(report.paper_table.to_string(index=False))
    print_group_summary(report.tables)
    return report


def print_group_summary(tables: dict[str, Path]) -> None:
    """Print, at each condition's largest N, recovery within the model groups and the
    systematic bias (models ranked above others on others' data; generators whose mean
    rank on their own data is above 2), from the report's tables."""
    if "systematic_bias" in tables:
        bias = pd.read_csv(tables["systematic_bias"])
        for condition, part in bias.groupby("condition", sort=False):
            top = part[part["n_train"] == part["n_train"].max()]
            above = top.loc[top["own_mean_rank"] > 2, "model"].tolist()
            favoured = top[top["p_excess"] < 0.05].sort_values("others_mean_rank")
            print(
                f"systematic bias [{condition}, N={int(top['n_train'].iloc[0])}]: "
                f"{len(above)} generator(s) with mean rank > 2 on their own data"
                + (f" ({', '.join(above)})" if above else "")
                + "; winning others' jobs more than the fair share: "
                + (", ".join(favoured["model"]) or "none")
            )
    for name in ("within_objective", "within_architecture"):
        if name not in tables:
            continue
        within = pd.read_csv(tables[name])
        for condition, part in within.groupby("condition", sort=False):
            top = part[part["n_train"] == part["n_train"].max()]
            cells = ", ".join(
                f"{row['group']} {row['recovery_accuracy']:.2f} "
                f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
                for _, row in top.iterrows()
            )
            print(
                f"recovery {name.replace('_', ' ')} groups [{condition}, "
                f"N={int(top['n_train'].iloc[0])}]: {cells}"
            )


def cmd_recover(args: argparse.Namespace) -> dict:
    """Run the whole study (world, features, generators, recovery grid, report)."""
    from modelrecovery.backends import check_dask_scheduler

    config = load_config(args.config, split_overrides(args.set))
    address = (config.get("executor") or {}).get("address")
    if address and (args.executor or (config.get("executor") or {}).get("kind")) == "dask":
        check_dask_scheduler(str(address))  # before the world or any run is built
    summary = run_study(config, executor=args.executor, progress=not args.no_progress)
    return summary
