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
    model_rdms,
    pair_differences,
    rank_summary,
    rdm_similarity,
    recovery_accuracy,
    representational_shift,
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
                          "wins_full_n400"})  # fmt: skip
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
         "wins_full_n200", "mds", "tradeoff", "regression_full"},
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
