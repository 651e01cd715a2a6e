"""Stage ``recover``: the whole study end to end, tracked in MLflow.

world (or your files) -> features -> generators (tune, fit, calibrate) -> recovery grid ->
analysis report. The parent run ``recover/<study>`` logs the configuration, a child run
per job (winner, scores), the results tables as artifacts, recovery accuracy per N as
metrics (step = N, so the MLflow UI plots the curve) and the HTML report.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from modelrecovery.config import CONF_DIR, load_config, split_overrides
from modelrecovery.features.io import load_features
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.grid import GridConfig, Job, Level, jobs_of
from modelrecovery.recovery.job import JobResult
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.stages.common import HumanData, human_exclusion_keys, load_human_data
from modelrecovery.stages.generators import Generator, build_generators, settings_from_config
from modelrecovery.tracking import TRACKING_DIR, setup_experiment, standard_tags


@dataclass
class StudyInputs:
    """Human data, feature files per model and (for a world) the human embedding."""

    human: HumanData
    feature_paths: dict[str, Path]
    human_embedding: np.ndarray | None
    provenance: dict[str, Any]


def short_name(backbone: str) -> str:
    """A readable model name from a backbone name (``resized:128:timm:resnet10t`` ->
    ``resnet10t``)."""
    return backbone.rsplit(":", 1)[-1].replace("/", "_")


def study_inputs(config: dict[str, Any], progress: bool = True) -> StudyInputs:
    """Resolve the study's data: build/extract the embedded world, or read given files."""
    data = config["data"]
    if data["kind"] == "world":
        from modelrecovery.data.world import WorldConfig, build_world
        from modelrecovery.features.default_models import extract_world_features, resolve_models

        world_path = Path(data["world_config"])
        if not world_path.is_absolute() and not world_path.exists():
            world_path = CONF_DIR.parent / world_path  # relative to the project
        world_config = WorldConfig.from_yaml(world_path, data.get("world_overrides"))
        world = build_world(world_config, data.get("root"))
        specs = resolve_models(config.get("models"))
        names = [short_name(s.name) for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"model short names repeat: {names}")
        paths = extract_world_features(world, specs, progress=progress)
        feature_paths = {short_name(name): Path(path) for name, path in paths.items()}
        human = load_human_data(world.triplets_path, n_concepts=world.n_concepts)
        return StudyInputs(
            human,
            feature_paths,
            world.human_embedding,
            {"world": str(world.root), "world_temperature": world.temperature},
        )
    if data["kind"] == "files":
        models = config.get("models") or {}
        if not models:
            raise ValueError("data.kind=files needs a 'models' mapping: name -> feature file")
        folder = Path(data.get("features_dir") or ".")
        feature_paths = {name: folder / file for name, file in models.items()}
        missing = {n: str(p) for n, p in feature_paths.items() if not p.exists()}
        if missing:
            raise FileNotFoundError(f"feature files not found: {missing}")
        triplets = Path(data["triplets"])
        if not triplets.exists():
            raise FileNotFoundError(f"human triplet file not found: {triplets}")
        human = load_human_data(triplets, n_concepts=data.get("n_concepts"))
        return StudyInputs(human, feature_paths, None, {"triplets": str(triplets)})
    raise ValueError(f"data.kind must be 'world' or 'files', got {data['kind']!r}")


def model_names(config: dict[str, Any]) -> list[str]:
    """The study's model names, known without building anything."""
    if config["data"]["kind"] == "world":
        from modelrecovery.features.default_models import resolve_models

        return [short_name(s.name) for s in resolve_models(config.get("models"))]
    return list(config.get("models") or {})


