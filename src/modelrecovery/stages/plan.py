"""Stage ``plan``: N_target per level by an adaptive design
(:func:`modelrecovery.study.plan.plan_study`), recorded as an MLflow ``plan/<study>`` run;
each batch and the result printed."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys


def _n(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:,.0f}"


def cmd_plan(args: argparse.Namespace) -> dict:
    """Plan the study of ``--config``: how many triplets make the generator win."""
    from modelrecovery.analysis.plan_report import plan_sentences
    from modelrecovery.config import split_overrides
    from modelrecovery.store_checks import check_dask_scheduler
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import check_study
    from modelrecovery.study.plan import PlanSettings, plan_study
    from modelrecovery.study.spec import load_spec

    settings = PlanSettings(
        target=args.target,
        levels=tuple(args.levels) if args.levels else None,
        budget_jobs=args.budget_jobs,
        min_n=args.min_n,
        max_n=args.max_n,
        max_ratio=args.max_ratio,
        batch=args.batch,
        initial=args.initial,
        first_seed=args.first_seed,
    )
    spec = load_spec(args.config, split_overrides(args.set))
    if args.store:
        spec = spec.model_copy(update={"store": str(args.store)})
    executor = args.executor or spec.executor.kind
    if spec.executor.address and executor == "dask":
        check_dask_scheduler(spec.executor.address)
    check_study(spec, executor)  # before any run is created

    def on_batch(label: str, fit, sizes: list[int]) -> None:
        what = f"next sizes {sizes}" if sizes else "stops"
        print(
            f"plan {label}: {fit.n_jobs} jobs, N_target {_n(fit.n_target)} "
            f"[{_n(fit.n_target_low)}, {_n(fit.n_target_high)}], asymptote "
            f"{fit.params.asymptote:.2f} [{fit.asymptote_low:.2f}, {fit.asymptote_high:.2f}]"
            f"; {what}",
            file=sys.stderr,
            flush=True,
        )

    result = plan_study(
        spec,
        MLflowTracker(spec.study),
        settings,
        selections=tuple(args.selection) if args.selection else None,
        executor=executor,
        progress=not args.no_progress,
        on_batch=on_batch,
    )
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    with contextlib.redirect_stdout(out):
        columns = [
            "label",
            "jobs",
            "jobs_reused",
            "n_target",
            "n_target_low",
            "n_target_high",
            "asymptote",
            "asymptote_low",
            "asymptote_high",
            "status",
            "stop",
            "triplets_to_collect",
        ]
        shown = [c for c in columns if c in result.table.columns]
        print(result.table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if not result.generators.empty:
            print("\nper generator (hardest first):")
            print(result.generators.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print("\nplan:")
        for line in plan_sentences(result.table):
            print(f"  {line}")
    return result.summary()
