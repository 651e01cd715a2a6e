"""The study's answer, exactly: the p x p fit under the study's rule against an independent
transcription of the study's loop, the reshuffle's order, the scripts' sampler and seed
reuse, their float32 crowning and argmax evaluation, and the ``rules: study_scripts``
preset."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import planted_grid_config, planted_triplets
from modelrecovery.config_schema import STUDY_SCRIPTS, validate_config
from modelrecovery.data.sampling import sample_triplets
from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import LBFGSSettings, fit_probe
from modelrecovery.probe.objective import PreparedTriplets, step_order
from modelrecovery.probe.reduced import reduction_applies
from modelrecovery.recovery.grid import GridConfig, Job, Level
from modelrecovery.recovery.job import _Evaluator, select_and_score, simulate
from study_loop import study_loop

ROOT = Path(__file__).resolve().parents[1]


def _p_above_n(seed: int = 0, n: int = 40, p: int = 60, m: int = 600):
    """Features of rank n < p (the study's case: p above the training concepts)."""
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=(n, 5))
    x = np.concatenate([embedding, 0.3 * rng.normal(size=(n, p - 5))], 1) / 3
    return x, planted_triplets(embedding, m, seed + 1)


def test_reduction_applies_only_where_it_is_exact():
    assert reduction_applies("full", "scalar_shrinkage", "converged")
    assert not reduction_applies("full", "scalar_shrinkage", "study")
    assert reduction_applies("full", "l2", "study", "always")
    assert not reduction_applies("full", "scalar_shrinkage", "converged", "never")
    assert not reduction_applies("full", "l1", "converged", "always")
    assert not reduction_applies("diagonal", "scalar_shrinkage", "converged", "always")
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduction_applies("full", "l2", "study", "sometimes")


@pytest.mark.parametrize("reshuffle", [False, True])
@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_study_rule_fits_the_p_by_p_problem_as_the_study_loop(lam, reshuffle):
    """p > n, the study's rule: the default fit is the unreduced fit and follows the loop
    (float64, where rounding cannot move the early stop); the reduced fit stops elsewhere."""
    x, train = _p_above_n()
    w_loop, losses = study_loop(
        x, train.ids, train.odd, lam, dtype=torch.float64, reshuffle=reshuffle
    )
    for engine in ("torch", "lean"):
        settings = LBFGSSettings.of("study", engine=engine, reshuffle=reshuffle)
        default = fit_probe(x, train, lam=lam, settings=settings, dtype=torch.float64)
        never = fit_probe(x, train, lam=lam, settings=settings, dtype=torch.float64, reduce="never")
        assert default.space is None  # not reduced
        assert torch.equal(default.matrix(), never.matrix())
        assert float((default.matrix() - w_loop).abs().max()) < 1e-5
        assert len(default.loss_history) == len(losses)
        np.testing.assert_allclose(default.loss_history, losses, rtol=1e-9)
    reduced = fit_probe(
        x,
        train,
        lam=lam,
        settings=LBFGSSettings.of("study", reshuffle=reshuffle),
        dtype=torch.float64,
        reduce="always",
    )
    assert reduced.space is not None and reduced.space.rank == 40
    # another path: measured 0.0048 (λ = 1) and 0.0195 (λ = 1e-3) from the loop's W
    assert float((reduced.matrix() - w_loop).abs().max()) > 1e-3


def test_converged_rule_keeps_the_exact_reduction():
    x, train = _p_above_n()
    fitted = fit_probe(x, train, lam=1e-2, settings=LBFGSSettings(), dtype=torch.float64)
    full = fit_probe(
        x, train, lam=1e-2, settings=LBFGSSettings(), dtype=torch.float64, reduce="never"
    )
    assert fitted.space is not None and fitted.space.rank == 40
    assert abs(fitted.train_objective - full.train_objective) < 1e-7


