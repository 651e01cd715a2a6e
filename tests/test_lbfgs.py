"""The lean L-BFGS follows torch's L-BFGS (same algorithm) step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelrecovery.data import Triplets
from modelrecovery.probe.fit import LBFGSSettings, build_problem, lbfgs_minimise
from modelrecovery.probe.lbfgs import LBFGS, LBFGSCore


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def _fun(f):
    def fun(x: np.ndarray):
        t = torch.tensor(x, requires_grad=True)
        loss = f(t)
        loss.backward()
        return float(loss), t.grad.numpy().copy()

    return fun


@pytest.mark.parametrize(
    "options",
    [
        dict(max_iter=20, history_size=10),
        dict(max_iter=7, max_eval=9, history_size=3),  # the line search hits max_eval
        dict(max_iter=150, tolerance_change=1e-4, max_eval=450, history_size=50),
    ],
)
def test_lean_lbfgs_follows_torch_on_rosenbrock(options):
    x0 = torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.5, -1.0], dtype=torch.float64)
    param = torch.nn.Parameter(x0.clone())
    reference = torch.optim.LBFGS([param], line_search_fn="strong_wolfe", **options)

    def closure():
        reference.zero_grad()
        loss = _rosenbrock(param)
        loss.backward()
        return loss

    core = LBFGSCore(x0.numpy(), **options)
    for _ in range(6):
        expected = float(reference.step(closure).detach())
        got = core.step(_fun(_rosenbrock))
        # same path up to rounding (dot products summed in another order); near the
        # optimum (loss -> 0) only absolute agreement is meaningful
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-10)
        state = reference.state[param]
        assert core.n_iter == state["n_iter"]
        assert core.func_evals == state["func_evals"]
        np.testing.assert_allclose(core.x, param.detach().numpy(), rtol=0, atol=1e-6)
    # the end-of-step loss the core reports is the loss at its point
    assert core.loss == pytest.approx(float(_rosenbrock(torch.from_numpy(core.x))), rel=1e-12)


def _probe_problem(dtype, family="full", k=None):
    rng = np.random.default_rng(3)
    n, p = 30, 12
    x = rng.normal(size=(n, p))
    ids = np.array([rng.choice(n, 3, replace=False) for _ in range(400)])
    z = x @ (np.eye(p) + 0.3 * rng.normal(size=(p, p)))
    s = z @ z.T
    logits = np.stack(
        [s[ids[:, 1], ids[:, 2]], s[ids[:, 0], ids[:, 2]], s[ids[:, 0], ids[:, 1]]], 1
    )
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    odd = (rng.random(len(ids))[:, None] > prob.cumsum(1)).sum(1).clip(0, 2)
    return build_problem(
        x, Triplets(ids, odd, n), family=family, k=k, lam=0.01, dtype=dtype, reduce=False
    )


@pytest.mark.parametrize("stopping", ["converged", "study"])
@pytest.mark.parametrize("family,k", [("full", None), ("rectangular", 4), ("diagonal", None)])
def test_minimise_engines_agree_on_probe_problems(stopping, family, k):
    problem = _probe_problem(torch.float64, family, k)
    settings = LBFGSSettings.of(stopping)
    lean = lbfgs_minimise(problem.objective, problem.theta0, settings, engine="lean")
    ref = lbfgs_minimise(problem.objective, problem.theta0, settings, engine="torch")
    assert lean.iterations == ref.iterations
    assert lean.converged == ref.converged
    np.testing.assert_allclose(lean.history, ref.history, rtol=1e-10)
    torch.testing.assert_close(lean.theta, ref.theta, rtol=1e-7, atol=1e-9)
    # torch's engine spends one extra evaluation per step for the end-of-step loss
    if stopping == "study":
        assert lean.evaluations == ref.evaluations


def test_lean_lbfgs_float32_reaches_the_same_optimum():
    problem32 = _probe_problem(torch.float32)
    settings = LBFGSSettings()
    lean = lbfgs_minimise(problem32.objective, problem32.theta0, settings, engine="lean")
    ref = lbfgs_minimise(problem32.objective, problem32.theta0, settings, engine="torch")
    lean_loss = float(problem32.objective.loss_and_grad(lean.theta)[0])
    ref_loss = float(problem32.objective.loss_and_grad(ref.theta)[0])
    assert lean_loss == pytest.approx(ref_loss, rel=1e-5)


def test_optimizer_wrapper_matches_core_and_rejects_bad_use():
    x0 = torch.tensor([-1.2, 1.0, 0.3], dtype=torch.float64)
    param = torch.nn.Parameter(x0.clone())
    optimiser = LBFGS([param], max_iter=10, history_size=5)

    def closure():
        optimiser.zero_grad()
        loss = _rosenbrock(param)
        loss.backward()
        return loss

    core = LBFGSCore(x0.numpy(), max_iter=10, history_size=5)
    for _ in range(3):
        assert float(optimiser.step(closure)) == core.step(_fun(_rosenbrock))
    np.testing.assert_array_equal(param.detach().numpy(), core.x)
    assert optimiser.state[param]["n_iter"] == core.n_iter
    with pytest.raises(ValueError, match="strong_wolfe"):
        LBFGS([torch.nn.Parameter(x0.clone())], line_search_fn=None)
    with pytest.raises(ValueError, match="exactly one parameter"):
        LBFGS([torch.nn.Parameter(x0.clone()), torch.nn.Parameter(x0.clone())])
