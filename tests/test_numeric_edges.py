"""Numeric edge cases: ties in similarity share credit (all-zero features score exactly
1/3), degenerate features are warned about in one line and fit without crashing, features
whose similarities overflow the dtype are refused in one line, and a fit that must not be
trusted (diverged, stalled, steps ran out) is flagged in the result, the run's tags and on
stderr. Continuous features keep the plain argmax accuracy bit for bit."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import subprocess
import sys
from fractions import Fraction

import mlflow
import numpy as np
import pytest
import torch

import modelrecovery.probe.fit as fit_module
from helpers import planted_triplets, random_triplet_ids, repeated_triplets, write_things2023
from modelrecovery.cli import main
from modelrecovery.data import Triplets
from modelrecovery.data.loaders import save_csv
from modelrecovery.probe import (
    LBFGSSettings,
    accuracy_and_nll,
    check_features,
    fit_probe,
    tie_accuracy,
    tie_credit,
)
from modelrecovery.probe.crossval import CrossValidation, triplet_folds
from modelrecovery.probe.fit import LOG3, _triplet_logits
from modelrecovery.probe.kernels import nll_slot_grad_cpu
from modelrecovery.recovery.job import _Evaluator
from modelrecovery.study.fitting import ProbeSetup
from modelrecovery.study.fitting import fit_probe as fit_and_record
from modelrecovery.study.inputs import load_human_data
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.tracking import setup_experiment

THIRD = 1 / 3


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Every test sees the once-per-process warnings afresh."""
    monkeypatch.setattr(fit_module, "_warned", set())


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    experiment_id = setup_experiment("edges")
    yield experiment_id
    mlflow.end_run()


def fit_and_log(features, train, *, model, lam, dtype="float32", stopping="converged", **kw):
    """The fit stage's probe (full W, scalar shrinkage on the CPU) recorded in MLflow
    experiment ``edges``."""
    setup = ProbeSetup(dtype=dtype, stopping=stopping)
    return fit_and_record(
        features, train, tracker=MLflowTracker("edges"), model=model, setup=setup, lam=lam, **kw
    )


