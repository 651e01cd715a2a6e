"""The verdict (analysis/verdict.py and the report's first section): its numbers against
hand computations on planted tables, the one systematic-bias test shared by the wins
table, the systematic-bias table and the verdict, and the paper's figures only on
request."""

from __future__ import annotations

import html
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelrecovery.analysis.groups import excess_wins
from modelrecovery.analysis.metrics import binomial_ci, win_share
from modelrecovery.analysis.report import (
    ReportConfig,
    build_report,
    prepare_inputs,
    section_by_n,
    section_groups,
    section_ranks,
    section_verdict,
)
from modelrecovery.analysis.verdict import (
    clopper_pearson,
    collection_plan,
    crown_trust,
    human_leaderboard,
    recovery_intervals,
    recovery_sentence,
    target_reached,
    triplets_to_collect,
    verdict,
    verdict_lines,
)
from modelrecovery.data.splits import concept_folds

#: generator -> winner -> jobs (3 generators x 10 jobs)
CROWNS = {"A": {"A": 8, "B": 2}, "B": {"B": 5, "A": 3, "C": 2}, "C": {"C": 6, "A": 4}}


def jobs_from(crowns: dict, n_train: int = 5000, level: str = "full", start: int = 0):
    rows, i = [], start
    for g, winners in crowns.items():
        for w, count in winners.items():
            for _ in range(count):
                rows.append({"job_id": f"{level}-{i}", "generator": g, "winner": w,
                             "n_train": n_train, "seed": i, "level": level, "family": level,
                             "recovered": float(g == w), "n_candidates": 3,
                             "generator_rank": 1.0 if g == w else 2.0})  # fmt: skip
                i += 1
    return pd.DataFrame(rows)


