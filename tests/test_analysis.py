"""Analysis of the recovery grid: planted tables with known answers, geometry, regression,
report (and its rendering in headless Chromium)."""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from modelrecovery.analysis import (
    PAPER_REFERENCE,
    ReportConfig,
    accuracy_difference_regression,
    add_condition,
    binomial_ci,
    bootstrap_mean_ci,
    build_report,
    compare_rdms,
    condition_columns,
    confusion_matrix,
    correct_rank,
    effective_dimensionality,
    euclidean_rdm,
    false_rank,
    group_rng,
    human_distance,
    mds_coordinates,
    mean_reciprocal_rank,
    model_geometry,
    model_properties,
    model_rdms,
    pair_differences,
    paper_table,
    rank_summary,
    rdm_similarity,
    recovery_accuracy,
    representational_shift,
    sort_conditions,
    standardized_ols,
    table_fingerprint,
    tradeoff_table,
    win_share,
)
from modelrecovery.analysis.regression import predictor_names

CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------------------- planted tables
def make_tables(
    models: tuple[str, ...] = ("alexnet", "clip_rn50", "dino_vitb16", "resnet50"),
    ns: tuple[int, ...] = (100, 1000),
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    families: tuple[str, ...] = ("full",),
    seed: int = 0,
    p_recover: dict[int, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Jobs and scores with a random but known rank order of the candidates per job."""
    rng = np.random.default_rng(seed)
    p_recover = p_recover or {n: 0.3 + 0.5 * i / max(1, len(ns) - 1) for i, n in enumerate(ns)}
    jobs, scores = [], []
    for fam, n, g, s in itertools.product(families, ns, models, seeds):
        others = [m for m in models if m != g]
        order = list(rng.permutation(others))
        pos = 0 if rng.random() < p_recover[n] else int(rng.integers(1, len(models)))
        order.insert(pos, g)
        job_id = f"{fam}-{g}-{n}-{s}"
        for r, cand in enumerate(order, start=1):
            acc = 0.9 - 0.01 * r
            scores.append(
                {
                    "job_id": job_id, "generator": g, "n_train": n, "seed": s, "family": fam,
                    "k": pd.NA, "regulariser": "scalar_shrinkage", "criterion": "accuracy",
                    "candidate": cand, "best_lam": 1.0, "val_accuracy": acc, "val_nll": 1.0,
                    "test_accuracy": acc, "test_nll": 1.0, "score": acc, "rank": r,
                }
            )  # fmt: skip
        jobs.append(
            {
                "job_id": job_id, "generator": g, "n_train": n, "seed": s, "family": fam,
                "k": pd.NA, "regulariser": "scalar_shrinkage", "criterion": "accuracy",
                "winner": order[0], "recovered": order[0] == g, "n_candidates": len(models),
                "generator_rank": pos + 1, "seconds": 1.0,
            }
        )  # fmt: skip
    return pd.DataFrame(jobs), pd.DataFrame(scores)


def with_condition(frame: pd.DataFrame, level: str, key: str, **columns) -> pd.DataFrame:
    """``frame`` with the condition columns of the new schema (``level``, ``condition_key``,
    tie rule, ...); ``job_id`` gets the key appended so conditions never share ids."""
    family = "rectangular" if level.startswith("rectangular") else level
    k = int(level[len("rectangular") :]) if family == "rectangular" else pd.NA
    cond = {
        "level": level, "family": family, "k": k, "tie_rule": "random",
        "stopping": "converged", "warm_start": False, "sampling": "uniform",
        "lams": "0.1,10,1000", "condition_key": key,
    } | columns  # fmt: skip
    out = frame.assign(**cond)
    out["candidate_set"] = ",".join(sorted(set(frame["generator"])))
    out["job_id"] = out["job_id"].str.replace(r"^[a-z_]+", level, regex=True) + "-" + key
    return out


def make_models(models: tuple[str, ...], families: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for i, (fam, m) in enumerate(itertools.product(families, models)):
        rows.append(
            {
                "model": m, "family": fam, "feature_dim": 8 + i % 5, "n_parameters": 1e6 * (i + 1),
                "human_accuracy": 0.4 + 0.05 * families.index(fam) + 0.001 * i,
                "human_nll": 1.0, "lam": 0.1, "temperature": 1.0,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def bca_by_hand(x: np.ndarray, rng: np.random.Generator, n_resamples: int, conf: float):
    """Textbook BCa (Efron & Tibshirani 14.3) with the resamples scipy draws from ``rng``."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    idx = rng.integers(0, n, (n_resamples, n))
    theta_b = x[idx].mean(axis=1)
    theta = x.mean()
    z0 = stats.norm.ppf(((theta_b < theta).sum() + (theta_b <= theta).sum()) / (2 * n_resamples))
    jack = np.array([np.delete(x, i).mean() for i in range(n)])
    u = jack.mean() - jack
    a = (u**3).sum() / (6 * ((u**2).sum()) ** 1.5)
    z = stats.norm.ppf((1 - conf) / 2)
    a1 = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    a2 = stats.norm.cdf(z0 + (z0 - z) / (1 - a * (z0 - z)))
    return tuple(np.quantile(theta_b, [a1, a2]))


# ----------------------------------------------------------------------------- metrics
def test_recovery_accuracy_counts_and_exact_ci():
    jobs, _ = make_tables(seeds=tuple(range(6)))
    acc = recovery_accuracy(jobs)
    assert list(acc.columns[:2]) == ["family", "n_train"]
    for _, row in acc.iterrows():
        sub = jobs[jobs["n_train"] == row["n_train"]]
        k, n = int((sub["winner"] == sub["generator"]).sum()), len(sub)
        assert (row["n_jobs"], row["n_recovered"]) == (n, k)
        assert row["accuracy"] == pytest.approx(k / n)
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        # Clopper-Pearson by its beta-quantile definition
        lo = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), abs=1e-10)
        assert row["chance"] == pytest.approx(0.25)