def test_reshuffle_sums_in_the_order_of_the_seeded_permutation():
    """Step e's order is torch.manual_seed(e); randperm(m) of the input rows, mapped onto
    the compiled (canonical) rows; the global RNG is left alone."""
    rng = np.random.default_rng(3)
    ids = np.stack([rng.choice(30, 3, replace=False) for _ in range(200)]).astype(np.int32)
    odd = rng.integers(0, 3, 200)
    prep = PreparedTriplets.from_triplets(Triplets(ids, odd, 30))
    concepts = prep.concepts.numpy()
    state = torch.get_rng_state()
    for step in range(4):
        order = step_order(prep, step).numpy()
        torch.manual_seed(step)
        perm = torch.randperm(200).numpy()
        # the compiled rows in that order are the input rows in the permutation's order
        local = prep.pair_rows.numpy(), prep.pair_cols.numpy()
        slots = prep.slot_pair.numpy()[order]
        rows_ab = concepts[local[0][slots[:, 2]]], concepts[local[1][slots[:, 2]]]
        rows_c = concepts[local[1][slots[:, 0]]]
        assert np.array_equal(
            np.stack([rows_ab[0], rows_ab[1], rows_c], 1), np.sort(ids[perm], axis=1)
        )
        assert np.array_equal(prep.source_rows.numpy()[order], perm)
    torch.set_rng_state(state)
    assert torch.equal(step_order(prep, 0), step_order(prep, 0))


def test_reshuffled_float32_losses_follow_the_loop():
    """In float32 the reshuffled loss is the loop's float32 mean over the same order: the
    first step's losses agree to float rounding of the similarities."""
    x, train = _p_above_n(m=900)
    _, losses = study_loop(x, train.ids, train.odd, 1.0, dtype=torch.float32, max_steps=1)
    fitted = fit_probe(
        x,
        train,
        lam=1.0,
        settings=LBFGSSettings.of("study", engine="torch", reshuffle=True),
        dtype=torch.float32,
    )
    assert abs(fitted.loss_history[0] - losses[0]) <= 2e-7 * abs(losses[0])


def test_scripts_sampler_is_biased_and_reuses_one_seed():
    """The scripts' sampler: the first N of 5N sorted draws all contain one of the 10 %
    lowest-id concepts (uniform: 1 - 0.9^3 = 27 %); one seed for every set and fold."""
    concepts = np.arange(100, 200)
    low = set(range(100, 110))
    shares = {}
    for paper in (False, True):
        ids = sample_triplets(
            concepts, 500, seed=1, n_concepts=300, paper_compatible_sampling=paper
        )
        shares[paper] = np.mean([bool(low & set(row)) for row in ids.tolist()])
    assert shares[True] > 0.95
    assert abs(shares[False] - 0.271) < 0.06

    def rank_patterns(paper: bool) -> list[np.ndarray]:
        config = GridConfig(
            generators=("a",),
            candidates=("a",),
            sizes=(60,),
            seeds=(4,),
            paper_compatible_sampling=paper,
        )
        job = Job("a", 60, 4, Level("full"), config.key())
        z = np.random.default_rng(0).normal(size=(90, 3))
        folds = simulate(job, config, z, 1.0, None)
        out = []
        for fd in folds:
            pool = np.unique(fd.test.ids)
            out.append(np.sort(np.searchsorted(pool, fd.test.ids), axis=1))
        return out

    # the three test pools have 30 concepts each: one seed draws the same pattern in each
    same = rank_patterns(True)
    assert all(np.array_equal(same[0], other) for other in same[1:])
    different = rank_patterns(False)
    assert not np.array_equal(different[0], different[1])


def _fold_fits(counts: dict[str, list[int]], m: int) -> pd.DataFrame:
    """One λ per candidate; fold f's validation and test accuracy = counts[f] / m."""
    rows = []
    for candidate, per_fold in counts.items():
        for fold, count in enumerate(per_fold):
            accuracy = count / m
            rows.append(
                {
                    "candidate": candidate,
                    "lam": 1.0,
                    "fold": fold,
                    "val_accuracy": accuracy,
                    "val_nll": 1.0,
                    "test_accuracy": accuracy,
                    "test_nll": 1.0,
                }
            )
    return pd.DataFrame(rows)


def _float32_mean(values: list[float]) -> np.float32:
    total = np.float32(0)
    for v in values:
        total = np.float32(total + np.float32(v))
    return np.float32(total / np.float32(len(values)))


