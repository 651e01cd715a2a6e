"""Stage ``analyze``: pool the results tables of one or many recover runs (found with
``mlflow.search_runs`` by experiment, tags or run ids), run the analyses and log the
report as a new run ``analyze/<study>``. Seeds or sizes added by later runs pool with
earlier ones; a job present in several runs counts once."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
import pandas as pd

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


def gather_tables(run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Concatenate the ``results/*.parquet`` artifacts of the runs; one row per job (and
    per job and candidate, ...), the latest run winning; models: one row per model."""
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for run_id in run_ids:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="results"))
        for name in TABLES:
            path = local / f"{name}.parquet"
            if path.exists():
                parts[name].append(pd.read_parquet(path).assign(_run=run_id))
    keys = {
        "jobs": ["job_id"],
        "scores": ["job_id", "candidate"],
        "fits": ["job_id", "candidate", "lam", "fold"],
        "models": ["model", "family"],
    }
    out = {}
    for name, frames in parts.items():
        if not frames:
            out[name] = pd.DataFrame()
            continue
        table = pd.concat(frames, ignore_index=True)
        table = table.drop_duplicates(keys[name], keep="last").drop(columns="_run")
        out[name] = table.sort_values(keys[name]).reset_index(drop=True)
    if out["jobs"].empty:
        raise ValueError(f"the runs {run_ids} hold no results/jobs.parquet")
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
    tables = gather_tables(sources)
    tags = standard_tags("analyze") | {"sources": ",".join(sources)}
    with mlflow.start_run(run_name=f"analyze/{experiment}", tags=tags) as run:
        mlflow.log_params({"n_sources": len(sources), "n_jobs": len(tables["jobs"])})
        out = Path(out_dir) if out_dir else TRACKING_DIR / "reports" / run.info.run_id
        report = build_report(
            tables["jobs"],
            tables["scores"],
            tables["models"] if not tables["models"].empty else None,
            provenance={"source_runs": sources, "analyze_run": run.info.run_id},
            out_dir=out,
        )
        mlflow.log_artifacts(str(out), artifact_path="report")
        accuracy = tables["jobs"].groupby("n_train")["recovered"].mean()
        for n, value in accuracy.items():
            mlflow.log_metric("recovery_accuracy", float(value), step=int(n))
    return {
        "run_id": run.info.run_id,
        "sources": sources,
        "report": str(report),
        "out_dir": str(out),
    }


def cmd_analyze(args: argparse.Namespace) -> dict:
    """Pool recover runs and write the analysis report (figures, tables, HTML)."""
    return analyze(
        args.experiment, run_ids=args.run_ids, filter_string=args.filter, out_dir=args.out
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help=cmd_analyze.__doc__)
    p.add_argument("--experiment", default="default-world", help="the study's experiment")
    p.add_argument("--run-ids", nargs="*", default=None, help="recover runs (default: all)")
    p.add_argument("--filter", default="", help="extra MLflow filter, e.g. tags.x = 'y'")
    p.add_argument("--out", default=None, help="report folder (default tracking/reports/<run>)")
    p.set_defaults(func=cmd_analyze)
