"""Does model-discriminating triplet selection recover the generator with fewer triplets?

Runs the study ``conf/selection.yaml`` (the default world and model set, full-W probes,
the recovery grid for triplet_selection random / discriminating / sequential on the same
seeds, crowning by the paired log-likelihood comparison; every job also records the study's
crowning by test accuracy on the same fits) through the recover stage, then prints:

- recovery accuracy per strategy and N under three crowning rules, from the same fits:
  ``accuracy`` (mean test accuracy, the study's), ``loglik`` (held-out log-likelihood, the
  paired rule's leader) and ``paired`` (the leader only when its log-likelihood gap over the
  runner-up exceeds 1.96 standard errors; undecided jobs count as not recovered, their
  share shown), each with exact 95% binomial CIs;
- the triplet budget each strategy needs to reach 80% recovery (measured N, and the
  crossing interpolated in log N);
- the refitted generator's accuracy on held-out uniform test triplets per strategy, and
  (``grid.human_heldout``, on in the config) on the human held-out test triplets;
- the design's cost: selection time per batch in the jobs, and the scoring time of the
  criterion against pool size and number of candidates (vectorised; no loop over
  triplets);

and ends with ``n=<N> random=<acc> discriminating=<acc> sequential=<acc>``: recovery under
the study's crowning at the N where random recovers at most 70% (the largest such N).

    python benchmarks/selection.py                       # the whole comparison
    python benchmarks/selection.py --quick               # N = 400, one seed
    python benchmarks/selection.py --set grid.seeds=[0,1] --set grid.sizes=[200,400]

Tracking goes to the tracking home (as ``make recover``); generators are reused from
earlier runs of the study when their inputs are unchanged.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

RULES = ("accuracy", "loglik", "paired")


def _tables(run_id: str) -> dict[str, pd.DataFrame]:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="results"))
    return {name: pd.read_parquet(local / f"{name}.parquet") for name in ("jobs", "scores")}


def crowned(jobs: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The jobs table with ``recovered`` (and ``decided``) under one crowning rule."""
    out = jobs.copy()
    out["triplet_selection"] = out["triplet_selection"].fillna("random")
    out["selection_criterion"] = rule
    if rule == "accuracy":
        out["recovered"] = out["accuracy_recovered"].astype(bool)
        out = out.drop(columns=["decided"], errors="ignore")
    elif rule == "loglik":
        out["recovered"] = out["winner"] == out["generator"]
        out = out.drop(columns=["decided"], errors="ignore")
    return out


