"""What the calibration rule changes (issue 25): the same study run under
``probe.calibration=study`` and ``probe.calibration=loo_matched``, compared job by job.

Run the study twice, otherwise identical (README, "The study's rules"), e.g.::

    export MLFLOW_TRACKING_URI=sqlite:////tmp/h25/mlflow.db OPTUNA_STORAGE=sqlite:////tmp/h25/optuna.db
    modelrecovery recover --config default --store /tmp/h25/results-study \\
        --set study=h25-study probe.calibration=study
    modelrecovery recover --config default --store /tmp/h25/results-loo_matched \\
        --set study=h25-loo_matched probe.calibration=loo_matched
    python benchmarks/calibration_effect.py /tmp/h25/results-study /tmp/h25/results-loo_matched \\
        --experiments h25-study h25-loo_matched

Jobs are matched on (level, generator, N, seed): a job's triplets, folds and response
draws are seeded by those alone, so the two runs differ only in the generators' T (common
random numbers). Printed per level and N: recovery under each rule with its exact
(Clopper-Pearson) 95% interval, the discordant pairs (recovered under one rule only) and
the exact McNemar test (two-sided binomial test of the discordant pairs against 1/2);
then per level and overall. With ``--experiments`` (and MLFLOW_TRACKING_URI pointing at
the runs' store) it first lists every generator's T and calibration statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta, binomtest

KEYS = ["level", "generator", "n_train", "seed"]


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of k successes in n."""
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar p-value: discordant pairs b (first only) and c (second only)."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def load_jobs(store: str | Path) -> pd.DataFrame:
    """The jobs table of a results store (``recovery.store.ResultsStore``)."""
    from modelrecovery.recovery.store import ResultsStore

    jobs = ResultsStore(store).load()["jobs"]
    if jobs.empty:
        raise SystemExit(f"{store}: no finished jobs")
    return jobs[[*KEYS, "recovered"]].astype({"recovered": bool})


def paired(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Jobs of both runs matched on (level, generator, N, seed)."""
    both = first.merge(second, on=KEYS, suffixes=("_a", "_b"), validate="one_to_one")
    missing = len(first) + len(second) - 2 * len(both)
    if missing:
        print(f"note: {missing} jobs without a match left out")
    return both


def summarise(both: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Recovery under each rule with CIs, discordant pairs and the exact McNemar p."""
    rows = []
    groups = both.groupby(by, sort=False) if by else [((), both)]
    for key, part in groups:
        n = len(part)
        a, b = int(part["recovered_a"].sum()), int(part["recovered_b"].sum())
        only_a = int((part["recovered_a"] & ~part["recovered_b"]).sum())
        only_b = int((~part["recovered_a"] & part["recovered_b"]).sum())
        low_a, high_a = clopper_pearson(a, n)
        low_b, high_b = clopper_pearson(b, n)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "jobs": n,
                "study": f"{a / n:.2f} [{low_a:.2f}, {high_a:.2f}]",
                "loo_matched": f"{b / n:.2f} [{low_b:.2f}, {high_b:.2f}]",
                "study_only": only_a,
                "loo_only": only_b,
                "mcnemar_p": round(mcnemar_exact(only_a, only_b), 4),
            }
        )
    return pd.DataFrame(rows)


def generator_table(experiments: list[str]) -> pd.DataFrame:
    """Every generator run's T and calibration statistics in the given experiments."""
    import mlflow

    frames = []
    for name in experiments:
        runs = mlflow.search_runs(experiment_names=[name], filter_string="tags.stage = 'generator'")
        if runs.empty:
            continue
        frames.append(
            pd.DataFrame(
                {
                    "model": runs["params.model"],
                    "level": runs["params.level"],
                    "calibration": runs.get("params.calibration", "study"),
                    "T": runs["metrics.temperature"],
                    "expected_accuracy": runs.get("metrics.expected_accuracy", np.nan),
                    "expected_loo": runs.get("metrics.expected_loo_ceiling", np.nan),
                    "human_loo": runs.get("metrics.human_loo_ceiling", np.nan),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def level_order(table: pd.DataFrame) -> pd.DataFrame:
    from modelrecovery.analysis.metrics import level_sort_key

    keys = table["level"].map(level_sort_key)
    return table.assign(_o=keys).sort_values(["_o", *table.columns[1:2]]).drop(columns="_o")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study_store", help="results store of the run with calibration study")
    parser.add_argument("loo_store", help="results store of the run with loo_matched")
    parser.add_argument("--experiments", nargs="*", default=[], help="MLflow experiments")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 200)
    if args.experiments:
        generators = generator_table(args.experiments)
        if not generators.empty:
            generators["loo_gap"] = generators["expected_loo"] - generators["human_loo"]
            print("generators (T and, at T, the calibration statistics):")
            print(level_order(generators).to_string(index=False, float_format="%.4f"))
            wide = generators.pivot_table(index=["level", "model"], columns="calibration")
            if "loo_matched" in generators["calibration"].values:
                ratio = wide[("T", "loo_matched")] / wide[("T", "study")]
                print(
                    f"\nT(loo_matched) / T(study): mean {ratio.mean():.3f}, "
                    f"range {ratio.min():.3f} - {ratio.max():.3f}"
                )
            print()
    both = paired(load_jobs(args.study_store), load_jobs(args.loo_store))
    print("recovery per level and N (exact 95% CIs; exact McNemar over matched jobs):")
    print(level_order(summarise(both, ["level", "n_train"])).to_string(index=False))
    print("\nper level:")
    print(level_order(summarise(both, ["level"])).to_string(index=False))
    print("\nall jobs:")
    print(summarise(both, []).to_string(index=False))


if __name__ == "__main__":
    main()