def scores_from(jobs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for j in jobs.itertuples():
        order = [j.winner] + ([j.generator] if j.generator != j.winner else [])
        order += sorted({"A", "B", "C"} - set(order))
        for r, cand in enumerate(order, start=1):
            rows.append({"job_id": j.job_id, "generator": j.generator, "candidate": cand,
                         "n_train": j.n_train, "seed": j.seed, "level": j.level,
                         "family": j.family, "rank": float(r), "score": 1.0 - 0.1 * r,
                         "test_accuracy": 1.0 - 0.1 * r})  # fmt: skip
    return pd.DataFrame(rows)


def with_condition(jobs: pd.DataFrame) -> pd.DataFrame:
    return jobs.assign(condition=jobs["level"])


# ----------------------------------------------------------------------------- recovery
def test_clopper_pearson_against_beta_quantiles():
    for k, n in [(8, 12), (0, 12), (12, 12), (1, 3)]:
        low, high = clopper_pearson(k, n)
        want_low = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
        want_high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        assert (low, high) == pytest.approx((want_low, want_high))
        assert (low, high) == pytest.approx(binomial_ci(k, n))
    assert all(math.isnan(x) for x in clopper_pearson(0, 0))


def test_shared_tie_credit_spans_every_way_of_breaking_ties():
    jobs = pd.DataFrame(
        {
            "condition": "full",
            "n_train": 10,
            "recovered": [1.0, 1.0, 0.5, 0.0],
            "generator": "a",
            "winner": ["a", "a", "a", "b"],
        }  # fmt: skip
    )
    row = recovery_intervals(jobs).iloc[0]
    assert row["accuracy"] == pytest.approx(0.625) and row["n_shared"] == 1
    assert row["ci_low"] == pytest.approx(clopper_pearson(2, 4)[0])  # the tie lost
    assert row["ci_high"] == pytest.approx(clopper_pearson(3, 4)[1])  # the tie won


def planted_levels() -> pd.DataFrame:
    """full: 4, 10, 11 of 12 recovered at N = 400, 1000, 5000."""
    parts = []
    for n, k in ((400, 4), (1000, 10), (5000, 11)):
        parts.append(
            pd.DataFrame(
                {
                    "condition": "full",
                    "level": "full",
                    "n_train": n,
                    "generator": "a",
                    "winner": ["a"] * k + ["b"] * (12 - k),
                    "recovered": [1.0] * k + [0.0] * (12 - k),
                }
            )  # fmt: skip
        )
    return pd.concat(parts, ignore_index=True)


def test_recovery_sentence_for_a_planted_level():
    table = recovery_intervals(planted_levels())
    collect = {n: triplets_to_collect(n) for n in (400, 1000, 5000)}
    assert collect == {400: 6250, 1000: 15625, 5000: 78125}  # validation share binds
    text = recovery_sentence("full probes", table, collect=collect)
    assert text == (
        "full probes: the generating model is recovered in 92% [62, 100] of 12 jobs at "
        "N = 5,000 per fold (≈ 78,125 uniformly sampled triplets to collect); reaches 80% "
        "from N = 1,000 on (≈ 15,625 triplets to collect); the 95% interval does not clear "
        "80% at any N"
    )
    assert target_reached(table, 0.8) == {"first": 1000, "from": 1000, "ci_from": None}
    assert target_reached(table, 0.3) == {"first": 400, "from": 400, "ci_from": 1000}
    low = recovery_sentence("full probes", table, target=0.95)
    assert low.endswith("; below 95% at every N tried")
    dip = table.assign(accuracy=[0.9, 0.5, 0.6])
    assert "; reaches 80% at N = 400 but falls below it again at N = 1,000;" in (
        recovery_sentence("full", dip)
    )
    back = recovery_sentence("full", table.assign(accuracy=[0.9, 0.5, 0.95]))
    assert "; reaches 80% from N = 5,000 on (already at N = 400, but below it at N = 1,000);" in (
        back
    )


# ----------------------------------------------------------------------------- triplets
@pytest.mark.parametrize("n_concepts", [15, 17])
def test_triplets_to_collect_against_brute_force(n_concepts):
    folds = concept_folds(n_concepts, 3, seed=0, train_fraction=0.7)
    triplets = list(itertools.combinations(range(n_concepts), 3))
    need = 0.0
    n, n_eval = 40, max(1, round(40 / 8))
    for fold in folds:
        shares = [
            sum(set(t) <= set(part.tolist()) for t in triplets) / len(triplets)
            for part in (fold.train, fold.validation, fold.test)
        ]
        need = max(need, n / shares[0], n_eval / shares[1], n_eval / shares[2])
    plan = collection_plan(n, 0.7, 1 / 8, n_concepts)
    assert plan["total"] == math.ceil(need)
    assert triplets_to_collect(n, 0.7, 1 / 8, n_concepts) == math.ceil(need)
    c_train = len(folds[0].train)
    assert plan["p_train"] <= math.comb(c_train, 3) / math.comb(n_concepts, 3) + 1e-12


def test_triplets_to_collect_things_and_limit():
    plan = collection_plan(1000, n_concepts=1854)  # THINGS: 865 / 371 / 618 concepts
    assert plan["p_train"] == pytest.approx(math.comb(865, 3) / math.comb(1854, 3))
    assert plan["p_validation"] == pytest.approx(math.comb(371, 3) / math.comb(1854, 3))
    assert plan["binding"] == 1  # the validation part is the smallest
    # large-n limit: training concepts are 0.7 x 2/3 of all
    assert collection_plan(1000)["for_train"] == pytest.approx(1000 / (0.7 * 2 / 3) ** 3)
    with pytest.raises(ValueError, match="fewer than 3 concepts"):
        triplets_to_collect(10, n_concepts=9)


# ----------------------------------------------------------------------------- crowns
def test_crown_trust_by_hand():
    jobs = with_condition(jobs_from(CROWNS))
    trust = crown_trust(jobs, candidates=["A", "B", "C", "D"], n_draws=20_000).set_index("model")
    # P(true = w | w crowned) = P(w|w) / sum_g P(w|g), rows of 10 jobs each
    assert trust.loc["A", "p_true"] == pytest.approx(0.8 / (0.8 + 0.3 + 0.4))
    assert trust.loc["B", "p_true"] == pytest.approx(0.5 / (0.2 + 0.5))
    assert trust.loc["C", "p_true"] == pytest.approx(0.6 / (0.2 + 0.6))
    assert np.isnan(trust.loc["D", ["p_true", "ci_low", "ci_high"]].astype(float)).all()
    # the interval: each row from its Dirichlet(1/K + counts) posterior over K = 4
    rng = np.random.default_rng(1)
    rows = {"A": [8, 2, 0, 0], "B": [3, 5, 2, 0], "C": [4, 0, 6, 0]}
    draws = {g: rng.dirichlet(0.25 + np.array(c), size=40_000) for g, c in rows.items()}
    ratio = draws["A"][:, 0] / sum(d[:, 0] for d in draws.values())
    want = np.quantile(ratio, [0.025, 0.975])
    got = trust.loc["A", ["ci_low", "ci_high"]].to_numpy(float)
    assert got == pytest.approx(want, abs=0.015)
    assert got[0] < trust.loc["A", "p_true"] < got[1]
    again = crown_trust(jobs, candidates=["A", "B", "C", "D"], n_draws=20_000)
    pd.testing.assert_frame_equal(again.set_index("model"), trust)  # seeded


# ----------------------------------------------------------------------------- human data
def human_scores(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    top = (rng.random(n) < 0.7).astype(float)
    behind = top.copy()  # exactly 10 points behind on the same responses
    ones = np.flatnonzero(top == 1)
    behind[rng.choice(ones, size=int(0.1 * n), replace=False)] = 0.0
    twin = rng.permutation(top)  # the same accuracy, other responses
    rows = []
    for model, correct in (("top", top), ("behind", behind), ("twin", twin)):
        rows.append(pd.DataFrame({"model": model, "level": "full", "response": np.arange(n),
                                  "correct": correct, "nll": 1.0 - 0.5 * correct}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_paired_bootstrap_of_a_planted_difference():
    hs = human_scores()
    board = human_leaderboard(hs, n_resamples=1000, seed=0).set_index("model")
    assert board.loc["top", "accuracy"] == pytest.approx(board.loc["twin", "accuracy"])
    top_name = board.index[board["rank"] == 1][0]
    assert top_name in ("top", "twin")  # tied in accuracy and NLL: by name
    assert top_name == "top"
    behind = board.loc["behind"]
    assert behind["accuracy_gap"] == pytest.approx(0.1)
    assert behind["gap_ci_low"] < 0.1 < behind["gap_ci_high"] and behind["gap_ci_low"] > 0
    assert bool(behind["separated"])
    twin = board.loc["twin"]
    assert twin["gap_ci_low"] < 0 < twin["gap_ci_high"] and not bool(twin["separated"])
    # paired: the gap's interval is far narrower than the unpaired one
    assert behind["gap_ci_high"] - behind["gap_ci_low"] < 0.5 * (
        twin["gap_ci_high"] - twin["gap_ci_low"]
    )
    same = human_leaderboard(hs, n_resamples=1000, seed=0).set_index("model")
    pd.testing.assert_frame_equal(same, board)
    line = verdict(jobs_from(CROWNS), None, hs, n_resamples=500).lines[-1]
    assert line.startswith("full probes on the human data: top top (accuracy 0.")
    assert "not separated from twin (+0.0 points [" in line


# ----------------------------------------------------------------------------- bias
BIASED = {  # c takes most of the wrong crowns of the others' jobs
    "a": {"a": 4, "c": 6},
    "b": {"b": 4, "c": 5, "d": 1},
    "c": {"c": 9, "a": 1},
    "d": {"d": 4, "c": 6},
}


def biased_tables():
    rows, i = [], 0
    for g, winners in BIASED.items():
        for w, count in winners.items():
            for _ in range(count):
                rows.append({"job_id": f"j{i}", "generator": g, "winner": w, "n_train": 100,
                             "seed": i, "level": "full", "family": "full",
                             "recovered": g == w, "n_candidates": 4,
                             "generator_rank": 1.0 if g == w else 2.0})  # fmt: skip
                i += 1
    jobs = pd.DataFrame(rows)
    scores = []
    for j in jobs.itertuples():
        order = [j.winner] + ([j.generator] if j.generator != j.winner else [])
        order += sorted(set(BIASED) - set(order))
        for r, cand in enumerate(order, start=1):
            scores.append({"job_id": j.job_id, "generator": j.generator, "candidate": cand,
                           "n_train": 100, "seed": j.seed, "level": "full", "family": "full",
                           "rank": float(r), "score": 1 - 0.1 * r,
                           "test_accuracy": 1 - 0.1 * r})  # fmt: skip
    return jobs, pd.DataFrame(scores)


def test_one_bias_test_for_the_wins_table_the_bias_table_and_the_verdict():
    jobs, scores = biased_tables()
    excess = excess_wins(jobs, ["n_train"]).set_index("model")
    # c: 17 of the 18 wrong crowns of a, b and d; fair share 1 / (4 - 1)
    assert excess.loc["c", ["false_wins", "n_other_errors"]].tolist() == [17, 18]
    want = stats.binomtest(17, 18, 1 / 3, alternative="greater").pvalue
    assert excess.loc["c", "p_excess"] == pytest.approx(want)
    assert excess.loc["c", "n_generators_won"] == 3
    data = prepare_inputs(jobs, scores)
    cfg = ReportConfig(n_resamples=100, dpi=40)
    wins = section_ranks(data, cfg).tables["wins_full_n100"].set_index("candidate")
    bias = section_groups(data, None, cfg).tables["systematic_bias"].set_index("model")
    judged = verdict(data.jobs)
    vbias = judged.bias.set_index("model")
    for model in BIASED:
        p = excess.loc[model, "p_excess"]
        assert wins.loc[model, "p_excess"] == pytest.approx(p, nan_ok=True)
        assert bias.loc[model, "p_excess"] == pytest.approx(p, nan_ok=True)
        assert vbias.loc[model, "p_excess"] == pytest.approx(p, nan_ok=True)
    flagged = sorted(wins.index[wins["p_excess"] < 0.05])
    assert flagged == sorted(bias.index[bias["p_excess"] < 0.05]) == ["c"]
    line = next(x for x in judged.lines if "fair share of the wrong crowns" in x)
    assert line.startswith("full probes, N = 100: wins other generators' jobs more than")
    assert "c (17 of 18 wrong crowns" in line and "a (" not in line
    # the old test of the wins table (all wins, own data included) disagreed with it
    old = win_share(jobs, ["n_train"]).set_index("candidate")["p_excess"]
    assert old["c"] < 0.05 and old.drop("c").max() > 0.05


def test_bias_sentence_when_no_model_is_favoured():
    jobs = with_condition(jobs_from(CROWNS))
    line = verdict(jobs).lines[2]
    assert line.startswith(
        "full probes, N = 5,000: no model wins other generators' jobs more than its fair "
        "share of the wrong crowns (smallest p = "
    )


# ----------------------------------------------------------------------------- report
def models_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"model": ["A", "B", "C", "D"], "level": "full", "family": "full",
         "human_accuracy": [0.62, 0.60, 0.55, 0.34], "human_nll": [0.9, 0.95, 1.0, 1.1],
         "uninformative": [None, None, None, "accuracy 0.34: no better than chance"]}
    )  # fmt: skip


def test_verdict_lists_left_out_models_and_says_when_there_are_no_intervals():
    lines = verdict_lines(jobs_from(CROWNS), models_table())
    assert lines[-2] == (
        "full probes on the human data: top A (accuracy 0.620, NLL 0.900); runner-up B 2.0 "
        "points behind; no per-response human scores given, so no intervals on the gaps"
    )
    assert lines[-1] == (
        "full probes: left out as generators (no jobs): D (accuracy 0.34: no better than chance)"
    )
    assert lines[1].startswith("if your study crowns A with full probes at N = 5,000, the")
    # the posterior median and its interval, the confusion matrix's own estimate beside
    assert "is the true one in " in lines[1] and "estimate 53%" in lines[1]


def test_report_puts_the_verdict_first_and_the_paper_only_on_request(tmp_path):
    jobs = pd.concat([jobs_from(CROWNS, 400), jobs_from(CROWNS, 5000, start=100)])
    scores = scores_from(jobs)
    hs = human_scores().assign(model=lambda d: d["model"].map(
        {"top": "A", "behind": "B", "twin": "C"}))  # fmt: skip
    cfg = ReportConfig(n_resamples=100, n_boot=50, dpi=40, bootstrap=300)
    report = build_report(jobs, scores, models_table(), provenance={}, out_dir=tmp_path / "r",
                          config=cfg, human_scores=hs)  # fmt: skip
    page = report.html.read_text()
    assert page.index('<h2 id="verdict">') < page.index("<h2", page.index('id="verdict"') + 1)
    assert page.index("<h2") == page.index('<h2 id="verdict">')
    assert report.verdict and report.verdict[0].startswith("full probes: the generating model")
    assert all(html.escape(line) in page for line in report.verdict)
    for name in ("verdict_recovery", "crown_trust", "leaderboard", "verdict_bias", "left_out",
                 "recovery_by_model_full", "winners_by_n_full"):  # fmt: skip
        assert name in report.tables, name
    board = pd.read_csv(report.tables["leaderboard"])
    assert board["gap_ci_low"].notna().sum() == 2
    assert "the paper" not in page and "paper_recovery" not in page
    paper = build_report(jobs, scores, models_table(), provenance={},
                         out_dir=tmp_path / "p", config=ReportConfig(
                             n_resamples=100, n_boot=50, dpi=40, reference="paper"))  # fmt: skip
    assert "the paper" in paper.html.read_text()
    assert "paper_recovery" in pd.read_csv(paper.tables["tradeoff"]).columns
    with pytest.raises(ValueError, match="reference"):
        ReportConfig(reference="THINGS")


def test_section_by_n_every_n():
    jobs = pd.concat([jobs_from(CROWNS, 400), jobs_from(CROWNS, 5000, start=100)])
    data = prepare_inputs(jobs, scores_from(jobs))
    sec = section_by_n(data, ReportConfig(dpi=40))
    assert set(sec.figures) == {"recovery_by_model_full", "winners_by_n_full"}
    per = sec.tables["recovery_by_model_full"].set_index(["n_train", "generator"])
    assert per.loc[(5000, "A"), "accuracy"] == pytest.approx(0.8)
    long = sec.tables["winners_by_n_full"]
    assert sorted(long["n_train"].unique()) == [400, 5000]
    assert long.loc[long["n_train"] == 400, "count"].sum() == 30
    verdict_sec = section_verdict(data, ReportConfig())
    assert verdict_sec.name == "verdict" and "verdict_recovery" in verdict_sec.tables


def test_the_crown_point_lies_in_its_interval_and_levels_are_named_plainly():
    """The sentence's point is the posterior median, inside its interval (the confusion
    matrix's own share can lie outside it with few jobs); a column the level alone sets
    (zero-shot's λ = 0 beside the other levels' grid) names no condition."""
    from modelrecovery.analysis.metrics import condition_columns

    trust = crown_trust(with_condition(jobs_from(CROWNS)))
    won = trust[trust["wins"] > 0]
    # a certain crown (each of 10 generators recovered in both of its jobs) reads as such
    certain = pd.DataFrame(
        {"generator": [f"g{i}" for i in range(10) for _ in range(2)], "n_train": 4000}
    )
    certain["winner"] = certain["generator"]
    certain["condition"] = "full"
    best = crown_trust(certain).set_index("model")
    assert (best["p_true"] == 1.0).all() and (best["p_median"] > 0.7).all()
    assert ((won["ci_low"] <= won["p_median"]) & (won["p_median"] <= won["ci_high"])).all()
    table = pd.DataFrame(
        {"level": ["zero_shot", "zero_shot", "full", "full"], "lams": ["0", "0", "1,10", "1,10"]}
    )
    assert "lams" not in condition_columns(table)
    table.loc[3, "lams"] = "1,100"  # two λ grids at one level: two conditions
    assert "lams" in condition_columns(table)