def scaling(pool_sizes=(1_000, 10_000, 100_000), candidates=(2, 10, 20), repeats=5) -> pd.DataFrame:
    """Seconds to score a pool (mutual information) and choose its best 10%, per pool size
    and number of candidates (median of ``repeats``), on random predictive distributions;
    and the seconds to compute the candidates' predictions (d = 24) on the pool."""
    from modelrecovery.recovery.triplet_design import odd_one_out_probabilities, one_shot

    rng = np.random.default_rng(0)
    rows = []
    for m in pool_sizes:
        ids = np.stack([rng.permutation(240)[:3] for _ in range(min(m, 2000))])
        ids = ids[rng.integers(0, len(ids), m)]
        for c in candidates:
            probs = rng.dirichlet(np.ones(3), size=(c, m))
            z = [rng.normal(size=(240, 24)) for _ in range(c)]
            score, predict = [], []
            for _ in range(repeats):
                tic = time.perf_counter()
                one_shot(probs, m // 10)
                score.append(time.perf_counter() - tic)
                tic = time.perf_counter()
                np.stack([odd_one_out_probabilities(zi, ids, 1.0) for zi in z])
                predict.append(time.perf_counter() - tic)
            rows.append(
                {
                    "pool": m,
                    "candidates": c,
                    "score_and_choose_s": float(np.median(score)),
                    "predict_s": float(np.median(predict)),
                    "ns_per_triplet_candidate": 1e9 * float(np.median(score)) / (m * c),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default="selection")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--quick", action="store_true", help="N = 400, one seed")
    parser.add_argument("--run-id", default=None, help="analyse a finished recover run instead")
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args(argv)

    from modelrecovery.analysis.design_and_crowning import budget_to_reach, selection_table

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    overrides = list(args.set)
    if args.quick:
        overrides += ["grid.sizes=[400]", "grid.seeds=[0]"]
    if args.run_id is None:
        from modelrecovery.study.mlflow_tracker import MLflowTracker
        from modelrecovery.study.pipeline import run_study
        from modelrecovery.study.spec import load_spec

        spec = load_spec(args.config, overrides)
        tic = time.perf_counter()
        result = run_study(spec, MLflowTracker(spec.study), progress=False)
        summary = result.summary()
        print(
            f"recover run {result.run_id}: {summary['jobs']} jobs ({summary['jobs_run_now']} "
            f"run now) in {time.perf_counter() - tic:.0f} s (jobs "
            f"{summary.get('jobs_seconds', 0):.0f} s)"
        )
        tables = {"jobs": result.jobs, "scores": result.scores}
    else:
        tables = _tables(args.run_id)
    jobs, scores = tables["jobs"], tables["scores"]
    show = ["triplet_selection", "n_train", "n_jobs", "accuracy", "ci_low", "ci_high"]
    by_rule = {}
    for rule in RULES:
        table = selection_table(crowned(jobs, rule), scores)
        by_rule[rule] = table
        cols = show + [c for c in ("undecided_share", "accuracy_decided") if c in table]
        print(f"\nrecovery, crowned by {rule}:")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        budget = budget_to_reach(table, args.target)
        print(f"triplets per fold needed for {args.target:.0%} recovery ({rule}):")
        print(
            budget[
                ["triplet_selection", "n_measured", "n_interpolated", "accuracy_at_largest_n"]
            ].to_string(index=False, float_format=lambda v: f"{v:.0f}" if v > 1 else f"{v:.3f}")
        )
    pred = by_rule["accuracy"][
        ["triplet_selection", "n_train", "generator_test_accuracy", "generator_test_accuracy_sem"]
    ]
    print("\nthe generator's refit on held-out uniform test triplets (mean, SEM over jobs):")
    print(pred.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if "generator_human_accuracy" in by_rule["accuracy"]:  # grid.human_heldout
        human = by_rule["accuracy"][
            ["triplet_selection", "n_train", "generator_human_accuracy"]
            + ["generator_human_accuracy_sem", "winner_human_accuracy"]
        ]
        print("\nthe refits on the human held-out test triplets (mean, SEM over jobs; winner:")
        print("the job's own winner, under the config's selection_criterion):")
        print(human.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    designed = jobs[jobs["triplet_selection"].notna()]
    if len(designed):
        cost = designed.groupby(["triplet_selection", "n_train"])[
            ["pool_size", "prior_seconds", "select_seconds_per_batch", "refit_seconds", "seconds"]
        ].mean()
        print("\ndesign cost per job (means; pool summed over 3 folds; seconds):")
        print(cost.to_string(float_format=lambda v: f"{v:.4g}"))
        rand = jobs[jobs["triplet_selection"].isna()].groupby("n_train")["seconds"].mean()
        print("random jobs, mean seconds:", rand.round(2).to_dict())
    print("\nscoring cost (mutual information + top 10%), median of 5:")
    print(scaling().to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    acc = by_rule["accuracy"].set_index(["triplet_selection", "n_train"])["accuracy"]
    random_curve = acc.loc["random"]
    hard = random_curve[random_curve <= 0.70]
    n_star = int(hard.index.max()) if len(hard) else int(random_curve.index.min())
    values = {
        s: float(acc.get((s, n_star), np.nan)) for s in ("random", "discriminating", "sequential")
    }
    print(
        f"n={n_star} random={values['random']:.3f} discriminating={values['discriminating']:.3f} "
        f"sequential={values['sequential']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
