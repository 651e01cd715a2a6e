"""The L-BFGS fit: planted truths, the exact reduction, shrinkage limits, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import planted_triplets
from modelrecovery.data import Triplets
from modelrecovery.probe import accuracy_and_nll, fit_probe


def test_planted_full_w_is_fitted_back():
    rng = np.random.default_rng(0)
    n, p = 80, 8
    x = rng.normal(size=(n, p)) / np.sqrt(p)
    w_true = 2.0 * (np.eye(p) + 0.8 * rng.normal(size=(p, p)))
    z_true = x @ w_true
    train = planted_triplets(z_true, 20_000, seed=1)
    test = planted_triplets(z_true, 5_000, seed=2)
    fit = fit_probe(x, train, family="full", lam=1e-4, dtype=torch.float64)
    assert fit.converged
    assert fit.loss_history[-1] < fit.loss_history[0]
    own = accuracy_and_nll(torch.tensor(z_true), test)
    fitted = fit.evaluate(x, test)
    zero_shot = fit_probe(x, train, family="zero_shot", dtype=torch.float64).evaluate(x, test)
    assert fitted["accuracy"] > own["accuracy"] - 0.02
    assert fitted["nll"] < own["nll"] + 0.02
    assert zero_shot["accuracy"] < own["accuracy"] - 0.05  # the planted W matters


@pytest.mark.parametrize("regulariser", ["scalar_shrinkage", "l2"])
def test_reduced_parametrisation_matches_plain_problem(regulariser):
    rng = np.random.default_rng(1)
    n, p, n_train = 60, 45, 30  # the 30 training concepts span at most 30 < p dimensions
    x = rng.normal(size=(n, p)) / np.sqrt(p)
    z_true = x @ (np.eye(p) + 0.5 * rng.normal(size=(p, p)))
    train = planted_triplets(z_true[:n_train], 3_000, seed=3)
    train = Triplets(train.ids, train.odd, n)
    test_ids = np.array([[i, i + 1, i + 2] for i in range(n_train, n - 2)])
    test = Triplets(test_ids, np.zeros(len(test_ids)), n)
    kwargs = dict(family="full", regulariser=regulariser, lam=0.05, dtype=torch.float64)
    reduced = fit_probe(x, train, reduce=True, **kwargs)
    plain = fit_probe(x, train, reduce=False, **kwargs)
    assert reduced.space is not None and reduced.space.rank == n_train
    assert plain.space is None
    assert reduced.loss_history[-1] == pytest.approx(plain.loss_history[-1], rel=1e-7)
    # predictions on concepts outside the training row space (the c (I - V V^T) term)
    np.testing.assert_allclose(
        reduced.probabilities(x, test), plain.probabilities(x, test), atol=1e-4
    )
    np.testing.assert_allclose(reduced.matrix().numpy(), plain.matrix().numpy(), atol=1e-3)


def test_strong_shrinkage_gives_zero_shot_but_l2_does_not():
    rng = np.random.default_rng(2)
    n, p = 50, 10
    x = rng.normal(size=(n, p))
    train = planted_triplets(x @ (np.eye(p) + rng.normal(size=(p, p))), 4_000, seed=4)
    test = planted_triplets(x, 2_000, seed=5)
    zero_shot = fit_probe(x, train, family="zero_shot", dtype=torch.float64)
    shrunk = fit_probe(x, train, family="full", lam=1e4, dtype=torch.float64)
    l2 = fit_probe(x, train, family="full", regulariser="l2", lam=1e4, dtype=torch.float64)
    w = shrunk.matrix().numpy()
    gamma = np.trace(w) / p
    assert np.abs(w - gamma * np.eye(p)).max() < 1e-3 * abs(gamma)
    zs_pred = zero_shot.probabilities(x, test).argmax(1)
    assert (shrunk.probabilities(x, test).argmax(1) == zs_pred).mean() == 1.0
    # l2 shrinks W toward 0: predictions collapse toward chance instead of zero-shot
    l2_probs = l2.probabilities(x, test)
    assert np.abs(l2_probs - 1 / 3).max() < 0.01
    assert l2.evaluate(x, test)["nll"] > zero_shot.evaluate(x, test)["nll"] + 0.05


def test_families_shapes_and_default_dtype():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    train = planted_triplets(x.astype(np.float64), 500, seed=6)
    shapes = {"zero_shot": (6, 6), "diagonal": (6, 6), "full": (6, 6)}
    for family, shape in shapes.items():
        fit = fit_probe(x, train, family=family, lam=0.01)
        assert fit.theta.dtype == torch.float32
        assert tuple(fit.matrix().shape) == shape
    rect = fit_probe(x, train, family="rectangular", k=3, lam=0.01)
    assert tuple(rect.matrix().shape) == (6, 3)
    assert tuple(rect.transform(x).shape) == (30, 3)


def test_warm_start_converges_quickly():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 8)) / 3
    train = planted_triplets(x @ (np.eye(8) + rng.normal(size=(8, 8))), 3_000, seed=7)
    cold = fit_probe(x, train, family="full", lam=0.1, dtype=torch.float64)
    warm = fit_probe(x, train, family="full", lam=0.1, dtype=torch.float64, init=cold.theta)
    assert warm.iterations < cold.iterations / 3
    assert warm.loss_history[-1] == pytest.approx(cold.loss_history[-1], rel=1e-6)


def test_bad_input_is_rejected_before_fitting():
    x = np.zeros((10, 4))
    train = Triplets(np.array([[0, 1, 2]]), np.array([0]), 10)
    with pytest.raises(ValueError, match="lam must be"):
        fit_probe(x, train, lam=-1.0)
    with pytest.raises(ValueError, match="family must be one of"):
        fit_probe(x, train, family="triangular")
    with pytest.raises(ValueError, match="needs k"):
        fit_probe(x, train, family="rectangular")
    with pytest.raises(ValueError, match="regulariser must be one of"):
        fit_probe(x, train, regulariser="ridge")
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_probe(bad, train)
    with pytest.raises(ValueError, match="features have 5 rows"):
        fit_probe(np.zeros((5, 4)), Triplets(np.array([[0, 1, 7]]), np.array([0]), 10))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            fit_probe(x, train, device="cuda")
