"""Stage ``analyze``: pool the results tables of one or many recover runs (found with
``mlflow.search_runs`` by experiment, tags or run ids), run the analyses and log the
report as a new run ``analyze/<study>``.

Only like pools with like: a job is identified by ``(condition_key, generator, n_train,
seed)`` (the key derived from the condition columns for tables that lack it), not by its
``job_id`` (which changes with every code commit). Seeds or sizes added by later runs pool
with earlier ones; a job present in several runs counts once, the latest run winning;
different conditions stay apart and are reported side by side
(:func:`modelrecovery.analysis.pooling.pool_tables`).

The report gets what a recover run's report gets: for the most flexible level, each
generator's fitted ``W`` (its run's ``generator/W.npy``) and the model's features (the
file its generator run logged as ``features_path``), and the study's human embedding
(from the latest run's ``config.yaml``); what can no longer be found is skipped with a
one-line warning. Recovery accuracy is logged under the recover stage's metric names
(:func:`modelrecovery.analysis.metrics.recovery_metric_points`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from modelrecovery.analysis.metrics import (
    add_condition,
    level_sort_key,
    recovery_curve,
    recovery_metric_points,
)
from modelrecovery.analysis.pooling import Pooled, ensure_condition_key, pool_tables
from modelrecovery.study.tracking_names import ANALYZE
from modelrecovery.tracking import TRACKING_DIR, setup_experiment, standard_tags

TABLES = ("jobs", "scores", "fits", "models")


def find_recover_runs(
    experiment: str, run_ids: list[str] | None = None, filter_string: str = ""
) -> list[str]:
    """Run ids of finished recover runs of ``experiment`` (or the given ``run_ids``)."""
    if run_ids:
        return list(run_ids)
    experiment_obj = mlflow.get_experiment_by_name(experiment)
    if experiment_obj is None:
        raise ValueError(f"no MLflow experiment named {experiment!r}")
    query = "tags.stage = 'recover' and attributes.status = 'FINISHED'"
    if filter_string:
        query += f" and {filter_string}"
    try:
        runs = mlflow.search_runs(
            experiment_ids=[experiment_obj.experiment_id],
            filter_string=query,
            order_by=["attributes.start_time ASC"],
            output_format="list",
        )
    except mlflow.exceptions.MlflowException as err:
        if not filter_string:
            raise
        reason = " ".join(str(err.message).split())[:200]
        raise ValueError(
            f"--filter {filter_string!r}: not a filter MLflow can read ({reason}); "
            "e.g. \"params.levels = 'full'\" or \"tags.study = 'default'\""
        ) from None
    if not runs:
        raise ValueError(f"no finished recover runs in experiment {experiment!r} ({query})")
    return [r.info.run_id for r in runs]


def load_run_groups(run_ids: list[str]) -> dict[str, dict[str, str]]:
    """The model groups (``results/groups.json``: grouping -> model -> group) of the runs,
    merged (a later run's labels win); runs logged before groups were saved add none."""
    merged: dict[str, dict[str, str]] = {}
    for run_id in run_ids:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="results"))
        path = local / "groups.json"
        if path.exists():
            for grouping, labels in json.loads(path.read_text()).items():
                merged.setdefault(grouping, {}).update(labels)
    return merged


def _start_time(run_id: str) -> int:
    return int(mlflow.get_run(run_id).info.start_time or 0)


def load_run_tables(run_id: str) -> dict[str, pd.DataFrame]:
    """The ``results/*.parquet`` tables of one run (those it has)."""
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="results"))
    return {
        name: pd.read_parquet(local / f"{name}.parquet")
        for name in TABLES
        if (local / f"{name}.parquet").exists()
    }


def pool_runs(run_ids: list[str]) -> Pooled:
    """Pool the runs' tables like with like, the latest run (by start time) winning.

    One job per ``(condition_key, generator, n_train, seed)``; scores and fits of the jobs
    kept (same run, same ``job_id``); models one row per ``(model, level)``.
    """
    ordered = sorted(run_ids, key=lambda r: (_start_time(r), run_ids.index(r)))
    pooled = pool_tables([(run_id, load_run_tables(run_id)) for run_id in ordered])
    if pooled.tables["jobs"].empty:
        raise ValueError(f"the runs {run_ids} hold no results/jobs.parquet")
    return pooled


