"""Stage ``analyze``: pool the results tables of one or many recover runs (found with
``mlflow.search_runs`` by experiment, tags or run ids), run the analyses and log the
report as a new run ``analyze/<study>``.

Only like pools with like: a job is identified by ``(condition_key, generator, n_train,
seed)`` (the key derived from the condition columns for tables that lack it), not by its
``job_id`` (which changes with every code commit). Seeds or sizes added by later runs pool
with earlier ones; a job present in several runs counts once, the latest run winning;
different conditions stay apart and are reported side by side
(:func:`modelrecovery.analysis.pooling.pool_tables`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
import pandas as pd

from modelrecovery.analysis.metrics import add_condition, level_sort_key
from modelrecovery.analysis.pooling import Pooled, ensure_condition_key, pool_tables
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
    runs = mlflow.search_runs(
        experiment_ids=[experiment_obj.experiment_id],
        filter_string=query,
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )
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
    """Recovery accuracy per metric name and N, never mixing levels or conditions.

    Names are ``recovery_accuracy_<level>``, with ``_<first 8 hex of condition_key>``
    appended when several conditions share the level.
    """
    jobs = ensure_condition_key(jobs)
    out: dict[str, dict[int, float]] = {}
    levels = sorted(jobs["level"].astype(str).unique(), key=level_sort_key)
    for level in levels:
        sub = jobs[jobs["level"].astype(str) == level]
        keys = sorted(sub["condition_key"].astype(str).unique())
        for key in keys:
            part = sub[sub["condition_key"].astype(str) == key]
            name = f"recovery_accuracy_{level}" + (f"_{key[:8]}" if len(keys) > 1 else "")
            acc = part.groupby("n_train")["recovered"].mean()
            out[name] = {int(n): float(v) for n, v in acc.items()}
    return out


def analyze(
    experiment: str,
    *,
    run_ids: list[str] | None = None,
    filter_string: str = "",
    out_dir: str | Path | None = None,
) -> dict:
    """Pool the recover runs, build the report, log it as a run ``analyze/<study>``."""
    from modelrecovery.analysis import build_report

    setup_experiment(experiment)
    sources = find_recover_runs(experiment, run_ids, filter_string)
    pooled = pool_runs(sources)
    tables = pooled.tables
    tags = standard_tags("analyze") | {"sources": ",".join(sources)}
    with mlflow.start_run(run_name=f"analyze/{experiment}", tags=tags) as run:
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
            tables["models"] if not tables["models"].empty else None,
            provenance={
                "source_runs": sources,
                "analyze_run": run.info.run_id,
                "jobs kept per source run": pooled.kept_per_source,
                "duplicate job rows dropped": pooled.n_duplicates,
            },
            out_dir=out,
            groups=load_run_groups(sources) or None,
        )
        mlflow.log_artifacts(str(out), artifact_path="report")
        for name, values in recovery_metrics(tables["jobs"]).items():
            for n, value in values.items():
                mlflow.log_metric(name, value, step=n)
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