def _names(selection: Any, available: list[str], what: str) -> list[str]:
    if selection in (None, "all"):
        return list(available)
    unknown = [m for m in selection if m not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known models: {available}")
    return list(selection)


def grid_config(config: dict[str, Any], models: list[str], generator_runs: dict) -> GridConfig:
    """The grid of the study's configuration."""
    grid = dict(config["grid"])
    levels = tuple(Level(lv["family"], lv.get("k")) for lv in grid.pop("levels"))
    return GridConfig(
        generators=tuple(_names(config.get("generators"), models, "generators")),
        candidates=tuple(_names(config.get("candidates"), models, "candidates")),
        sizes=tuple(int(n) for n in grid.pop("sizes")),
        seeds=tuple(int(s) for s in grid.pop("seeds")),
        levels=levels,
        lams=tuple(float(v) for v in grid.pop("lams")),
        extra={"generator_runs": generator_runs},
        **grid,
    )


def recovery_curve(jobs: pd.DataFrame) -> pd.DataFrame:
    """Recovery accuracy per flexibility level and N."""
    level = jobs["family"] + jobs["k"].map(lambda k: "" if pd.isna(k) else str(int(k)))
    return (
        jobs.assign(level=level)
        .groupby(["level", "n_train"])["recovered"]
        .agg(recovery_accuracy="mean", n_jobs="size")
        .reset_index()
    )


def _log_job(job: Job, result: JobResult) -> None:
    row = result.job.iloc[0]
    tags = standard_tags("job", job.generator, job.level.family) | {
        "winner": str(row["winner"]),
        "job_id": job.job_id,
    }
    with mlflow.start_run(run_name=f"job/{job.job_id}", nested=True, tags=tags):
        mlflow.log_params(
            {
                "generator": job.generator,
                "n_train": job.n_train,
                "seed": job.seed,
                "family": job.level.family,
                "k": job.level.k,
            }
        )
        metrics = {
            "recovered": float(row["recovered"]),
            "generator_rank": float(row["generator_rank"]),
            "seconds": float(row["seconds"]),
        }
        for _, s in result.scores.iterrows():
            metrics[f"score_{s['candidate']}"] = float(s["score"])
        mlflow.log_metrics(metrics)


def models_table(generators: dict[str, Generator], family: str) -> pd.DataFrame:
    """Per-model properties for the analysis (docs/results_tables.md)."""
    return pd.DataFrame(
        [
            {
                "model": g.model,
                "family": family,
                "feature_dim": g.feature_dim,
                "n_parameters": pd.NA,
                "human_accuracy": g.human_test_accuracy,
                "human_nll": g.human_test_nll,
                "lam": g.lam,
                "temperature": g.temperature,
            }
            for g in generators.values()
        ]
    )


def run_study(
    config: dict[str, Any],
    *,
    executor: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the study of ``config`` (see conf/default.yaml); returns a summary."""
    start = time.perf_counter()
    study = config["study"]
    experiment_id = setup_experiment(study)
    execution = config.get("executor") or {}
    executor = executor or execution.get("kind", "inprocess")
    grid_config(config, model_names(config), {})  # bad names or sizes fail before any work
    settings_from_config(config)
    tags = standard_tags("recover") | {"study": study}
    with mlflow.start_run(run_name=f"recover/{study}", tags=tags) as parent:
        mlflow.log_dict(config, "config.yaml")
        mlflow.log_params({"study": study, "executor": executor})
        inputs = study_inputs(config, progress)
        models = list(inputs.feature_paths)
        spec, tune = settings_from_config(config)
        wanted = _names(config.get("generators"), models, "generators")
        generators = build_generators(
            {m: inputs.feature_paths[m] for m in wanted},
            inputs.human,
            experiment_id=experiment_id,
            spec=spec,
            tune=tune,
            progress=progress,
        )
        grid = grid_config(config, models, {m: g.run_id for m, g in generators.items()})
        features = {
            m: load_features(inputs.feature_paths[m], n_concepts=inputs.human.train.n_concepts)
            for m in grid.candidates
        }
        exclude = human_exclusion_keys(inputs.human)
        grid_inputs = GridInputs(
            {m: (g.z, g.temperature) for m, g in generators.items()}, features, exclude
        )
        store = ResultsStore(config.get("store") or TRACKING_DIR / "results" / study)
        ran = run_grid(
            grid,
            grid_inputs,
            store,
            executor=executor,
            dask_address=execution.get("address"),
            n_workers=int(execution.get("n_workers", 2)),
            progress=progress,
            on_done=_log_job,
        )
        tables = store.load({job.job_id for job in jobs_of(grid)})
        curve = recovery_curve(tables["jobs"])
        for level, part in curve.groupby("level"):
            for _, row in part.iterrows():
                mlflow.log_metric(
                    f"recovery_accuracy_{level}", row["recovery_accuracy"], step=int(row["n_train"])
                )
        models_df = models_table(generators, spec.family)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "results"
            folder.mkdir()
            for name, frame in {**tables, "models": models_df}.items():
                frame.to_parquet(folder / f"{name}.parquet", index=False)
            curve.to_csv(folder / "recovery_curve.csv", index=False)
            mlflow.log_artifacts(str(folder), artifact_path="results")
        report_path = None
        if config.get("report", True):
            report_path = _report(tables, models_df, generators, features, inputs, parent)
        summary = {
            "run_id": parent.info.run_id,
            "experiment": study,
            "jobs": len(tables["jobs"]),
            "jobs_run_now": len(ran),
            "store": str(store.root),
            "report": str(report_path) if report_path else None,
            "seconds": time.perf_counter() - start,
        }
        mlflow.log_metric("seconds", summary["seconds"])
    print(curve.to_string(index=False))
    return summary


def _report(tables, models_df, generators, features, inputs, parent) -> Path:
    from modelrecovery.analysis import build_report

    transforms = {}
    for name, g in generators.items():
        local = mlflow.artifacts.download_artifacts(run_id=g.run_id, artifact_path="generator")
        transforms[name] = np.load(Path(local) / "W.npy")
    out_dir = TRACKING_DIR / "reports" / parent.info.run_id
    provenance = {
        "recover_run": parent.info.run_id,
        "git_commit": standard_tags("recover")["git_commit"],
        "human_data_hash": inputs.human.data_hash,
        "generator_runs": {m: g.run_id for m, g in generators.items()},
        **inputs.provenance,
    }
    path = build_report(
        tables["jobs"],
        tables["scores"],
        models_df,
        features={m: features[m] for m in generators if m in features},
        transforms=transforms,
        human_embedding=inputs.human_embedding,
        provenance=provenance,
        out_dir=out_dir,
    )
    mlflow.log_artifacts(str(out_dir), artifact_path="report")
    return path


def cmd_recover(args: argparse.Namespace) -> dict:
    """Run the whole study (world, features, generators, recovery grid, report)."""
    config = load_config(args.config, split_overrides(args.set))
    summary = run_study(config, executor=args.executor, progress=not args.no_progress)
    return summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help=cmd_recover.__doc__)
    p.add_argument("--config", default="default", help="conf/<name>.yaml or a path")
    p.add_argument("--set", nargs="*", help="overrides key.sub=value")
    p.add_argument("--executor", default=None, choices=["inprocess", "dask"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_recover)