def gather_tables(run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """The pooled ``jobs``, ``scores``, ``fits`` and ``models`` tables of the runs
    (see :func:`pool_runs`)."""
    return pool_runs(run_ids).tables


def recovery_metrics(jobs: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Recovery accuracy per metric name and N, never mixing levels or conditions: the
    names and values the analyze run logs (name -> {N: accuracy}).

    Names are the recover stage's, ``recovery_accuracy_<level>`` (``_<selection>`` for a
    triplet selection other than random), with ``_<first 8 hex of condition_key>``
    appended only when several conditions share the level and selection
    (:func:`~modelrecovery.analysis.metrics.recovery_metric_points`).
    """
    out: dict[str, dict[int, float]] = {}
    for name, value, step in recovery_metric_points(recovery_curve(jobs, split_conditions=True)):
        out.setdefault(name, {})[step] = value
    return out


def _warn(message: str) -> None:
    print(f"analyze: {message}", file=sys.stderr)


def load_generator_inputs(
    models: pd.DataFrame | None, level: str | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features and fitted ``W`` of the generators of ``level`` (``models`` rows with a
    ``generator_run``): ``W.npy`` from the run's ``generator`` artifact, the features from
    the file the run logged as ``features_path``. A model whose run, ``W`` or feature file
    is gone is skipped with a one-line warning. Returns ``(features, transforms)``."""
    from modelrecovery.features.io import load_features

    features: dict[str, np.ndarray] = {}
    transforms: dict[str, np.ndarray] = {}
    if models is None or level is None or "generator_run" not in models.columns:
        return features, transforms
    rows = models[(models["level"].astype(str) == str(level)) & models["generator_run"].notna()]
    for model, run_id in zip(rows["model"], rows["generator_run"], strict=True):
        try:
            path = mlflow.get_run(str(run_id)).data.params.get("features_path")
            if not path:
                raise ValueError(f"generator run {run_id} logged no features_path")
            local = mlflow.artifacts.download_artifacts(
                run_id=str(run_id), artifact_path="generator"
            )
            w = np.load(Path(local) / "W.npy")
            x = load_features(path)
        except Exception as err:  # any missing piece (run, W, file): skip this model
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            _warn(f"geometry: model {model} ({level}) skipped: {first}")
            continue
        features[str(model)], transforms[str(model)] = x, w
    return features, transforms


def load_human_embedding(config: dict[str, Any] | None) -> np.ndarray | None:
    """The study's human embedding, if it has one: ``data.human_embedding`` of a files
    study, the world's ``human_embedding.npy`` of a world study (when the world is still
    there); None otherwise (with a warning when it was named but is not found)."""
    data = (config or {}).get("data") or {}
    try:
        if data.get("kind") == "files" and data.get("human_embedding"):
            from modelrecovery.features.io import load_features

            return load_features(data["human_embedding"]).astype(np.float64)
        if data.get("kind") == "world" and data.get("world_config"):
            from modelrecovery.config import resolve_world_config
            from modelrecovery.world import WorldConfig
            from modelrecovery.world.build import EMBEDDING_FILE, default_world_root

            path = resolve_world_config(data["world_config"])
            world = WorldConfig.from_yaml(path, data.get("world_overrides"))
            root = Path(data["root"]) if data.get("root") else default_world_root()
            return np.load(root / world.folder_name() / EMBEDDING_FILE, allow_pickle=False)
    except Exception as err:  # the report goes on without it
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        _warn(f"human embedding skipped: {first}")
    return None


def report_config(config: dict[str, Any] | None, top: str | None):
    """The report's settings from the (last) study's configuration: the geometry level, the
    reference, the grid's folds and fractions."""
    from modelrecovery.analysis import ReportConfig

    grid = (config or {}).get("grid") or {}
    settings = {
        key: grid[key] for key in ("n_folds", "train_fraction", "eval_fraction") if key in grid
    }
    n_concepts = ((config or {}).get("data") or {}).get("n_concepts")
    return ReportConfig(
        geometry_level=top,
        reference=(config or {}).get("reference", "none"),
        n_concepts=n_concepts,
        **settings,
    )


def load_human_scores(models: pd.DataFrame | None) -> pd.DataFrame | None:
    """Each generator's per-response scores on the held-out human triplets (its run's
    ``generator/human_test.npz``), for the verdict's leaderboard; None when no run has
    them (the leaderboard then has no intervals)."""
    if models is None or "generator_run" not in models.columns:
        return None
    frames = []
    for model, level, run_id in zip(
        models["model"], models["level"], models["generator_run"], strict=True
    ):
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=str(run_id), artifact_path="generator/human_test.npz"
            )
            scores = np.load(local)
        except Exception:  # a run from before the scores were kept
            continue
        frames.append(
            pd.DataFrame(
                {
                    "model": model,
                    "level": level,
                    "response": np.arange(len(scores["correct"])),
                    "correct": scores["correct"],
                    "nll": scores["nll"],
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True).drop_duplicates(["model", "level", "response"])
        if frames
        else None
    )


def load_run_config(run_ids: list[str]) -> dict[str, Any] | None:
    """The ``config.yaml`` of the last of ``run_ids`` that logged one (None if none did)."""
    import yaml

    for run_id in reversed(run_ids):
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml")
        except Exception:  # a run without config.yaml: try the one before
            continue
        return yaml.safe_load(Path(local).read_text(encoding="utf-8"))
    return None


def analyze(
    experiment: str,
    *,
    run_ids: list[str] | None = None,
    filter_string: str = "",
    out_dir: str | Path | None = None,
) -> dict:
    """Pool the recover runs, build the report, log it as a run ``analyze/<study>``."""
    from modelrecovery.analysis import build_report
    from modelrecovery.outputs import check_output_folder

    # the report's folder can be written: checked before any run is created
    check_output_folder(out_dir if out_dir else TRACKING_DIR / "reports")
    setup_experiment(experiment)
    sources = find_recover_runs(experiment, run_ids, filter_string)
    pooled = pool_runs(sources)
    tables = pooled.tables
    models = tables["models"] if not tables["models"].empty else None
    # geometry: the most flexible level's generators, as the recover run's report
    levels = sorted(ensure_condition_key(tables["jobs"])["level"].dropna().astype(str).unique(),
                    key=level_sort_key)  # fmt: skip
    top = levels[-1] if levels else None
    features, transforms = load_generator_inputs(models, top)
    ordered = sorted(sources, key=lambda r: (_start_time(r), sources.index(r)))
    config = load_run_config(ordered)
    human_embedding = load_human_embedding(config) if features else None
    human_scores = load_human_scores(models)
    tags = standard_tags(ANALYZE.stage) | {"sources": ",".join(sources)}
    with mlflow.start_run(run_name=ANALYZE.run_name(study=experiment), tags=tags) as run:
        mlflow.log_params(
            {
                "n_sources": len(sources),
                "n_jobs": len(tables["jobs"]),
                "n_duplicate_jobs": pooled.n_duplicates,
            }
        )
        labelled = add_condition(tables["jobs"])
        conditions = labelled.groupby("condition_key", sort=True)["condition"].first().to_dict()
        mlflow.log_dict(
            {"conditions": conditions, "jobs_kept_per_run": pooled.kept_per_source},
            "pooling.json",
        )
        out = Path(out_dir) if out_dir else TRACKING_DIR / "reports" / run.info.run_id
        report = build_report(
            tables["jobs"],
            tables["scores"],
            models,
            features=features,
            transforms=transforms,
            human_embedding=human_embedding,
            provenance={
                "source_runs": sources,
                "analyze_run": run.info.run_id,
                "jobs kept per source run": pooled.kept_per_source,
                "duplicate job rows dropped": pooled.n_duplicates,
                "geometry_level": top,
            },
            out_dir=out,
            config=report_config(config, top),
            groups=load_run_groups(sources) or None,
            human_scores=human_scores,
        )
        mlflow.log_artifacts(str(out), artifact_path="report")
        curve = recovery_curve(tables["jobs"], split_conditions=True)
        for name, value, step in recovery_metric_points(curve):
            mlflow.log_metric(name, value, step=step)
    from modelrecovery.stages.recover import print_verdict

    print_verdict(list(report.verdict))
    return {
        "run_id": run.info.run_id,
        "sources": sources,
        "report": str(report.html),
        "paper_table": str(report.tables["tradeoff"]) if "tradeoff" in report.tables else None,
        "out_dir": str(out),
    }


def cmd_analyze(args: argparse.Namespace) -> dict:
    """Pool recover runs and write the analysis report (figures, tables, HTML)."""
    return analyze(
        args.experiment, run_ids=args.run_ids, filter_string=args.filter, out_dir=args.out
    )