def test_study_crowning_lets_float32_rounding_break_equal_counts():
    """Equal total counts split differently over the folds: the study's float32 means
    differ by rounding and max() takes the larger; equal means go to the first."""
    for m in range(7, 200):  # the first test-set size where rounding separates a split
        total = (3 * m) // 2
        splits = [c for c in itertools.product(range(m + 1), repeat=3) if sum(c) == total][:400]
        means = {c: _float32_mean([k / m for k in c]) for c in splits}
        high = max(splits, key=lambda c: means[c])
        low = min(splits, key=lambda c: means[c])
        if means[high] > means[low]:
            break
    assert means[high] > means[low]  # rounding separates equal counts
    config = planted_grid_config({"a": None, "b": None}, lams=(1.0,))
    study = GridConfig(**{**config.__dict__, "tie_rule": "study"})
    fits = _fold_fits({"a": list(low), "b": list(high)}, m)
    scores = select_and_score(fits, study, ["a", "b"]).set_index("candidate")
    assert scores["winner"].idxmax() == "b" and scores.loc["b", "rank"] == 1.0
    assert scores.loc["b", "score"] == float(means[high])
    first = GridConfig(**{**config.__dict__, "tie_rule": "first"})
    assert select_and_score(fits, first, ["a", "b"]).set_index("candidate")["winner"]["a"]
    # equal float32 means: the first candidate, as max()
    fits = _fold_fits({"a": list(high), "b": list(high)}, m)
    assert select_and_score(fits, study, ["a", "b"]).set_index("candidate")["winner"]["a"]


def test_study_lambda_choice_is_the_first_maximum_of_float64_means_of_float32_values():
    config = planted_grid_config({"a": None}, lams=(1e-2, 1.0))
    study = GridConfig(**{**config.__dict__, "tie_rule": "study"})
    m = 7
    rows = []
    # λ = 1e-2: counts (3, 4, 5), λ = 1: (4, 4, 4): equal totals, unequal rounded means
    for lam, counts in ((1e-2, (3, 4, 5)), (1.0, (4, 4, 4))):
        for fold, count in enumerate(counts):
            rows.append(
                {
                    "candidate": "a",
                    "lam": lam,
                    "fold": fold,
                    "val_accuracy": count / m,
                    "val_nll": 1.0,
                    "test_accuracy": 0.5 + lam / 10,
                    "test_nll": 1.0,
                }
            )
    means = {
        lam: float(np.mean([float(np.float32(c / m)) for c in counts]))
        for lam, counts in ((1e-2, (3, 4, 5)), (1.0, (4, 4, 4)))
    }
    expected = 1e-2 if means[1e-2] >= means[1.0] else 1.0
    chosen = select_and_score(pd.DataFrame(rows), study, ["a"])["best_lam"].iloc[0]
    assert chosen == expected


def test_study_evaluation_takes_the_first_position_on_prediction_ties():
    """Three equal logits: exact evaluation gives a third of the credit, the study's argmax
    the first position."""
    from modelrecovery.probe.families import Family
    from modelrecovery.probe.fit import FittedProbe

    x = torch.ones(3, 2)  # every similarity equal: all three positions tie
    fitted = FittedProbe(Family("full"), "scalar_shrinkage", 0.0, 1.0, torch.eye(2), 2)
    for response, study_credit in ((1, 0.0), (0, 1.0)):
        triplets = Triplets(np.array([[0, 1, 2]]), np.array([response]), 3)
        exact = _Evaluator(x, {"test": triplets}, None).scores(fitted)
        study = _Evaluator(x, {"test": triplets}, None, "study").scores(fitted)
        assert exact["test_accuracy"] == pytest.approx(1 / 3)
        assert study["test_accuracy"] == study_credit


def _things_paper_scripts() -> dict:
    from modelrecovery.config import load_config

    return load_config(str(ROOT / "conf" / "things_paper_scripts.yaml"))


def test_study_scripts_preset_sets_every_piece_and_refuses_conflicts():
    config = _things_paper_scripts()
    assert config["rules"] == "study_scripts"
    for section, values in STUDY_SCRIPTS.items():
        for key, value in values.items():
            assert config[section][key] == value, (section, key)
    base = {k: v for k, v in config.items() if k != "rules"}
    conflicting = {**base, "rules": "study_scripts", "grid": {**base["grid"], "tie_rule": "random"}}
    with pytest.raises(ValueError) as err:
        validate_config(conflicting, "my.yaml")
    message = str(err.value)
    assert "\n" not in message and "grid.tie_rule = 'random'" in message
    assert message.startswith("config my.yaml:")


def test_things_paper_keeps_the_corrected_behaviour():
    from modelrecovery.config import load_config

    config = load_config(str(ROOT / "conf" / "things_paper.yaml"))
    assert config.get("rules", "platform") == "platform"
    grid = config["grid"]
    assert grid["paper_compatible_sampling"] is False
    assert grid.get("tie_rule") == "random"
    assert grid.get("evaluation", "exact") == "exact"