def test_binomial_ci_edges():
    assert binomial_ci(0, 10)[0] == 0.0
    assert binomial_ci(10, 10)[1] == 1.0
    assert binomial_ci(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert all(np.isnan(binomial_ci(0, 0)))


def test_recovery_groups_split_conditions():
    j1, _ = make_tables(families=("full", "diagonal"), seed=1)
    j2 = j1.assign(regulariser="l2", job_id=j1["job_id"] + "-l2")
    jobs = pd.concat([j1, j2], ignore_index=True)
    assert condition_columns(jobs) == ["family", "regulariser"]
    acc = recovery_accuracy(jobs)
    assert len(acc) == 2 * 2 * 2 and acc["n_jobs"].eq(20).all()
    labels = set(add_condition(jobs)["condition"])
    assert labels == {"full, l2", "full, scalar_shrinkage", "diagonal, l2",
                      "diagonal, scalar_shrinkage"}  # fmt: skip


def test_confusion_matrix_by_hand():
    jobs = pd.DataFrame(
        {
            "job_id": list("abcdef"),
            "family": "full",
            "n_train": [10, 10, 10, 10, 10, 5],
            "generator": ["A", "A", "A", "B", "B", "B"],
            "winner": ["A", "B", "A", "B", "C", "A"],
        }
    )
    counts = confusion_matrix(jobs)  # largest N = 10
    assert counts.loc["A"].tolist() == [2, 1, 0]
    assert counts.loc["B"].tolist() == [0, 1, 1]
    assert counts.loc["C"].tolist() == [0, 0, 0]
    norm = confusion_matrix(jobs, normalize=True, generators=["A", "B"])
    assert norm.loc["A"].tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    assert norm.sum(axis=1).tolist() == pytest.approx([1, 1])
    small = confusion_matrix(jobs, n_train=5, candidates=["A", "B", "C", "D"])
    assert small.loc["B", "A"] == 1 and small.shape == (3, 4)
    with pytest.raises(ValueError, match="family"):
        confusion_matrix(pd.concat([jobs, jobs.assign(family="diagonal")]))


def test_correct_rank_mean_and_brute_force_bca():
    jobs, _ = make_tables(seeds=tuple(range(8)), seed=3)
    cr = correct_rank(jobs, n_resamples=2000, seed=7)
    for _, row in cr.iterrows():
        sub = jobs[jobs["n_train"] == row["n_train"]]
        assert row["mean_rank"] == pytest.approx(sub["generator_rank"].mean())
        lo, hi = bca_by_hand(
            sub["generator_rank"].to_numpy(),
            group_rng(7, ("full", row["n_train"])),
            2000,
            0.95,
        )
        assert row["ci_method"] == "BCa"
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
        assert row["ci_low"] <= row["mean_rank"] <= row["ci_high"]


def test_bootstrap_ci_small_cases():
    x = np.array([1.0, 2.0, 2.0, 3.0, 7.0])
    lo, hi, method = bootstrap_mean_ci(x, rng=11, n_resamples=5000)
    assert method == "BCa"
    assert (lo, hi) == pytest.approx(bca_by_hand(x, np.random.default_rng(11), 5000, 0.95))
    # order of the values does not matter; constant data give a zero-width interval
    assert bootstrap_mean_ci(x[::-1], rng=11, n_resamples=5000)[:2] == (lo, hi)
    assert bootstrap_mean_ci([2, 2, 2], rng=0) == (2.0, 2.0, "constant")
    assert bootstrap_mean_ci([3.0], rng=0)[2] == "none"


def test_false_rank_and_mrr_by_hand():
    scores = pd.DataFrame(
        {
            "job_id": ["j1"] * 3 + ["j2"] * 3,
            "family": "full",
            "n_train": 10,
            "generator": ["A"] * 3 + ["B"] * 3,
            "candidate": ["A", "B", "C", "A", "B", "C"],
            "rank": [2, 1, 3, 1, 3, 2],
        }
    )
    fr = false_rank(scores).set_index("candidate")
    assert fr.loc["A", "mean_rank"] == 1 and fr.loc["A", "n"] == 1 and np.isnan(fr.loc["A", "sem"])
    assert fr.loc["C", "mean_rank"] == pytest.approx(2.5)
    assert fr.loc["C", "sem"] == pytest.approx(np.std([3, 2], ddof=1) / np.sqrt(2))
    jobs = pd.DataFrame(
        {"family": "full", "n_train": 10, "generator_rank": [1, 2, 4, 1], "generator": "A"}
    )
    mrr = mean_reciprocal_rank(jobs)
    assert mrr["mrr"].iloc[0] == pytest.approx((1 + 0.5 + 0.25 + 1) / 4)


def test_rank_summary_and_win_share():
    jobs, scores = make_tables(seed=5)
    n = 1000
    rs = rank_summary(jobs[jobs.n_train == n], scores[scores.n_train == n], n_resamples=500)
    assert sorted(rs["model"]) == sorted(jobs["generator"].unique())
    for _, row in rs.iterrows():
        mine = jobs[(jobs.n_train == n) & (jobs.generator == row["model"])]
        assert row["correct_rank"] == pytest.approx(mine["generator_rank"].mean())
        assert row["mrr"] == pytest.approx((1 / mine["generator_rank"]).mean())
        theirs = scores[
            (scores.n_train == n)
            & (scores.candidate == row["model"])
            & (scores.generator != row["model"])
        ]
        assert row["false_rank"] == pytest.approx(theirs["rank"].mean())
    ws = win_share(jobs, candidates=[*sorted(jobs.generator.unique()), "never"])
    for (_fam, n_), sub in ws.groupby(["family", "n_train"]):
        assert sub["wins"].sum() == (jobs.n_train == n_).sum()
        assert sub["share"].sum() == pytest.approx(1.0)
        counts = jobs[jobs.n_train == n_]["winner"].value_counts()
        for _, row in sub.iterrows():
            assert row["wins"] == counts.get(row["candidate"], 0)
            assert row["ratio"] == pytest.approx(row["share"] / 0.25)
            assert row["p_excess"] == pytest.approx(
                stats.binomtest(row["wins"], row["n_jobs"], 0.25, alternative="greater").pvalue
            )
    assert ws.loc[ws.candidate == "never", "wins"].eq(0).all()
    assert ws["generator_share"].isin([0.0, 0.25]).all()


def test_pooled_runs_equal_single_run():
    """Tables of two runs (different seeds) concatenated in any order give the same answers."""
    jobs, scores = make_tables(seeds=tuple(range(6)), seed=9)
    run1, run2 = jobs[jobs.seed < 3], jobs[jobs.seed >= 3]
    pooled = pd.concat([run2, run1]).sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(recovery_accuracy(jobs), recovery_accuracy(pooled))
    pd.testing.assert_frame_equal(
        correct_rank(jobs, n_resamples=300, seed=2), correct_rank(pooled, n_resamples=300, seed=2)
    )
    shuffled = scores.sample(frac=1.0, random_state=2)
    pd.testing.assert_frame_equal(
        rank_summary(jobs, scores, n_resamples=300), rank_summary(pooled, shuffled, n_resamples=300)
    )
    pd.testing.assert_frame_equal(win_share(jobs), win_share(pooled))
    assert table_fingerprint(jobs, ["job_id"]) == table_fingerprint(pooled, ["job_id"])


# ----------------------------------------------------------------------------- geometry
def corr_cov_brute_force(d1: np.ndarray, d2: np.ndarray) -> float:
    """Whitened correlation from its definition: V = (C Cᵀ)∘(C Cᵀ), centred RDM vectors."""
    n_dist = len(d1)
    n = int(round((1 + np.sqrt(1 + 8 * n_dist)) / 2))
    c = np.zeros((n_dist, n))
    rows = np.arange(n_dist)
    iu = np.triu_indices(n, 1)
    c[rows, iu[0]], c[rows, iu[1]] = 1.0, -1.0
    v = (c @ c.T) ** 2
    a, b = d1 - d1.mean(), d2 - d2.mean()

    def ip(x, y):
        return x @ np.linalg.solve(v, y)

    return ip(a, b) / np.sqrt(ip(a, a) * ip(b, b))


@pytest.mark.parametrize("n", [5, 9, 14])
def test_corr_cov_matches_brute_force_and_corr_matches_pearson(n):
    rng = np.random.default_rng(n)
    d1, d2 = pdist(rng.normal(size=(n, 4))), pdist(rng.normal(size=(n, 6)) ** 2)
    assert compare_rdms(d1, d2, "corr_cov") == pytest.approx(corr_cov_brute_force(d1, d2))
    assert compare_rdms(d1, d2, "corr") == pytest.approx(np.corrcoef(d1, d2)[0, 1])
    assert compare_rdms(d1, d1, "corr_cov") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        compare_rdms(d1, d2, "spearman")


@pytest.mark.parametrize("n", [6, 20, 120])  # rsatoolbox switches to sparse code at 100
def test_corr_cov_matches_rsatoolbox(n):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(n)
    d1, d2 = pdist(rng.normal(size=(n, 5))), pdist(rng.normal(size=(n, 3)))
    ref = rsatoolbox.rdm.compare(
        rsatoolbox.rdm.RDMs(d1[None]), rsatoolbox.rdm.RDMs(d2[None]), method="corr_cov"
    )[0, 0]
    assert compare_rdms(d1, d2, "corr_cov") == pytest.approx(ref, abs=1e-10)
    assert compare_rdms(d1, d2, "corr_cov", backend="rsatoolbox") == pytest.approx(ref)
    assert compare_rdms(d1, d2, "corr", backend="rsatoolbox") == pytest.approx(
        compare_rdms(d1, d2, "corr")
    )


@pytest.mark.parametrize("method", ["corr", "corr_cov"])
def test_shift_zero_for_identity_and_scaled_orthogonal(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert representational_shift(x, np.eye(6), method) == pytest.approx(0.0, abs=1e-12)
    assert representational_shift(x, 3.7 * q, method) == pytest.approx(0.0, abs=1e-12)
    assert representational_shift(x, np.full(6, 0.5), method) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(euclidean_rdm(x @ (3.7 * q)), 3.7 * euclidean_rdm(x))
    w = rng.normal(size=(6, 6)) * np.array([5, 1, 0.1, 1, 0.2, 3])
    assert representational_shift(x, w, method) > 0.01


def test_effective_dimensionality_of_known_spectrum():
    rng = np.random.default_rng(1)
    n = 12
    z = rng.normal(size=(n, 3))
    z -= z.mean(axis=0)
    q, _ = np.linalg.qr(z)  # centred orthonormal columns
    x = q * np.sqrt([4.0, 1.0, 1.0]) * 5.0
    assert effective_dimensionality(x) == pytest.approx(36 / 18)
    # invariant to translation, rotation and padding with constant dimensions
    rot, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    padded = np.column_stack([x, np.ones((n, 2))]) @ rot + 10.0
    assert effective_dimensionality(padded) == pytest.approx(2.0)
    assert effective_dimensionality(rng.normal(size=(2000, 4))) == pytest.approx(4, rel=0.05)
    assert np.isnan(effective_dimensionality(np.ones((5, 3))))


def test_model_geometry_and_mds():
    rng = np.random.default_rng(2)
    n = 15
    human = rng.normal(size=(n, 3))
    feats = {
        "near": np.column_stack([human, 0.1 * rng.normal(size=(n, 2))]),
        "far": rng.normal(size=(n, 7)),
    }
    w_far = np.linalg.lstsq(feats["far"], human, rcond=None)[0]  # pulls toward the humans
    transforms = {"near": np.eye(5), "far": w_far}
    geo = model_geometry(feats, transforms, human).set_index("model")
    assert geo.loc["near", "shift"] == pytest.approx(0.0, abs=1e-12)
    assert geo.loc["near", "ed_after"] == pytest.approx(geo.loc["near", "ed_before"])
    assert geo.loc["far", "transformed_dim"] == 3 and geo.loc["far", "feature_dim"] == 7
    assert geo.loc["far", "human_distance_after"] < geo.loc["far", "human_distance_before"]
    assert geo.loc["near", "human_distance_before"] == pytest.approx(
        human_distance(feats["near"], human)
    )
    rdms = model_rdms(feats, transforms, human)
    assert set(rdms) == {("far", "raw"), ("far", "transformed"), ("near", "raw"),
                         ("near", "transformed"), ("human", "human")}  # fmt: skip
    sim = rdm_similarity(rdms, "corr_cov")
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1)
    assert sim.loc["far", "human"] == pytest.approx(
        compare_rdms(rdms[("far", "raw")], rdms[("human", "human")])
    )
    c1 = mds_coordinates(sim, seed=3)
    c2 = mds_coordinates(sim, seed=3)
    pd.testing.assert_frame_equal(c1, c2)
    assert set(c1["state"]) == {"raw", "transformed", "human"}
    sub = model_geometry(feats, transforms, human, max_concepts=10, seed=1)
    assert sub["n_concepts"].eq(10).all()
    # missing transform: NaN after-columns
    geo2 = model_geometry(feats).set_index("model")
    assert np.isnan(geo2.loc["far", "shift"]) and np.isnan(geo2.loc["far", "human_distance_after"])


# ----------------------------------------------------------------------------- regression
def planted_regression(m: int = 10, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"m{i:02d}" for i in range(m)]
    geometry = pd.DataFrame(
        {
            "model": names,
            "shift": rng.uniform(0.05, 0.6, m),
            "ed_before": rng.uniform(2, 40, m),
            "ed_after": rng.uniform(2, 20, m),
            "feature_dim": rng.choice([512, 768, 1024, 2048, 4096], m).astype(float)
            + rng.uniform(0, 50, m),
        }
    )
    props = ("shift", "ed_before", "ed_after", "feature_dim")
    cols = predictor_names(props)
    beta = dict.fromkeys(cols, 0.0)
    beta.update(candidate_shift=0.5, generator_shift=-0.25, generator_ed_before=-0.46,
                candidate_ed_after=0.2)  # fmt: skip
    p = geometry.set_index("model")
    pairs = [(g, c) for g in names for c in names if g != c]
    x = np.array([[p.loc[c if col.startswith("c") else g, col.split("_", 1)[1]] for col in cols]
                  for g, c in pairs])  # fmt: skip
    z = (x - x.mean(0)) / x.std(0)
    y = z @ np.array([beta[c] for c in cols])
    y = y + noise * rng.normal(size=len(y))
    rows = []
    for (g, c), d in zip(pairs, y, strict=True):
        for s, e in ((0, 0.003), (1, -0.003)):  # seed noise that averages out exactly
            rows.append({"candidate": c, "generator": g, "seed": s, "test_accuracy": 0.9 - d + e})
    for g in names:
        for s, e in ((0, 0.003), (1, -0.003)):
            rows.append({"candidate": g, "generator": g, "seed": s, "test_accuracy": 0.9 + e})
    scores = pd.DataFrame(rows).assign(family="full", n_train=1000)
    scores["job_id"] = scores["generator"] + "-" + scores["seed"].astype(str)
    small = scores.assign(n_train=100, test_accuracy=0.5)  # ignored: not the largest N
    return pd.concat([scores, small], ignore_index=True), geometry, beta, cols, y


def test_pair_differences_by_hand():
    scores, _, _, _, y = planted_regression(m=4)
    pairs = pair_differences(scores)
    assert len(pairs) == 12 and pairs["n_jobs"].eq(2).all() and pairs["n_train"].eq(1000).all()
    row = pairs[(pairs.generator == "m01") & (pairs.candidate == "m03")].iloc[0]
    own = scores[(scores.n_train == 1000) & (scores.generator == "m01")]
    by_seed = own.pivot_table(index="seed", columns="candidate", values="test_accuracy")
    assert row["difference"] == pytest.approx((by_seed["m01"] - by_seed["m03"]).mean())


def test_regression_recovers_planted_coefficients():
    scores, geometry, beta, cols, y = planted_regression(m=10)
    out = accuracy_difference_regression(scores, None, geometry, n_boot=400, seed=1)
    assert out["predictor"].tolist() == cols
    expected = np.array([beta[c] for c in cols]) / y.std()
    assert out["beta"].to_numpy() == pytest.approx(expected, abs=1e-9)
    assert out["n_pairs"].eq(90).all() and out["n_models"].eq(10).all()
    assert out["n_boot_valid"].eq(400).all()
    assert (out["p_bonferroni"] == np.minimum(1, out["p"] * len(cols))).all()
    big = out.set_index("predictor")
    for name in ("candidate_shift", "generator_shift", "generator_ed_before"):
        assert big.loc[name, "p_bonferroni"] < 0.05
        assert big.loc[name, "ci_low"] <= big.loc[name, "beta"] <= big.loc[name, "ci_high"]
    assert big.loc["candidate_feature_dim", "p"] > 0.05
    again = accuracy_difference_regression(scores, None, geometry, n_boot=400, seed=1)
    pd.testing.assert_frame_equal(out, again)


def test_regression_low_noise_and_statsmodels():
    scores, geometry, beta, cols, y = planted_regression(m=12, noise=0.05, seed=4)
    out = accuracy_difference_regression(scores, None, geometry, n_boot=200, seed=0)
    expected = np.array([beta[c] for c in cols]) / y.std()
    assert out["beta"].to_numpy() == pytest.approx(expected, abs=0.05)
    sm = pytest.importorskip("statsmodels.api")
    pairs = pair_differences(scores)
    props = geometry.set_index("model")
    x = np.column_stack(
        [props[c.split("_", 1)[1]].reindex(pairs[c.split("_")[0]]).to_numpy() for c in cols]
    )
    zx = (x - x.mean(0)) / x.std(0)
    zy = (pairs["difference"] - pairs["difference"].mean()) / pairs["difference"].std(ddof=0)
    fit = sm.OLS(zy.to_numpy(), sm.add_constant(zx)).fit()
    assert out["beta"].to_numpy() == pytest.approx(fit.params[1:], abs=1e-10)


def test_regression_bootstrap_replicate_by_brute_force():
    """With one resample the interval collapses onto that resample's fit: redo it by hand."""
    scores, geometry, _, cols, _ = planted_regression(m=6, noise=0.1, seed=2)
    out = accuracy_difference_regression(scores, None, geometry, n_boot=1, seed=5)
    names = sorted(geometry["model"])
    draw = np.random.default_rng(5).integers(0, 6, size=6)
    pairs = pair_differences(scores).set_index(["generator", "candidate"])["difference"]
    props = geometry.set_index("model")
    ys, xs = [], []
    for a in range(6):
        for b in range(6):
            g, c = names[draw[a]], names[draw[b]]
            if a == b or g == c:
                continue
            ys.append(pairs[(g, c)])
            xs.append([props.loc[c if col.startswith("c") else g, col.split("_", 1)[1]]
                       for col in cols])  # fmt: skip
    ref = standardized_ols(np.array(ys), np.array(xs))
    assert out["ci_low"].to_numpy() == pytest.approx(ref, abs=1e-10)
    assert out["ci_high"].to_numpy() == pytest.approx(ref, abs=1e-10)


def level_regression(seed: int = 0):
    """``planted_regression`` with ``shift`` moved into a models table with two levels: the
    ``full`` rows hold the planted values, the ``diagonal`` rows a permutation of them."""
    scores, geometry, beta, cols, y = planted_regression(m=10, seed=seed)
    full = geometry.assign(level="full", family="full", n_parameters=1e6)
    perm = np.random.default_rng(99).permutation(len(geometry))
    diag = full.assign(level="diagonal", family="diagonal")
    diag["shift"] = full["shift"].to_numpy()[perm]
    models = pd.concat([diag, full], ignore_index=True)
    return scores.assign(level="full"), models, beta, cols, y


def test_regression_uses_the_matching_level_rows():
    scores, models, beta, cols, y = level_regression()
    props = ("shift", "ed_before", "ed_after", "feature_dim")
    out = accuracy_difference_regression(scores, models, None, properties=props, n_boot=50)
    assert out["predictor"].tolist() == cols
    expected = np.array([beta[c] for c in cols]) / y.std()
    assert out["beta"].to_numpy() == pytest.approx(expected, abs=1e-9)  # full's rows
    p_diag = model_properties(models, level="diagonal")
    assert not np.allclose(p_diag["shift"], model_properties(models, level="full")["shift"])
    wrong = accuracy_difference_regression(
        scores, models, None, properties=props, level="diagonal", n_boot=50
    )
    assert not np.allclose(wrong["beta"].to_numpy(), expected, atol=1e-3)


def test_regression_drops_a_property_missing_for_some_model():
    scores, models, beta, cols, y = level_regression(seed=3)
    models = models.assign(n_parameters=np.arange(len(models), dtype=float) * 1e6 + 1e6)
    models.loc[(models.level == "full") & (models.model == "m03"), "n_parameters"] = np.nan
    props = ("shift", "ed_before", "ed_after", "feature_dim", "n_parameters")
    out = accuracy_difference_regression(scores, models, None, properties=props, n_boot=50)
    assert out["predictor"].tolist() == cols  # n_parameters dropped, nothing else
    assert out["n_pairs"].eq(90).all()  # no pair of m03 lost
    assert out.attrs["properties"] == list(props[:4])
    assert any("n_parameters" in n and "m03" in n for n in out.attrs["notes"])
    same = accuracy_difference_regression(scores, models, None, properties=props[:4], n_boot=50)
    pd.testing.assert_frame_equal(out, same)
    with pytest.raises(ValueError, match="n_parameters"):
        accuracy_difference_regression(
            scores, models, None, properties=props, n_boot=10, missing="raise"
        )
    # known for every model at this level (NA only at another level): kept
    models.loc[(models.level == "full") & (models.model == "m03"), "n_parameters"] = 5e6
    models.loc[models.level == "diagonal", "n_parameters"] = np.nan
    kept = accuracy_difference_regression(scores, models, None, properties=props, n_boot=10)
    assert "generator_n_parameters" in kept["predictor"].tolist()


# ----------------------------------------------------------------------------- trade-off
def test_tradeoff_table():
    models = ("a", "b", "c")
    jobs, _ = make_tables(models=models, families=("zero_shot", "full"), seed=4)
    mt = make_models(models, ("zero_shot", "full"))
    t = tradeoff_table(jobs, mt)
    assert len(t) == 4
    for _, row in t.iterrows():
        h = mt[mt.family == row["family"]]["human_accuracy"]
        assert row["human_mean"] == pytest.approx(h.mean())
        assert row["human_sem"] == pytest.approx(h.std(ddof=1) / np.sqrt(3))
    acc = recovery_accuracy(jobs)
    assert t["accuracy"].tolist() == acc["accuracy"].tolist()


# ----------------------------------------------------------------------------- new schema
def test_condition_columns_and_labels_new_schema():
    jobs, _ = make_tables(models=("a", "b", "c"), ns=(100,), seeds=(0, 1), seed=1)
    rect = with_condition(jobs, "rectangular8", "0" * 16)
    full_random = with_condition(jobs, "full", "1" * 16)
    full_first = with_condition(jobs, "full", "2" * 16, tie_rule="first")
    full_f64 = with_condition(jobs, "full", "3" * 16)  # differs only in its key (e.g. dtype)
    both = pd.concat([full_first, full_random, rect, full_f64], ignore_index=True)
    cols = condition_columns(both)
    assert cols[:2] == ["level", "family"] and "tie_rule" in cols and "k" in cols
    assert "condition_key" in cols  # the visible columns do not separate 1... from 3...
    labelled = add_condition(both)
    labels = labelled.groupby("condition_key")["condition"].first().to_dict()
    assert labels["0" * 16] == "rectangular8, ties: random"  # the level replaces family, k
    assert labels["2" * 16] == "full, ties: first"
    assert labels["1" * 16] == "full, ties: random #111111"
    assert labels["3" * 16] == "full, ties: random #333333"
    acc = recovery_accuracy(labelled)
    assert len(acc) == 4 and acc["n_jobs"].eq(6).all()
    # without the clash the key is not needed and stays out of grouping and labels
    two = pd.concat([full_first, full_random], ignore_index=True)
    assert "condition_key" not in condition_columns(two)
    assert set(add_condition(two)["condition"]) == {"full, ties: first", "full, ties: random"}
    # a lone warm-start condition next to a cold one
    warm = with_condition(jobs, "full", "4" * 16, warm_start=True)
    pair = add_condition(pd.concat([full_random, warm], ignore_index=True))
    assert set(pair["condition"]) == {"full, cold start", "full, warm start"}


def test_levels_sort_in_flexibility_order():
    labels = ["full", "rectangular30", "zero_shot, ties: first", "rectangular8", "diagonal",
              "zero_shot", "full, l2", "mystery"]  # fmt: skip
    assert sort_conditions(labels) == [
        "zero_shot", "zero_shot, ties: first", "diagonal", "rectangular8", "rectangular30",
        "full", "full, l2", "mystery",
    ]  # fmt: skip


def level_models(names, levels, human):
    """One row per (model, level) with the planted ``human[level][model]`` accuracy."""
    rows = []
    for lev in levels:
        for i, m in enumerate(names):
            if m not in human.get(lev, {}):
                continue
            rows.append(
                {
                    "model": m, "family": lev.rstrip("0123456789"), "level": lev,
                    "feature_dim": 8 + i, "n_parameters": 1e6 * (i + 1), "probe_parameters": 1,
                    "human_accuracy": human[lev][m], "human_nll": 1.0, "lam": 0.1,
                    "temperature": 1.0, "generator_run": f"run-{lev}-{m}",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_tradeoff_never_mixes_levels():
    """Each level's human accuracy is the mean of exactly its generators' rows at that level."""
    gens = ("a", "b", "c")
    base, _ = make_tables(models=gens, ns=(100, 1000), seeds=tuple(range(6)), seed=4)
    jobs = pd.concat(
        [with_condition(base, lev, str(i) * 16) for i, lev in enumerate(("full", "zero_shot"))],
        ignore_index=True,
    )
    human = {
        "zero_shot": {"a": 0.31, "b": 0.35},  # c has no zero_shot row: must not borrow one
        "full": {"a": 0.60, "b": 0.64, "c": 0.65, "d": 0.99},  # d generated no job
        "diagonal": {"a": 0.9, "b": 0.9, "c": 0.9},  # a level without jobs
    }
    models = level_models(("a", "b", "c", "d"), ("zero_shot", "full", "diagonal"), human)
    t = tradeoff_table(jobs, models)
    assert len(t) == 4
    for _, row in t.iterrows():
        want = [human[row["level"]][g] for g in gens if g in human[row["level"]]]
        assert row["n_models"] == len(want) and row["n_generators"] == 3
        assert row["human_mean"] == pytest.approx(np.mean(want))
        assert row["human_sem"] == pytest.approx(np.std(want, ddof=1) / np.sqrt(len(want)))
        sub = jobs[(jobs.level == row["level"]) & (jobs.n_train == row["n_train"])]
        assert (row["n_jobs"], row["n_recovered"]) == (len(sub), int(sub["recovered"].sum()))
    paper = paper_table(jobs, models)
    assert paper["level"].tolist() == ["zero_shot", "full"]  # flexibility order
    assert paper["n_train"].eq(1000).all() and paper["n_sizes"].eq(2).all()
    for _, row in paper.iterrows():
        sub = jobs[(jobs.level == row["level"]) & (jobs.n_train == 1000)]
        k, n = int(sub["recovered"].sum()), len(sub)
        assert row["recovery"] == pytest.approx(k / n)
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        ref = PAPER_REFERENCE[row["level"]]
        assert row["paper_human_accuracy"] == ref["human_accuracy"]
        assert row["paper_recovery"] == ref["recovery"]
    assert paper.set_index("level").loc["zero_shot", "human_mean"] == pytest.approx(0.33)
    assert paper.set_index("level").loc["full", "paper_recovery_text"] == "<80%"
    # an old models table (one row per model and family, no level) still matches by family
    old = models.drop(columns="level")
    pd.testing.assert_frame_equal(paper_table(jobs, old), paper)


def test_ranks_with_average_ties_flow_into_mrr():
    """Tie rule ``first``: average ranks (1.5, 2.5, ...) feed correct rank, false rank, MRR."""
    rng = np.random.default_rng(0)
    cands = ("a", "b", "c", "d")
    jobs, scores = [], []
    for g, s in itertools.product(cands, range(12)):
        acc = rng.choice([0.5, 0.6, 0.7], size=len(cands))  # coarse: many ties
        ranks = stats.rankdata(-acc, method="average")
        # brute force: 1 + #better + #tied others / 2
        brute = np.array([1 + (acc > v).sum() + ((acc == v).sum() - 1) / 2 for v in acc])
        assert np.array_equal(ranks, brute)
        winner = cands[int(np.flatnonzero(acc == acc.max())[0])]  # first in candidate order
        job_id = f"full-{g}-{s}"
        for c, a, r in zip(cands, acc, ranks, strict=True):
            scores.append({"job_id": job_id, "generator": g, "n_train": 100, "seed": s,
                           "family": "full", "candidate": c, "score": a,
                           "test_accuracy": a, "rank": float(r)})  # fmt: skip
        jobs.append({"job_id": job_id, "generator": g, "n_train": 100, "seed": s,
                     "family": "full", "winner": winner, "recovered": winner == g,
                     "n_candidates": 4, "generator_rank": float(ranks[cands.index(g)]),
                     "n_tied_top": int((acc == acc.max()).sum())})  # fmt: skip
    jobs, scores = pd.DataFrame(jobs), pd.DataFrame(scores)
    jobs, scores = (
        with_condition(jobs, "full", "f" * 16, tie_rule="first"),
        with_condition(scores, "full", "f" * 16, tie_rule="first"),
    )
    assert (jobs["generator_rank"] % 1 != 0).any()  # there are fractional ranks
    assert (jobs["recovered"] & (jobs["generator_rank"] > 1)).any()  # tied winner, rank 1.5
    mrr = mean_reciprocal_rank(jobs)["mrr"].iloc[0]
    assert mrr == pytest.approx(np.mean(1 / jobs["generator_rank"]))
    rs = rank_summary(jobs, scores, n_resamples=200).set_index("model")
    for m in cands:
        mine = jobs[jobs.generator == m]["generator_rank"]
        assert rs.loc[m, "correct_rank"] == pytest.approx(mine.mean())
        assert rs.loc[m, "mrr"] == pytest.approx(np.mean(1 / mine))
        theirs = scores[(scores.candidate == m) & (scores.generator != m)]["rank"]
        assert rs.loc[m, "false_rank"] == pytest.approx(theirs.mean())
    assert recovery_accuracy(jobs)["tied_top_share"].iloc[0] == pytest.approx(
        (jobs["n_tied_top"] > 1).mean()
    )
    # the generator's rank in scores is its job's generator_rank
    own = scores[scores.candidate == scores.generator].set_index("job_id")["rank"]
    assert np.array_equal(own.reindex(jobs["job_id"]).to_numpy(), jobs["generator_rank"])


# ----------------------------------------------------------------------------- report
def planted_world(models, n=24, seed=0):
    rng = np.random.default_rng(seed)
    human = rng.normal(size=(n, 4))
    feats, trans = {}, {}
    for i, m in enumerate(models):
        p = 5 + i
        feats[m] = np.column_stack([human @ rng.normal(size=(4, 3)), rng.normal(size=(n, p - 3))])
        trans[m] = np.eye(p) + 0.3 * rng.normal(size=(p, p))
    return feats, trans, human


FAST = ReportConfig(n_resamples=300, n_boot=150, dpi=60)


def _check_outputs(path: Path, expected_figures: set[str]) -> None:
    out = path.parent
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    svgs = {p.stem for p in (out / "figures").glob("*.svg")}
    assert pngs == svgs == expected_figures
    text = path.read_text()
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == len(expected_figures)
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert set(re.findall(r'data-figure="([^"]+)"', text)) == expected_figures
    for name in expected_figures:  # every plotted table is saved as CSV
        assert (out / "tables" / f"{name}.csv").exists(), name


def test_build_report_full(tmp_path):
    models = ("alexnet", "clip_rn50", "dino_vitb16", "resnet50", "vit_b16")
    families = ("zero_shot", "full")
    jobs, scores = make_tables(models=models, families=families, ns=(50, 400, 3200), seed=2)
    feats, trans, human = planted_world(models)
    prov = {"run_ids": ["abc123", "def456"], "commit": "0123abcd", "data_sha256": {"x": "ff"}}
    report = build_report(
        jobs, scores, make_models(models, families), features=feats, transforms=trans,
        human_embedding=human, provenance=prov, out_dir=tmp_path / "rep", config=FAST,
    )  # fmt: skip
    path = report.html
    assert path == tmp_path / "rep" / "report.html" and Path(report) == path
    expected = {"recovery_accuracy", "mds", "human_distance", "tradeoff", "regression_full"}
    for fam in families:
        expected |= {f"confusion_{fam}_n3200", f"ranks_{fam}_n3200", f"wins_{fam}_n3200"}
        expected |= {f"recovery_by_model_{fam}", f"winners_by_n_{fam}"}  # every N
    _check_outputs(path, expected)
    text = path.read_text()
    for token in ("abc123", "0123abcd", "corr_cov", "Bonferroni", "recovery_accuracy.csv"):
        assert token in text
    reg = pd.read_csv(tmp_path / "rep" / "tables" / "regression_full.csv")
    assert list(reg.columns[:6]) == ["predictor", "beta", "ci_low", "ci_high", "p", "p_bonferroni"]
    assert len(reg) == 10  # shift, ed_before, ed_after, feature_dim, n_parameters x 2 roles
    acc = pd.read_csv(tmp_path / "rep" / "tables" / "recovery_accuracy.csv")
    assert len(acc) == 6


def test_build_report_minimal_single_n_single_family(tmp_path):
    jobs, scores = make_tables(ns=(400,), seed=6)
    path = build_report(jobs, scores, None, provenance={}, out_dir=tmp_path, config=FAST).html
    _check_outputs(path, {"recovery_accuracy", "confusion_full_n400", "ranks_full_n400",
                          "wins_full_n400", "recovery_by_model_full",
                          "winners_by_n_full"})  # fmt: skip
    text = path.read_text()
    assert "No features given" in text and "Skipped: needs the models table" in text


def test_build_report_features_without_transforms(tmp_path):
    models = ("a", "b", "c", "d")
    jobs, scores = make_tables(models=models, ns=(100, 200), seed=8)
    feats, _, _ = planted_world(models, seed=3)
    dup = pd.concat([jobs, jobs.iloc[:3]])
    cfg = ReportConfig(n_resamples=200, n_boot=100, dpi=50, confusion_n=(100, 200, 999))
    path = build_report(
        dup, scores, make_models(models, ("full",)), features=feats, provenance={"run": "r"},
        out_dir=tmp_path, config=cfg,
    ).html  # fmt: skip
    _check_outputs(
        path,
        {"recovery_accuracy", "confusion_full_n100", "confusion_full_n200", "ranks_full_n200",
         "wins_full_n200", "mds", "tradeoff", "regression_full", "recovery_by_model_full",
         "winners_by_n_full"},
    )  # fmt: skip
    text = path.read_text()
    assert "3 duplicate job rows dropped" in text and "No transforms W given" in text


@pytest.mark.slow
def test_build_report_pooled_runs_equal_single_run(tmp_path):
    """Two runs' tables (different seeds) pooled in any order give the same report."""
    models = ("a", "b", "c", "d")
    jobs, scores = make_tables(models=models, ns=(100, 800), seeds=tuple(range(6)), seed=12)
    feats, trans, human = planted_world(models, seed=5)
    mt = make_models(models, ("full",))
    pooled_jobs = pd.concat([jobs[jobs.seed >= 3], jobs[jobs.seed < 3]]).sample(
        frac=1.0, random_state=3
    )
    pooled_scores = scores.sample(frac=1.0, random_state=4)
    kw = {"features": feats, "transforms": trans, "human_embedding": human, "config": FAST,
          "provenance": {"run_ids": ["r1", "r2"]}}  # fmt: skip
    one = build_report(jobs, scores, mt, out_dir=tmp_path / "one", **kw)
    two = build_report(pooled_jobs, pooled_scores, mt, out_dir=tmp_path / "two", **kw)
    tables = sorted(p.name for p in (tmp_path / "one" / "tables").glob("*.csv"))
    assert tables == sorted(p.name for p in (tmp_path / "two" / "tables").glob("*.csv"))
    for name in tables:
        assert (tmp_path / "one" / "tables" / name).read_bytes() == (
            tmp_path / "two" / "tables" / name
        ).read_bytes(), name
    assert one.html.read_text() == two.html.read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium not found (Debian: apt-get install -y chromium)")
    models = ("alexnet", "clip_rn50", "dino_vitb16", "resnet50")
    jobs, scores = make_tables(models=models, families=("diagonal", "full"), seed=1)
    feats, trans, human = planted_world(models)
    path = build_report(
        jobs, scores, make_models(models, ("diagonal", "full")), features=feats,
        transforms=trans, human_embedding=human, provenance={"run_ids": ["r1"]},
        out_dir=tmp_path / "rep", config=FAST,
    ).html  # fmt: skip
    n_figures = len(list((tmp_path / "rep" / "figures").glob("*.png")))
    probe = (
        "<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
        "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
        "document.body.setAttribute('data-images',ok+'/'+im.length);});</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(path.read_text().replace("</body>", probe + "</body>"))
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
        "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-2000:]
    match = re.search(r'data-images="(\d+)/(\d+)"', res.stdout)
    assert match, f"marker not set; stderr: {res.stderr[-2000:]}"
    ok, total = int(match.group(1)), int(match.group(2))
    assert total == n_figures >= 9
    assert ok == total


def test_build_report_conditions_side_by_side(tmp_path):
    """Levels and conditions stay apart, in flexibility order; a rerun counts once."""
    gens = ("a", "b", "c", "d")
    base, base_scores = make_tables(models=gens, ns=(100, 800), seeds=tuple(range(5)), seed=7)
    spec = [("full", "1" * 16, {}), ("full", "2" * 16, {"tie_rule": "first"}),
            ("zero_shot", "3" * 16, {}), ("rectangular8", "4" * 16, {})]  # fmt: skip
    parts = [
        (with_condition(base, lev, key, **kw), with_condition(base_scores, lev, key, **kw))
        for lev, key, kw in spec
    ]
    jobs = pd.concat([j for j, _ in parts], ignore_index=True)
    scores = pd.concat([s for _, s in parts], ignore_index=True)
    # a rerun of the zero-shot condition under a new commit: new job_ids, other winners
    rerun, rerun_scores = parts[2][0].copy(), parts[2][1].copy()
    rerun["job_id"] += "-rerun"
    rerun_scores["job_id"] += "-rerun"
    rerun["winner"], rerun["recovered"] = rerun["generator"], True
    jobs = pd.concat([jobs, rerun], ignore_index=True)
    scores = pd.concat([scores, rerun_scores], ignore_index=True)
    human = {"zero_shot": dict(zip(gens, (0.30, 0.32, 0.34, 0.36), strict=True)),
             "rectangular8": dict(zip(gens, (0.50, 0.52, 0.56, 0.58), strict=True)),
             "full": dict(zip(gens, (0.60, 0.61, 0.65, 0.66), strict=True))}  # fmt: skip
    models = level_models(gens, ("zero_shot", "rectangular8", "full"), human)
    paper = ReportConfig(n_resamples=300, n_boot=150, dpi=60, reference="paper")
    report = build_report(jobs, scores, models, provenance={}, out_dir=tmp_path, config=paper)
    labels = ["zero_shot, ties: random", "rectangular8, ties: random", "full, ties: first",
              "full, ties: random"]  # fmt: skip
    paper = report.paper_table
    assert paper["condition"].tolist() == labels
    for _, row in paper.iterrows():
        assert row["human_mean"] == pytest.approx(np.mean(list(human[row["level"]].values())))
        assert row["n_jobs"] == len(gens) * 5 and row["n_train"] == 800
    assert paper.set_index("condition").loc[labels[0], "recovery"] == 1.0  # the rerun won
    csv = pd.read_csv(report.tables["tradeoff"])
    assert report.tables["tradeoff"] == tmp_path / "tables" / "tradeoff.csv"
    assert csv["condition"].tolist() == labels
    assert csv["recovery"].to_numpy() == pytest.approx(paper["recovery"].to_numpy())
    assert len(pd.read_csv(report.tables["tradeoff_by_n"])) == 8
    side = pd.read_csv(report.tables["recovery_side_by_side"], index_col=0)
    assert side.columns.tolist() == labels and side.index.tolist() == [100, 800]
    acc = report.recovery.set_index(["condition", "n_train"])
    assert acc.loc[(labels[0], 800), "n_jobs"] == 20
    cell = side.loc[800, labels[3]]
    row = acc.loc[(labels[3], 800)]
    assert cell.startswith(f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
    assert any("40 duplicate job rows dropped" in n for n in report.notes)
    conds = pd.read_csv(report.tables["conditions"])
    assert conds["condition"].tolist() == labels and conds["n_jobs"].eq(40).all()
    confusions = {name for name in report.figures if name.startswith("confusion_")}
    assert len(confusions) == 4 and all(p.exists() for p in report.figures.values())
    assert "the paper" in report.html.read_text()
