"""Stopping rules: the study's rule reproduces torch's L-BFGS loop exactly; the converged
rule reaches the optimum; the stable penalty holds in float32; the NLL and objective of the
returned parameters are reported separately."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import fit_with_trainer, planted_triplets
from modelrecovery.probe import Family, LBFGSSettings, fit_probe, penalty
from modelrecovery.probe.lightning_module import ProbeModule
from study_loop import study_loop


def _problem(seed=0, n=40, p=6, m=3_000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) / 2
    z = x @ (np.eye(p) + 0.7 * rng.normal(size=(p, p)))
    return x, planted_triplets(z, m, seed=seed + 1)


@pytest.mark.parametrize("lam", [1.0, 1e-2])
def test_study_rule_matches_torch_lbfgs_loop(lam):
    x, train = _problem()
    # the study's loop without its reshuffle (tests/study_loop.py)
    w_ref, losses, n_iter = study_loop(
        x, train.ids, train.odd, lam, dtype=torch.float64, reshuffle=False
    )
    fit = fit_probe(
        x,
        train,
        family="full",
        lam=lam,
        dtype=torch.float64,
        reduce=False,
        settings=LBFGSSettings.of("study"),
    )
    assert fit.stopping == "study"
    assert len(fit.loss_history) == len(losses) < 100  # same stopping step, before the cap
    np.testing.assert_allclose(fit.loss_history, losses, rtol=1e-9)
    assert fit.iterations == n_iter  # same L-BFGS iterations
    np.testing.assert_allclose(fit.theta.numpy(), w_ref.numpy(), atol=1e-7)  # same iterate
    assert fit.converged


def test_study_rule_stops_above_the_optimum_at_weak_penalty():
    x, train = _problem(seed=3, p=8)
    study = fit_probe(x, train, lam=1e-3, dtype=torch.float64, settings=LBFGSSettings.of("study"))
    converged = fit_probe(x, train, lam=1e-3, dtype=torch.float64)
    assert converged.converged and converged.stopping == "converged"
    assert converged.train_objective < study.train_objective - 1e-6
    assert converged.iterations > study.iterations


def test_train_nll_and_objective_are_those_of_the_returned_parameters():
    x, train = _problem(seed=5)
    lam = 0.05
    fit = fit_probe(x, train, lam=lam, dtype=torch.float64, reduce=False)
    w = fit.matrix()
    z = torch.as_tensor(x) @ w
    own = fit.evaluate(x, train)["nll"]
    assert fit.train_nll == pytest.approx(own, rel=1e-10)
    value, _ = penalty(Family("full"), "scalar_shrinkage", w)
    assert fit.train_objective == pytest.approx(own + lam * float(value), rel=1e-10)
    assert fit.loss_history[-1] == pytest.approx(fit.train_objective, rel=1e-10)
    assert z.shape == (40, 6)


@pytest.mark.parametrize("stopping", ["converged", "study"])
def test_lightning_module_agrees_with_fit_probe(stopping):
    x, train = _problem(seed=7)
    settings = LBFGSSettings.of(stopping)
    options = dict(family="full", lam=0.01, dtype=torch.float64, reduce=False)
    module = ProbeModule(x, train, settings=settings, **options)
    fitted = fit_with_trainer(module, settings.max_repeats)
    reference = fit_probe(x, train, settings=settings, **options)
    assert fitted.loss_history == pytest.approx(reference.loss_history, rel=1e-10)
    assert fitted.iterations == reference.iterations
    np.testing.assert_allclose(fitted.theta.numpy(), reference.theta.numpy(), atol=1e-10)
    assert fitted.train_objective == pytest.approx(reference.train_objective, rel=1e-10)


def test_at_least_three_steps_before_stopping():
    # started at the optimum of a zero-shot problem: every step changes nothing
    x, train = _problem(seed=9)
    first = fit_probe(x, train, family="zero_shot", dtype=torch.float64)
    again = fit_probe(x, train, family="zero_shot", dtype=torch.float64, init=first.theta)
    assert len(again.loss_history) - 1 >= 3  # start + one loss per step
    study = fit_probe(
        x,
        train,
        family="zero_shot",
        dtype=torch.float64,
        init=first.theta,
        settings=LBFGSSettings.of("study"),
    )
    assert len(study.loss_history) == 3


@pytest.mark.parametrize("family", ["full", "diagonal", "rectangular"])
@pytest.mark.parametrize("deviation", [1e-4, 1e-3])
def test_penalty_is_stable_in_float32_near_a_scaled_identity(family, deviation):
    p, k = 2048, 30
    rng = np.random.default_rng(0)
    fam = Family(family, k if family == "rectangular" else None)
    if family == "full":
        theta = 1.7 * np.eye(p) + deviation * rng.normal(size=(p, p)) / np.sqrt(p)
    elif family == "diagonal":
        theta = 1.7 + deviation * rng.normal(size=p)
    else:
        theta = 1.7 * np.eye(p, k) + deviation * rng.normal(size=(p, k))
    theta32 = torch.as_tensor(theta, dtype=torch.float32)
    value32, grad32 = penalty(fam, "scalar_shrinkage", theta32)
    value64, grad64 = penalty(fam, "scalar_shrinkage", theta32.double())  # same matrix
    assert float(value64) > 0
    assert float(value32) == pytest.approx(float(value64), rel=1e-3)
    # the gradient is exact up to float32's resolution of the entries themselves
    resolution = float(torch.finfo(torch.float32).eps) * float(theta32.abs().max())
    scale = float(grad64.abs().max())
    assert float((grad32.double() - grad64).abs().max()) <= 1e-5 * scale + 4 * resolution


def test_penalty_formula_against_its_definition():
    rng = np.random.default_rng(1)
    p, k = 9, 4
    for fam, theta in (
        (Family("full"), rng.normal(size=(p, p))),
        (Family("diagonal"), rng.normal(size=p)),
        (Family("rectangular", k), rng.normal(size=(p, k))),
    ):
        t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        value, grad = penalty(fam, "scalar_shrinkage", t.detach())
        w = torch.diag(t) if fam.name == "diagonal" else t
        m = w @ w.T if fam.name == "rectangular" else w
        # min over gamma of ||M - gamma I||^2: no gamma on a fine grid does better, and the
        # grid's best comes within its resolution
        gammas = torch.linspace(-8, 8, 16001, dtype=torch.float64)
        eye = torch.eye(p, dtype=torch.float64)
        brute = min(float(((m.detach() - g * eye) ** 2).sum()) for g in gammas)
        assert float(value) <= brute + 1e-12
        assert brute - float(value) <= p * 1e-6
        exact = ((m - torch.trace(m) / p * torch.eye(p, dtype=torch.float64)) ** 2).sum()
        assert float(value) == pytest.approx(exact.item(), rel=1e-12)
        exact.backward()
        np.testing.assert_allclose(grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
