"""``plan`` against a dense reference grid on the default world (docs/science/method.md §7).

    python benchmarks/plan.py [--reps 1] [--sim-reps 40]

1. The dense grid: 8 sizes from 20 to 4,000 x 10 seeds x the 10 generators, at the
   diagonal and full levels (1,600 ordinary recovery jobs), computed once and cached in its
   own store (benchmarks/.cache/plan/dense, tracking home benchmarks/.cache/plan/mlflow.db,
   where the generators are reused). The dense N_target is the same curve model fitted to
   all its jobs.
2. ``plan`` from an empty store (seeds from 100, so none of its jobs is a dense job), on the
   same generators, for both levels; ``--reps`` more plans with other seeds (200, 300, ...).
3. The coverage of the plan's interval over ``--sim-reps`` simulated plans: each level's
   jobs drawn from the per-generator curves fitted to the dense grid (the generators'
   own recovery curves), the same adaptive design (``plan_step``), against the N_target of
   the mean of those curves.

Prints per level the plan's N_target and interval, the dense N_target, the jobs each used,
and last one line per level (full last):
``level=<l> plan_jobs= dense_jobs= n_target= low= high= dense_n_target=``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "plan"
SIZES = [20, 40, 90, 200, 400, 900, 2000, 4000]
SEEDS = list(range(10))
LEVELS = ["diagonal", "full"]
TARGET = 0.8
GRID = [
    f"grid.sizes=[{','.join(map(str, SIZES))}]",
    f"grid.seeds=[{','.join(map(str, SEEDS))}]",
    "grid.levels=[{family: diagonal},{family: full}]",
]


def dense_jobs(n_generators: int = 10):
    """The dense grid's job table (computed once; the cache is used whenever it holds every
    (level, size, seed, generator))."""
    import pandas as pd

    from modelrecovery.recovery.store import ResultsStore

    store = CACHE / "dense"
    timing = CACHE / "dense_seconds.json"

    def cached() -> pd.DataFrame | None:
        if not (store / "jobs").exists():
            return None
        jobs = ResultsStore(store).load()["jobs"]
        if jobs.empty:
            return None
        jobs = jobs[
            jobs["level"].isin(LEVELS) & jobs["n_train"].isin(SIZES) & jobs["seed"].isin(SEEDS)
        ]
        jobs = jobs.drop_duplicates(["level", "n_train", "seed", "generator"])
        return jobs if len(jobs) == len(LEVELS) * len(SIZES) * len(SEEDS) * n_generators else None

    jobs = cached()
    if jobs is None:
        from modelrecovery.study.mlflow_tracker import MLflowTracker
        from modelrecovery.study.pipeline import run_study
        from modelrecovery.study.spec import load_spec

        spec = load_spec("default", [*GRID, "report=false", f"store={store}"])
        tic = time.perf_counter()
        run_study(spec, MLflowTracker(spec.study), progress=True)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - tic}))
        jobs = cached()
        if jobs is None:
            sys.exit("the dense grid did not complete")
    seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else math.nan
    return jobs, seconds


def simulate(curves, ladder, floor, budget, rng, settings):
    """One simulated plan: outcomes per generator drawn from its curve; the final fit."""
    from modelrecovery.analysis.sample_size import plan_step, recovery_probability

    sizes: list[float] = []
    outcomes: list[float] = []
    while True:
        fit, stop, chosen = plan_step(
            np.array(sizes),
            np.array(outcomes),
            ladder=ladder,
            floor=floor,
            target=TARGET,
            max_n=SIZES[-1],
            max_ratio=settings.max_ratio,
            budget_jobs=budget,
            jobs_per_slot=len(curves),
            batch=settings.batch,
            initial=settings.initial,
        )
        if stop:
            return fit, len(sizes)
        for n in chosen:
            for params in curves:
                sizes.append(float(n))
                outcomes.append(float(rng.random() < recovery_probability(n, params)))


def mean_curve_target(curves) -> float:
    """Where the mean of the generators' curves reaches the target (inf if never)."""
    from modelrecovery.analysis.sample_size import recovery_probability

    def gap(x: float) -> float:
        return float(np.mean([recovery_probability(math.exp(x), p) for p in curves])) - TARGET

    lo, hi = math.log(1.0), math.log(1e9)
    if gap(hi) < 0:
        return math.inf
    if gap(lo) > 0:
        return 1.0
    return math.exp(brentq(gap, lo, hi))


