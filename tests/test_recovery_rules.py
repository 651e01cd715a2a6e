"""The study's selection rules: λ ties, winner ties and ranks, generators per level,
condition keys and job ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_recovery_world
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.grid import Level, jobs_of
from modelrecovery.recovery.job import rank_candidates, select_and_score
from modelrecovery.recovery.store import ResultsStore


def _fits(table: dict[str, list[tuple[float, float, float]]]) -> pd.DataFrame:
    """Fits rows from {candidate: [(lam, val_accuracy, test_accuracy), ...]} (2 folds each,
    identical, so means equal the given values)."""
    rows = []
    for candidate, entries in table.items():
        for lam, val, test in entries:
            for fold in range(2):
                rows.append(
                    {
                        "candidate": candidate,
                        "lam": lam,
                        "fold": fold,
                        "val_accuracy": val,
                        "val_nll": 1.0 - val,
                        "test_accuracy": test,
                        "test_nll": 1.0 - test,
                    }
                )
    return pd.DataFrame(rows)


def test_lambda_ties_go_to_the_smallest_lambda():
    config = planted_grid_config({"a": None, "b": None}, lams=(1e-2, 1.0, 100.0))
    # validation accuracy ties between λ = 1 and λ = 100 (a) and between all three (b);
    # test accuracy tells which λ was chosen
    fits = _fits(
        {
            "a": [(100.0, 0.5, 0.30), (1.0, 0.5, 0.40), (1e-2, 0.4, 0.90)],
            "b": [(1e-2, 0.6, 0.55), (100.0, 0.6, 0.10), (1.0, 0.6, 0.20)],
        }
    )
    scores = select_and_score(fits, config, ["a", "b"]).set_index("candidate")
    assert scores.loc["a", "best_lam"] == 1.0 and scores.loc["a", "score"] == 0.40
    assert scores.loc["b", "best_lam"] == 1e-2 and scores.loc["b", "score"] == 0.55


def test_near_equal_means_count_as_ties():
    config = planted_grid_config({"a": None}, lams=(1.0, 10.0))
    fits = _fits({"a": [(1.0, 0.1 + 0.2, 0.7), (10.0, 0.3, 0.2)]})  # 0.30000000000000004
    assert select_and_score(fits, config, ["a"])["best_lam"].iloc[0] == 1.0


def test_random_tie_rule_is_uniform_seeded_and_consistent_with_ranks():
    scores = pd.DataFrame({"candidate": list("abcd"), "score": [0.6, 0.7, 0.7, 0.7]})
    wins = {}
    for seed in range(600):
        ranked = rank_candidates(scores, "random", seed)
        winner = ranked.loc[ranked["winner"], "candidate"].iloc[0]
        assert ranked.loc[ranked["winner"], "rank"].iloc[0] == 1.0
        assert sorted(ranked["rank"]) == [1.0, 2.0, 3.0, 4.0]
        assert ranked.loc[ranked["candidate"] == "a", "rank"].iloc[0] == 4.0  # not tied
        assert (ranked["n_tied_top"] == 3).all()
        wins[winner] = wins.get(winner, 0) + 1
    assert set(wins) == {"b", "c", "d"}
    assert all(150 < n < 250 for n in wins.values()), wins  # about 200 each
    again = rank_candidates(scores, "random", 17)
    pd.testing.assert_frame_equal(again, rank_candidates(scores, "random", 17))


def test_first_tie_rule_reproduces_the_study():
    scores = pd.DataFrame({"candidate": list("abcd"), "score": [0.6, 0.7, 0.7, 0.5]})
    ranked = rank_candidates(scores, "first").set_index("candidate")
    assert ranked["winner"].idxmax() == "b"
    assert ranked["rank"].tolist() == [3.0, 1.5, 1.5, 4.0]
    assert (ranked["n_tied_top"] == 2).all()


def test_each_level_simulates_from_its_own_generator(tmp_path):
    features = planted_recovery_world(n_models=3, seed=1)
    levels = (Level("zero_shot"), Level("diagonal"))
    config = planted_grid_config(
        features, levels=levels, generators=("model0",), sizes=(3000,), seeds=(0,)
    )
    # at the diagonal level, "model0"'s generator is model1's representation: its data
    # then crown model1, while the zero-shot level's data (from model0) crown model0
    generators = {
        ("zero_shot", "model0"): (features["model0"], 0.05),
        ("diagonal", "model0"): (features["model1"], 0.05),
    }
    store = ResultsStore(tmp_path / "store")
    run_grid(config, GridInputs(generators, features, None), store, progress=False)
    jobs = store.load()["jobs"].set_index("level")
    assert jobs.loc["zero_shot", "winner"] == "model0"
    assert jobs.loc["diagonal", "winner"] == "model1"
    assert not jobs.loc["diagonal", "recovered"]
    missing = {("zero_shot", "model0"): generators[("zero_shot", "model0")]}
    with pytest.raises(ValueError, match=r"model0 \(diagonal\)"):
        run_grid(config, GridInputs(missing, features, None), store, progress=False)


def test_job_tables_carry_the_condition_and_consistent_ranks(tmp_path):
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60,), seeds=(0, 1))
    store = ResultsStore(tmp_path / "store")
    run_grid(
        config,
        GridInputs({("full", m): (x, 0.05) for m, x in features.items()}, features, None),
        store,
        progress=False,
    )
    tables = store.load()
    jobs, scores = tables["jobs"], tables["scores"]
    assert (jobs["recovered"] == (jobs["generator_rank"] == 1.0)).all()
    assert (jobs["n_tied_top"] >= 1).all()
    assert set(jobs["condition_key"]) == {config.condition_key(Level("full"))}
    assert set(jobs["candidate_set"]) == {"model0,model1,model2"}
    assert set(jobs["lams"]) == {"0.01,1,100"} and set(jobs["stopping"]) == {"converged"}
    merged = scores[scores["candidate"] == scores["generator"]].merge(jobs, on="job_id")
    assert (merged["rank"] == merged["generator_rank"]).all()
    assert {"train_nll", "train_objective"} <= set(tables["fits"].columns)
    fits = tables["fits"]
    assert (fits["train_objective"] >= fits["train_nll"] - 1e-6).all()


def test_job_ids_follow_their_own_inputs_only():
    features = {"a": None, "b": None}
    base = planted_grid_config(features, extra={"generators": {"full": {"a": "g1", "b": "g2"}}})
    other_b = planted_grid_config(
        features, extra={"generators": {"full": {"a": "g1", "b": "changed"}}}
    )
    ids = {(j.generator, j.n_train, j.seed): j.job_id for j in jobs_of(base)}
    changed = {(j.generator, j.n_train, j.seed): j.job_id for j in jobs_of(other_b)}
    for key, job_id in ids.items():
        assert (changed[key] == job_id) == (key[0] == "a")
    # settings that change results change every id and the condition key
    study = planted_grid_config(features, stopping="study")
    assert not {j.job_id for j in jobs_of(study)} & {j.job_id for j in jobs_of(base)}
    assert study.condition_key(Level("full")) != base.condition_key(Level("full"))
    assert base.condition_key(Level("full")) == planted_grid_config(
        features, seeds=(5,)
    ).condition_key(Level("full"))
    with pytest.raises(ValueError, match="tie_rule"):
        planted_grid_config(features, tie_rule="coin")
    with pytest.raises(ValueError, match="stopping"):
        planted_grid_config(features, stopping="early")
    assert np.all([j.level.label == "full" for j in jobs_of(base)])
