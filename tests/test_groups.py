"""analysis/groups.py on hand-built results tables: recovery within groups, the confusion
between groups, systematic bias, the shift towards the human reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelrecovery.analysis.groups import (
    group_confusion,
    group_labels,
    human_shift,
    systematic_bias,
    within_group_recovery,
)

MODELS = ["a", "b", "c", "d"]
GROUPS = {"a": "cnn", "b": "cnn", "c": "vit", "d": "vit"}


def _tables(rankings: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One job per generator; ``rankings[g]`` the candidates best first."""
    jobs, scores = [], []
    for g, order in rankings.items():
        job_id = f"job-{g}"
        for rank, c in enumerate(order, start=1):
            scores.append(
                {
                    "job_id": job_id,
                    "generator": g,
                    "n_train": 100,
                    "seed": 0,
                    "level": "full",
                    "candidate": c,
                    "rank": float(rank),
                    "score": 1.0 - rank / 10,
                }
            )
        jobs.append(
            {
                "job_id": job_id,
                "generator": g,
                "n_train": 100,
                "seed": 0,
                "level": "full",
                "winner": order[0],
                "recovered": order[0] == g,
                "n_candidates": len(order),
                "generator_rank": float(order.index(g) + 1),
            }
        )
    return pd.DataFrame(jobs), pd.DataFrame(scores)


def test_within_group_recovery_and_confusion():
    # c wins everything; within groups: a beats b on b's data? order decides
    jobs, scores = _tables(
        {
            "a": ["c", "a", "b", "d"],  # within cnn: a first -> recovered
            "b": ["c", "a", "b", "d"],  # within cnn: a before b -> not
            "c": ["c", "a", "b", "d"],  # recovered
            "d": ["c", "d", "a", "b"],  # within vit: c before d -> not
        }
    )
    within = within_group_recovery(scores, GROUPS, ["n_train"])
    by_group = within.set_index("group")
    assert by_group.loc["cnn", "recovered"] == 1 and by_group.loc["cnn", "n_jobs"] == 2
    assert by_group.loc["vit", "recovered"] == 1
    assert by_group.loc["all groups", "recovery_accuracy"] == 0.5
    assert by_group.loc["cnn", "chance"] == 0.5
    assert 0 <= by_group.loc["cnn", "ci_low"] <= 0.5 <= by_group.loc["cnn", "ci_high"]
    counts = group_confusion(jobs, GROUPS)
    assert counts.loc["cnn", "vit"] == 2 and counts.loc["vit", "vit"] == 2
    assert counts.loc["cnn", "cnn"] == 0
    shares = group_confusion(jobs, GROUPS, normalize=True)
    assert shares.loc["cnn", "vit"] == 1.0


def test_equal_ranks_go_to_the_first_candidate():
    _, scores = _tables({"b": ["a", "b", "c", "d"]})
    scores.loc[scores["candidate"].isin(["a", "b"]), "rank"] = 1.5  # tie rule first
    within = within_group_recovery(scores, GROUPS, ["n_train"])
    assert within.set_index("group").loc["cnn", "recovered"] == 0  # a listed first


def test_systematic_bias_finds_the_model_that_wins_too_often():
    jobs, scores = _tables(
        {g: ["c", *[m for m in MODELS if m != "c"]] for g in MODELS}
    )  # c wins every job
    bias = systematic_bias(jobs, scores, ["n_train"])
    top = bias.iloc[0]
    assert top["model"] == "c" and top["others_mean_rank"] == 1.0
    assert top["false_wins"] == 3 and top["false_win_share"] == 1.0
    assert top["p_excess"] < 0.05
    row_a = bias.set_index("model").loc["a"]
    assert row_a["own_mean_rank"] == 2.0 and row_a["false_wins"] == 0


def test_human_shift():
    geometry = pd.DataFrame(
        {
            "model": ["a", "b", "c", "d"],
            "human_distance_before": [0.9, 0.7, 0.5, 0.3],
            "human_distance_after": [0.4, 0.4, 0.35, 0.25],
        }
    )
    table, summary = human_shift(geometry)
    assert np.allclose(table["shift_towards_human"], [0.5, 0.3, 0.15, 0.05])
    assert summary["n_moved_towards"] == 4
    assert summary["spearman_rho"] == pytest.approx(1.0)


def test_group_labels():
    meta = {"a": {"objective": "supervised"}, "b": {"objective": None}, "c": {}}
    assert group_labels(meta, "objective") == {"a": "supervised"}


def test_recover_prints_the_group_summary(tmp_path, capsys):
    from modelrecovery.stages.recover import print_group_summary

    jobs, scores = _tables({g: ["c", *[m for m in MODELS if m != "c"]] for g in MODELS})
    jobs["condition"] = scores["condition"] = "full"
    bias = systematic_bias(jobs, scores, ["condition", "n_train"])
    within = within_group_recovery(scores, GROUPS, ["condition", "n_train"])
    bias.to_csv(tmp_path / "bias.csv", index=False)
    within.to_csv(tmp_path / "within.csv", index=False)
    print_group_summary(
        {"systematic_bias": tmp_path / "bias.csv", "within_architecture": tmp_path / "within.csv"}
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("systematic bias [full, N=100]: 2 generator(s) with mean rank > 2")
    assert out[0].endswith("more than the fair share: c")
    assert out[1].startswith("recovery within architecture groups [full, N=100]: cnn 0.50")