def run_plans(reps: int, dense: dict | None) -> list:
    """``reps`` plans (seeds from 100, 200, ...), each in its own store under the cache:
    the first run of a plan starts from an empty store (its time and jobs are kept in
    ``plan_<seed>.json``); a later run reuses its jobs and reports the first run's cost."""
    import pandas as pd

    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.plan import PlanSettings, plan_study
    from modelrecovery.study.spec import load_spec

    plans = []
    for rep in range(reps):
        settings = PlanSettings(
            target=TARGET,
            levels=tuple(LEVELS),
            min_n=SIZES[0],
            max_n=SIZES[-1],
            first_seed=100 * (rep + 1),
        )
        store = CACHE / f"plan_{settings.first_seed}"
        record = CACHE / f"plan_{settings.first_seed}.json"
        if record.exists() and "table" in json.loads(record.read_text()):
            # the finished plan's answer, as recorded (a new run would recompute its jobs
            # whenever the science's code changed: their ids hash it)
            first = json.loads(record.read_text())
            table = pd.DataFrame(first["table"])
            seconds = 0.0
            result = None
        else:
            spec = load_spec("default", [*GRID, f"store={store}"])
            tic = time.perf_counter()
            result = plan_study(spec, MLflowTracker(spec.study), settings, progress=False)
            seconds = time.perf_counter() - tic
            table = result.table
            if result.jobs_run_now == len(result.jobs):  # from an empty store
                record.write_text(
                    json.dumps(
                        {
                            "seconds": seconds,
                            "jobs": len(result.jobs),
                            "table": table.to_dict(orient="records"),
                        },
                        default=float,
                    )
                )
            first = json.loads(record.read_text()) if record.exists() else {}
        plans.append((settings, table, seconds))
        for _, row in table.iterrows():
            d = dense[row["level"]] if dense else None
            covers = d is not None and row["n_target_low"] <= d.n_target <= row["n_target_high"]
            print(
                f"plan (seeds from {settings.first_seed}) {row['level']}: {row['jobs']} jobs, "
                f"N_target {row['n_target']:,.0f} [{row['n_target_low']:,.0f}, "
                f"{row['n_target_high']:,.0f}] ({row['status']}, stop: {row['stop']})"
                + (
                    f"; dense {d.n_target:,.0f}: {'inside' if covers else 'OUTSIDE'}"
                    if d is not None
                    else ""
                )
            )
        ran = "recorded" if result is None else f"{result.jobs_run_now} jobs run"
        print(
            f"plan {rep + 1}: from an empty store {first.get('seconds', math.nan):.0f} s for "
            f"{first.get('jobs', '?')} jobs (this run {seconds:.0f} s, {ran})"
        )
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1, help="real plans (seeds 100, 200, ...)")
    parser.add_argument("--sim-reps", type=int, default=40, help="simulated plans per level")
    parser.add_argument(
        "--plans-only",
        action="store_true",
        help="run the plans alone (their stores are kept: a later full run reuses them)",
    )
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{CACHE / 'mlflow.db'}"

    from modelrecovery.analysis.sample_size import fit_curve, size_ladder
    from modelrecovery.study.plan import PlanSettings

    print(f"machine: {os.cpu_count()} CPUs; date {time.strftime('%Y-%m-%d %H:%M')}")
    if args.plans_only:
        run_plans(args.reps, None)
        return
    jobs, dense_seconds = dense_jobs()
    floor = 1.0 / jobs["n_candidates"].iloc[0] if "n_candidates" in jobs else 0.1
    dense = {}
    for level in LEVELS:
        part = jobs[jobs["level"] == level]
        dense[level] = fit_curve(
            part["n_train"].to_numpy(float),
            part["recovered"].to_numpy(float),
            floor=floor,
            target=TARGET,
            n_max=SIZES[-1],
        )
        f = dense[level]
        print(
            f"dense {level}: {len(part)} jobs, N_target {f.n_target:,.0f} "
            f"[{f.n_target_low:,.0f}, {f.n_target_high:,.0f}], asymptote "
            f"{f.params.asymptote:.3f} [{f.asymptote_low:.3f}, {f.asymptote_high:.3f}] "
            f"({f.status}); recovery per size: "
            + ", ".join(
                f"{n}: {v:.2f}" for n, v in part.groupby("n_train")["recovered"].mean().items()
            )
        )
    print(f"dense grid computed in {dense_seconds:.0f} s (when it was computed)")

    plans = run_plans(args.reps, dense)

    # simulated plans on the generators' own curves from the dense grid
    settings = plans[0][0] if plans else PlanSettings()
    ladder = np.array(size_ladder(SIZES[0], SIZES[-1], tuple(SIZES)))
    rng = np.random.default_rng(2026)
    for level in LEVELS:
        part = jobs[jobs["level"] == level]
        curves = [
            fit_curve(
                g["n_train"].to_numpy(float),
                g["recovered"].to_numpy(float),
                floor=floor,
                target=TARGET,
                n_max=SIZES[-1],
            ).params
            for _, g in part.groupby("generator")
        ]
        truth = mean_curve_target(curves)
        budget = 24 * len(curves)
        covered = reached = 0
        used = []
        for _ in range(args.sim_reps):
            fit, n_jobs = simulate(curves, ladder, floor, budget, rng, settings)
            used.append(n_jobs)
            if fit is None:
                continue
            reached += fit.status == "reached"
            covered += (
                fit.n_target_low <= truth <= fit.n_target_high
                if math.isfinite(truth)
                else not math.isfinite(fit.n_target_high)
            )
        print(
            f"simulated plans {level}: truth N_target {truth:,.0f} (mean of the generators' "
            f"dense curves); interval covers it in {covered} of {args.sim_reps}; reached in "
            f"{reached}; jobs used median {int(np.median(used))} (max {max(used)})"
        )

    dense_count = len(SIZES) * len(SEEDS) * 10
    if plans:
        table = plans[0][1]
        for level in LEVELS:
            row = table[table["level"] == level].iloc[0]
            print(
                f"level={level} plan_jobs={row['jobs']} dense_jobs={dense_count} "
                f"n_target={row['n_target']:.0f} low={row['n_target_low']:.0f} "
                f"high={row['n_target_high']:.0f} dense_n_target={dense[level].n_target:.0f}"
            )


if __name__ == "__main__":
    main()