@pytest.fixture
def world(tmp_path):
    """40 concepts, human data from continuous features, files for the CLI."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    train = planted_triplets(x, 400, seed=1)
    repeated = repeated_triplets(x, 30, 5, seed=2)
    path = write_things2023(tmp_path / "human.tsv", train, repeated)
    return x, load_human_data(path, n_concepts=40), tmp_path


def brute_force_accuracy(z: np.ndarray, triplets: Triplets) -> float:
    """Expected accuracy of a uniform choice among the tied most-similar pairs, in exact
    rational arithmetic (integer features: the similarities are exact)."""
    total = Fraction(0)
    for (a, b, c), odd in zip(triplets.ids, triplets.odd, strict=True):
        sims = [int(z[b] @ z[c]), int(z[a] @ z[c]), int(z[a] @ z[b])]
        winners = [i for i, s in enumerate(sims) if s == max(sims)]
        total += Fraction(int(odd in winners), len(winners))
    return float(total / len(triplets))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- ties ---


def test_two_way_tie_gets_half_credit_three_way_a_third():
    # a = (1, 0), b = (0, 1), c = (1, 1): S_bc = S_ac = 1 > S_ab = 0, so a and b tie as the
    # odd one out; d = 0 makes every similarity of (a, b, d) zero (a three-way tie)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    ids = np.array([[0, 1, 2]] * 3 + [[0, 1, 3]] * 3)
    for odd, expected in ((0, 0.5), (1, 0.5), (2, 0.0)):
        one = Triplets(ids[:1], np.array([odd]), 4)
        assert accuracy_and_nll(z, one)["accuracy"] == expected
    for odd in range(3):
        one = Triplets(ids[3:4], np.array([odd]), 4)
        assert accuracy_and_nll(z, one)["accuracy"] == THIRD
    both = Triplets(ids, np.array([0, 1, 2, 0, 1, 2]), 4)
    assert accuracy_and_nll(z, both)["accuracy"] == (0.5 + 0.5 + 0 + 3 * THIRD) / 6
    logits = _triplet_logits(z, both, 1.0)
    credit = tie_credit(logits, torch.as_tensor(both.odd))
    assert credit.tolist() == [0.5, 0.5, 0.0, THIRD, THIRD, THIRD]


def test_tie_rule_matches_brute_force_on_many_ties():
    rng = np.random.default_rng(3)
    z = rng.integers(-1, 2, size=(12, 2))  # few distinct similarities: many ties
    triplets = Triplets(random_triplet_ids(12, 600, rng), rng.integers(0, 3, 600), 12)
    got = accuracy_and_nll(torch.as_tensor(z, dtype=torch.float64), triplets)["accuracy"]
    assert got == brute_force_accuracy(z, triplets)


def test_all_zero_features_score_exactly_one_third_everywhere():
    rng = np.random.default_rng(4)
    for m in (1, 7, 100, 999):
        odd = np.zeros(m, dtype=np.int64) if m == 999 else rng.integers(0, 3, m)
        triplets = Triplets(random_triplet_ids(30, m, rng), odd, 30)
        scores = accuracy_and_nll(torch.zeros(30, 5), triplets)
        assert scores["accuracy"] == THIRD  # was 1.0 when every odd one was first
        assert scores["nll"] == pytest.approx(LOG3, rel=1e-7)
    zeros = np.zeros((30, 5), dtype=np.float32)
    triplets = Triplets(random_triplet_ids(30, 300, rng), np.zeros(300, dtype=np.int64), 30)
    fitted = fit_probe(zeros, triplets, lam=0.1)
    assert fitted.evaluate(zeros, triplets)["accuracy"] == THIRD
    # the recovery job's evaluator and cross-validation scores use the same rule
    evaluator = _Evaluator(torch.as_tensor(zeros), {"val": triplets}, None)
    assert evaluator.scores(fitted)["val_accuracy"] == THIRD
    cv = CrossValidation(zeros, triplets, triplet_folds(300, 3), family="diagonal")
    assert all(cv.fold_scores(f, 0.1)["accuracy"] == THIRD for f in range(3))


def test_continuous_features_keep_plain_argmax_accuracy_exactly(world):
    x, human, _ = world
    for triplets in (human.train, human.test):
        z = torch.as_tensor(x, dtype=torch.float64)
        logits = _triplet_logits(z, triplets, 1.0)
        odd = torch.as_tensor(triplets.odd.astype(np.int64))
        plain = float((logits.argmax(1) == odd).double().mean())
        assert accuracy_and_nll(z, triplets)["accuracy"] == plain
        assert tie_accuracy(logits, odd) == plain
        assert torch.equal(tie_credit(logits, odd), (logits.argmax(1) == odd).double())
    # a fitted full W in the reduced parametrisation (rank 6 < p = 10), job evaluator
    wide = np.hstack([x, x[:, :4] * 0.5]).astype(np.float32)
    fitted = fit_probe(wide, human.train, lam=0.01)
    assert fitted.space is not None
    evaluator = _Evaluator(torch.as_tensor(wide), {"test": human.test}, fitted.space)
    z = fitted.transform(torch.as_tensor(wide, dtype=torch.float64)).to(torch.float64)
    logits = _triplet_logits(z, human.test, 1.0)
    plain = float(
        (logits.argmax(1) == torch.as_tensor(human.test.odd.astype(np.int64))).double().mean()
    )
    assert evaluator.scores(fitted)["test_accuracy"] == plain


# --- degenerate features ---


@pytest.mark.parametrize(
    "family, k, regulariser",
    [
        ("full", None, "scalar_shrinkage"),  # row-space rank 0: the crash
        ("full", None, "l2"),
        ("full", None, "l1"),
        ("diagonal", None, "scalar_shrinkage"),
        ("rectangular", 2, "scalar_shrinkage"),
        ("zero_shot", None, "scalar_shrinkage"),
    ],
)
def test_zero_features_fit_without_crashing(family, k, regulariser, caplog):
    rng = np.random.default_rng(5)
    zeros = np.zeros((20, 5), dtype=np.float32)
    triplets = Triplets(random_triplet_ids(20, 200, rng), rng.integers(0, 3, 200), 20)
    with caplog.at_level(logging.WARNING, logger="modelrecovery.probe"):
        fitted = fit_probe(
            zeros, triplets, family=family, k=k, regulariser=regulariser, lam=0.1, name="z.npy"
        )
        fit_probe(
            zeros, triplets, family=family, k=k, regulariser=regulariser, lam=1.0, name="z.npy"
        )
    assert fitted.train_nll == pytest.approx(LOG3, rel=1e-6)
    assert fitted.evaluate(zeros, triplets) == {"accuracy": THIRD, "nll": pytest.approx(LOG3)}
    assert fitted.convergence_warning() is None and fitted.converged
    assert "degenerate features" in fitted.degenerate and "all-zero" in fitted.degenerate
    warned = _warnings(caplog)
    assert warned == [fitted.degenerate]  # once, one line, naming the features
    assert warned[0].startswith("z.npy: ") and "\n" not in warned[0]


def test_degenerate_checks():
    x = np.random.default_rng(0).normal(size=(10, 3))
    assert check_features(x) is None
    same = np.tile(x[:1], (10, 1))
    assert "the same feature vector" in check_features(same, name="f.npy")
    mixed = np.vstack([same, x])  # degenerate on the rows the triplets use only
    assert check_features(mixed) is None
    assert check_features(mixed, rows=np.arange(10)) is not None
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"^f\.npy: features contain NaN or infinite values"):
        check_features(bad, name="f.npy")
    # zero-shot only: similarities tied within every triplet (orthonormal one-hot rows)
    rng = np.random.default_rng(1)
    triplets = Triplets(random_triplet_ids(8, 50, rng), rng.integers(0, 3, 50), 8)
    fitted = fit_probe(np.eye(8), triplets, family="zero_shot", dtype=torch.float64)
    assert "temperature" in fitted.degenerate and fitted.theta.item() == 0.0
    assert fit_probe(np.eye(8), triplets, lam=0.1).degenerate is None  # full W can learn


def test_fit_stage_on_zero_features_warns_once_and_tags_the_run(world, tracking, caplog):
    _, human, _ = world
    zeros = np.zeros((40, 6), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="modelrecovery.probe"):
        outcome = fit_and_log(
            zeros, human.train, model="zero", lam=0.1, test=human.test, log_model=False
        )
    assert outcome.metrics["test_accuracy"] == THIRD
    assert outcome.metrics["train_accuracy"] == THIRD
    assert outcome.metrics["train_objective"] == pytest.approx(LOG3, rel=1e-6)
    assert outcome.converged
    assert len(outcome.warnings) == 1 and "degenerate features" in outcome.warnings[0]
    assert _warnings(caplog) == outcome.warnings  # one line, once
    run = mlflow.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["degenerate_features"] == "true"
    assert run.data.tags["converged"] == "true"
    assert "degenerate features" in run.data.tags["warning"]
    result = outcome.result()
    assert result["converged"] is True and "degenerate" in result["warning"]


# --- scale: overflow and fits that must not be trusted ---


def test_similarities_overflowing_float32_are_refused_before_any_run(world, tracking):
    x, human, _ = world
    big = (x * 1e30).astype(np.float32)
    with pytest.raises(ValueError) as caught:
        fit_and_log(big, human.train, model="big", lam=0.1, dtype="float32")
    message = str(caught.value)
    assert message.startswith("big: features have max |x| = ")
    assert "overflow float32" in message and "--dtype float64" in message
    assert "\n" not in message
    assert len(mlflow.search_runs(experiment_ids=[tracking])) == 0
    with pytest.raises(ValueError, match="overflow float32"):
        fit_probe(big, human.train, lam=0.1)
    with pytest.raises(ValueError, match="overflow float32"):
        CrossValidation(big, human.train, triplet_folds(len(human.train), 2))
    # float64 takes them; beyond float64 the message says to rescale only
    check_features(big, torch.float64)
    with pytest.raises(ValueError, match=r"overflow float64 .*; rescale the features[^-]*$"):
        check_features(x * 1e160, torch.float64)
    # evaluation never returns NaN silently
    with pytest.raises(ValueError, match="not finite"):
        accuracy_and_nll(torch.as_tensor(x * 1e160), human.test)


def test_badly_scaled_float64_fit_is_flagged_not_silently_finished(world, tracking, caplog):
    x, human, _ = world
    with caplog.at_level(logging.WARNING, logger="modelrecovery.probe"):
        outcome = fit_and_log(
            x * 1e30, human.train, model="big", lam=0.1, dtype="float64", log_model=False
        )
    fitted = outcome.fitted
    assert fitted.train_objective > 1e10  # the optimiser stalls far above log 3
    assert not outcome.converged and outcome.metrics["converged"] == 0.0
    assert "above log 3" in fitted.convergence_warning()
    assert outcome.warnings == [fitted.convergence_warning()]
    warned = _warnings(caplog)
    assert warned == [f"fit/big/full: {fitted.convergence_warning()}"]
    run = mlflow.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["converged"] == "false"
    assert "above log 3" in run.data.tags["warning"]
    assert run.data.metrics["converged"] == 0.0
    result = outcome.result()
    assert result["converged"] is False and "above log 3" in result["warning"]


def test_steps_running_out_is_flagged_but_the_study_rule_is_not(world, tracking, monkeypatch):
    x, human, _ = world
    tiny = LBFGSSettings(max_iter=1, max_repeats=2)
    with monkeypatch.context() as patch:  # a probe set up with a step budget this small
        patch.setattr(ProbeSetup, "lbfgs", lambda self: tiny)
        outcome = fit_and_log(x, human.train, model="m", lam=0.1, log_model=False)
    assert outcome.fitted.stop_reason == "max_steps" and not outcome.fitted.converged
    assert "without meeting its 'converged' stopping rule" in outcome.warnings[0]
    tags = mlflow.get_run(outcome.run_id).data.tags
    assert tags["converged"] == "false" and tags["stop_reason"] == "max_steps"
    assert fit_probe(x, human.train, lam=0.1, settings=tiny).stop_reason == "max_steps"
    # the study's early stop is by design: no warning
    for lam in (1e-4, 1.0):
        study = fit_probe(x, human.train, lam=lam, settings=LBFGSSettings.of("study"))
        assert study.stop_reason == "rule" and study.convergence_warning() is None
    assert ProbeSetup(stopping="study").lbfgs() == LBFGSSettings.of("study")
    study = fit_and_log(x, human.train, model="s", lam=1e-3, stopping="study", log_model=False)
    assert study.converged and study.warnings == []
    assert mlflow.get_run(study.run_id).data.tags["converged"] == "true"


def test_non_finite_similarities_give_nan_not_an_exception():
    slots = np.array([[0, 1, 2]])
    odd = np.array([0], dtype=np.int8)
    for values in ([np.inf, np.inf, np.inf], [np.nan, 1.0, 2.0]):
        nll, grad = nll_slot_grad_cpu(np.array(values, dtype=np.float32), slots, odd, 1.0)
        assert math.isnan(nll) and np.isnan(grad).all()


# --- through the command line ---


def test_cli_fit_on_zero_and_overflowing_features(world, tracking, capsys, caplog):
    x, human, tmp = world
    np.save(tmp / "zero.npy", np.zeros((40, 6), dtype=np.float32))
    np.save(tmp / "big.npy", (x * 1e30).astype(np.float32))
    data = ["--triplets", str(human.path), "--n-concepts", "40", "--experiment", "edges"]
    code = main(["--json", "fit", "--features", str(tmp / "zero.npy"), *data, "--lam", "0.1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["test_accuracy"] == THIRD and result["converged"] is True
    assert result["warning"].startswith(f"{tmp / 'zero.npy'}: degenerate features")
    assert "Traceback" not in out.err
    code = main(["fit", "--features", str(tmp / "big.npy"), *data, "--lam", "0.1"])
    out = capsys.readouterr()
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert str(tmp / "big.npy") in lines[0] and "overflow float32" in lines[0]
    assert "--dtype float64" in lines[0]
    code = main(
        ["--json", "fit", "--features", str(tmp / "big.npy"), *data, "--lam", "0.1"]
        + ["--dtype", "float64"]
    )
    out = capsys.readouterr()
    # a diverged float64 fit: exit 2, one error line naming the run, the run FAILED
    assert code == 2, out.err
    error = [line for line in out.err.strip().splitlines() if "error:" in line]
    assert len(error) == 1 and "above log 3" in error[0] and "ended FAILED" in error[0]
    run_id = error[0].split("(run ")[1].split()[0]
    run = mlflow.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["converged"] == "false"


def test_cli_evaluate_zero_features_one_third_and_one_warning_line(world, tmp_path):
    """In a real process (no logging configured), the warning is one plain stderr line."""
    _, human, _ = world
    np.save(tmp_path / "zero.npy", np.zeros((40, 6), dtype=np.float32))
    triplets = save_csv(human.train, tmp_path / "t.csv")
    done = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", "--json", "evaluate"]
        + ["--features", str(tmp_path / "zero.npy"), "--triplets", str(triplets)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["zero_shot_accuracy"] == THIRD
    assert result["zero_shot_nll"] == pytest.approx(LOG3)
    assert math.isfinite(result["best_temperature"])
    assert math.isfinite(result["zero_shot_nll_at_best_temperature"])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert (
        lines[0].endswith("whatever the probe")
        and "zero.npy: degenerate features: every concept the triplets use" in lines[0]
    )


@pytest.mark.parametrize(
    "stopping,history,flagged",
    [
        ("study", [1.5, 1.2], False),  # the study's early stop while descending: as designed
        ("study", [1.2, 1.5], True),  # rose above the start: diverged
        ("converged", [1.5, 1.2], True),  # an optimum worse than W = 0: stalled
        ("converged", [1.5, 0.9], False),
    ],
)
def test_loss_above_log3_is_flagged_unless_the_study_rule_stopped_a_descent(
    stopping, history, flagged
):
    import torch

    from modelrecovery.probe.families import Family
    from modelrecovery.probe.fit import FittedProbe

    probe = FittedProbe(
        family=Family("full"),
        regulariser="scalar_shrinkage",
        lam=10.0,
        temperature=1.0,
        theta=torch.eye(3, dtype=torch.float64),
        p=3,
        loss_history=history,
        converged=True,
        stopping=stopping,
        train_objective=history[-1],
        stop_reason="rule",
    )
    warning = probe.convergence_warning()
    assert (warning is not None) == flagged, warning
    if flagged:
        assert "above log 3" in warning


@pytest.mark.parametrize("random_responses", [False, True], ids=["unrelated", "random"])
def test_a_collapse_to_w_zero_that_is_the_best_fit_is_not_blamed_on_scale(random_responses):
    """Integer features on a 0-180 scale, unrelated to triplets planted on other features
    (or features x 30 with random responses): the diagonal fit starts far above log 3 and
    falls to W = 0 (log 3), which is the best fit here (the features divided by their
    largest norm end there too): no "rescale the features" warning (issue 26). A collapse
    with a better point near W = 0 (the optimiser's failure) still is flagged, with the
    advice."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    triplets = planted_triplets(x, 300, seed=1)
    big = np.arange(30 * 6, dtype=np.float64).reshape(30, 6)
    if random_responses:  # informative features on a large scale, responses at random
        triplets = Triplets(triplets.ids, rng.integers(0, 3, len(triplets)), 30)
        big = x * 30
    fitted = fit_probe(big, triplets, family="diagonal", lam=1.0)
    assert fitted.collapsed() and fitted.loss_history[0] > 10
    assert fitted.zero_is_best and fitted.convergence_warning() is None
    if not random_responses:
        scaled = big / np.linalg.norm(big, axis=1).max()
        rescaled = fit_probe(scaled, triplets, family="diagonal", lam=1.0)
        assert rescaled.train_objective > LOG3 - 0.01  # no better fit exists
    # the same collapse where a better point near W = 0 was missed: flagged
    missed = dataclasses.replace(fitted, zero_is_best=False)
    warning = missed.convergence_warning()
    assert warning is not None and "collapsed to W = 0" in warning and "rescale" in warning
    assert torch.equal(missed.theta, fitted.theta)
