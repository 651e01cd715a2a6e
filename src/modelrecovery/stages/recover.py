"""Stage ``recover``: the whole study of a configuration
(:func:`modelrecovery.study.pipeline.run_study`) recorded in MLflow, the recovery curve
and the report's summaries printed."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import pandas as pd


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
    from modelrecovery.config import split_overrides
    from modelrecovery.store_checks import check_dask_scheduler, ui_link
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import check_study, run_study
    from modelrecovery.study.spec import load_spec

    spec = load_spec(args.config, split_overrides(args.set))
    if getattr(args, "store", None):
        spec = spec.model_copy(update={"store": str(args.store)})
    executor = args.executor or spec.executor.kind
    if spec.executor.address and not args.executor and "kind" not in spec.executor.model_fields_set:
        executor = "dask"  # an address without a kind (a config without executor:) means Dask
    if spec.executor.address and executor == "dask":
        check_dask_scheduler(spec.executor.address)  # before the world or any run is built
    check_study(spec, executor)  # before any run is created

    def show_check(diagnosis) -> None:
        from modelrecovery.study.diagnostics import format_diagnosis

        print("\n".join(format_diagnosis(diagnosis)), file=sys.stderr, flush=True)

    tracker = MLflowTracker(spec.study)
    result = run_study(
        spec,
        tracker,
        executor=executor,
        progress=not args.no_progress,
        on_check=show_check,
    )
    # the tables for a reader; under --json, stdout holds the JSON result alone
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    with contextlib.redirect_stdout(out):
        print(result.curve.to_string(index=False))
        if result.report is not None:
            if result.report.paper_table is not None:
                print(result.report.paper_table.to_string(index=False))
            print_group_summary(result.report.tables)
        print_verdict(result.verdict)
    summary = result.summary()
    if tracker.uri.startswith(("http://", "https://")):  # a server: where to look
        summary["mlflow_ui"] = ui_link(tracker.uri, tracker.experiment_id, result.run_id)
    return summary


def print_verdict(lines: list[str]) -> None:
    """The verdict, last on the console (the report has it first)."""
    if lines:
        print("\nverdict:")
        for line in lines:
            print(f"  {line}")
