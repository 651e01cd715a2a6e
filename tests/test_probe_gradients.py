"""The hand-derived objective equals a plain autograd computation (value and gradient)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from helpers import random_triplet_ids
from modelrecovery.data import Triplets
from modelrecovery.probe import Family, PreparedTriplets, TripletObjective, penalty


def autograd_loss(x, ids, odd, family, regulariser, lam, temperature, theta):
    """The straightforward formulation: W as a matrix, all similarities, cross-entropy."""
    p = x.shape[1]
    if family.name == "zero_shot":
        w = torch.exp(0.5 * theta) * torch.eye(p, dtype=x.dtype)
    elif family.name == "diagonal":
        w = torch.diag(theta)
    else:
        w = theta
    z = x @ w
    s = z @ z.T
    a, b, c = ids.T
    logits = torch.stack([s[b, c], s[a, c], s[a, b]], dim=1) / temperature
    nll = torch.nn.functional.cross_entropy(logits, odd)
    if family.name == "zero_shot" or lam == 0:
        return nll
    if regulariser == "l2":
        reg = (theta**2).sum()
    elif regulariser == "l1":
        reg = theta.abs().sum()
    elif family.name == "rectangular":
        m = theta @ theta.T  # p x p
        reg = ((m - torch.trace(m) / p * torch.eye(p, dtype=x.dtype)) ** 2).sum()
    else:
        full = torch.diag(theta) if family.name == "diagonal" else theta
        gamma = torch.trace(full) / p
        reg = ((full - gamma * torch.eye(p, dtype=x.dtype)) ** 2).sum()
    return nll + lam * reg


def autograd_value_and_grad(x, ids, odd, family, regulariser, lam, temperature, theta):
    """:func:`autograd_loss` at ``theta`` (triplet ids and responses as arrays) and its
    gradient by autograd."""
    theta_ag = theta.clone().requires_grad_(True)
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    loss = autograd_loss(
        x, ids_t, torch.tensor(odd), family, regulariser, lam, temperature, theta_ag
    )
    loss.backward()
    return float(loss.detach()), theta_ag.grad


FAMILIES = [Family("zero_shot"), Family("diagonal"), Family("rectangular", 4), Family("full")]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("regulariser", ["scalar_shrinkage", "l2", "l1"])
@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("compiled", [True, False])
def test_gradient_matches_autograd(family, regulariser, path, compiled):
    rng = np.random.default_rng(zlib.crc32(f"{family.name}{regulariser}{path}".encode()))
    n, p, m = 25, 9, 300
    x = torch.tensor(rng.normal(size=(n, p)) / 3)
    ids = random_triplet_ids(n, m, rng)
    odd = rng.integers(0, 3, m)
    triplets = Triplets(ids, odd, n)
    prep = PreparedTriplets.from_triplets(triplets)
    objective = TripletObjective.from_features(
        x,
        prep,
        family,
        regulariser=regulariser,
        lam=0.3,
        temperature=0.7,
        path=path,
        compiled=compiled,
    )
    theta = family.init(p, dtype=torch.float64, device="cpu")
    theta = theta + 0.2 * torch.tensor(rng.normal(size=tuple(theta.shape)))
    loss, grad = objective.loss_and_grad(theta)

    ref, ref_grad = autograd_value_and_grad(x, ids, odd, family, regulariser, 0.3, 0.7, theta)
    assert float(loss) == pytest.approx(ref, rel=1e-10)
    assert float((grad - ref_grad).norm() / ref_grad.norm()) < 1e-6


def test_penalty_formulas_brute_force():
    """Scalar shrinkage equals min over gamma of ||W - gamma I||^2 found numerically."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(3)
    w = torch.tensor(rng.normal(size=(6, 6)))
    value, _ = penalty(Family("full"), "scalar_shrinkage", w)
    best = minimize_scalar(lambda g: float(((w - g * torch.eye(6)) ** 2).sum()))
    assert float(value) == pytest.approx(best.fun, rel=1e-8)
    assert float(penalty(Family("full"), "scalar_shrinkage", 2.5 * torch.eye(6))[0]) == (
        pytest.approx(0.0, abs=1e-12)
    )


def test_dense_and_sparse_paths_agree_float32():
    rng = np.random.default_rng(5)
    n, p, m = 40, 12, 500
    x = torch.tensor(rng.normal(size=(n, p)), dtype=torch.float32)
    triplets = Triplets(random_triplet_ids(n, m, rng), rng.integers(0, 3, m), n)
    prep = PreparedTriplets.from_triplets(triplets)
    theta = torch.eye(p) + 0.1 * torch.randn(p, p, generator=torch.Generator().manual_seed(0))
    out = []
    for path in ("dense", "sparse"):
        objective = TripletObjective.from_features(x, prep, Family("full"), lam=0.1, path=path)
        out.append(objective.loss_and_grad(theta))
    assert float(out[0][0]) == pytest.approx(float(out[1][0]), rel=1e-5)
    assert torch.allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-6)


def test_diagonal_pair_form_equals_the_dense_objective_and_autograd():
    from modelrecovery.data import Triplets
    from modelrecovery.probe.families import Family
    from modelrecovery.probe.objective import PreparedTriplets, TripletObjective

    rng = np.random.default_rng(5)
    n, p = 80, 30
    x = torch.as_tensor(rng.normal(size=(n, p)))
    ids = np.array([rng.choice(n, 3, replace=False) for _ in range(60)])
    prep = PreparedTriplets.from_triplets(Triplets(ids, rng.integers(0, 3, len(ids)), n))
    family = Family("diagonal")
    pairs = TripletObjective.from_features(x, prep, family, lam=0.3, temperature=0.7)
    dense = TripletObjective.from_features(
        x, prep, family, lam=0.3, temperature=0.7, path="dense", compiled=False
    )
    assert pairs.diagonal_pairs and not dense.diagonal_pairs
    assert pairs.to("cpu").diagonal_pairs  # kept by .to (the Lightning module moves it)
    theta = torch.tensor(rng.normal(size=p), requires_grad=True)
    loss, grad = pairs.loss_and_grad(theta.detach())
    loss_d, grad_d = dense.loss_and_grad(theta.detach())
    torch.testing.assert_close(loss, loss_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_d, rtol=1e-10, atol=1e-12)
    # autograd through the definition
    xa = x[prep.concepts]
    z = xa * theta
    s = z @ z.T
    a, b, c = prep.pair_rows, prep.pair_cols, prep.slot_pair
    sims = s[a, b]
    logits = sims[c] / 0.7
    nll = torch.nn.functional.cross_entropy(logits, prep.odd)
    centred = theta - theta.mean()
    total = nll + 0.3 * (centred * centred).sum()
    total.backward()
    torch.testing.assert_close(loss, total.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, theta.grad, rtol=1e-8, atol=1e-10)


def _many_triplets(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m random triplets of distinct concepts, vectorised (random_triplet_ids is per row)."""
    ids = rng.integers(0, n, size=(2 * m, 3))
    ok = (ids[:, 0] != ids[:, 1]) & (ids[:, 0] != ids[:, 2]) & (ids[:, 1] != ids[:, 2])
    return ids[ok][:m].astype(np.int32)


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_blocked_kernel_at_scale_matches_autograd(path):
    """From PARALLEL_MIN_TRIPLETS triplets the objective takes the blocked, threaded kernel:
    its loss and gradient still equal autograd's (float64), on both layouts."""
    from modelrecovery.probe.kernels import PARALLEL_MIN_TRIPLETS

    rng = np.random.default_rng(11)
    n, p, m = 70, 6, PARALLEL_MIN_TRIPLETS + 20_000
    x = torch.tensor(rng.normal(size=(n, p)) / 2)
    ids = _many_triplets(n, m, rng)
    odd = rng.integers(0, 3, m)
    prep = PreparedTriplets.from_triplets(Triplets(ids, odd, n))
    family = Family("full")
    objective = TripletObjective.from_features(x, prep, family, lam=0.3, temperature=0.7, path=path)
    theta = torch.eye(p, dtype=torch.float64) + 0.3 * torch.tensor(rng.normal(size=(p, p)))
    loss, grad = objective.loss_and_grad(theta)
    ref, ref_grad = autograd_value_and_grad(
        x, ids, odd, family, "scalar_shrinkage", 0.3, 0.7, theta
    )
    assert float(loss) == pytest.approx(ref, rel=1e-12)
    assert float((grad - ref_grad).norm() / ref_grad.norm()) < 1e-10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_blocked_kernel_equals_single_pass(dtype, chunks):
    """The blocked path (any number of chunks, symmetric output or not) computes the same
    NLL and gradient as the single-pass kernel, to rounding; non-finite input gives NaN."""
    from modelrecovery.probe import kernels

    rng = np.random.default_rng(chunks)
    n, m = 90, 50_000
    ids = np.sort(_many_triplets(n, m, rng), axis=1).astype(np.int64)
    slots = np.stack(
        [ids[:, 1] * n + ids[:, 2], ids[:, 0] * n + ids[:, 2], ids[:, 0] * n + ids[:, 1]], 1
    )
    odd = rng.integers(0, 3, m).astype(np.int8)
    values = (rng.normal(size=n * n) * 4).astype(dtype)
    nll, grad = kernels.nll_slot_grad_cpu(values, slots, odd, 0.6, blocked=False)
    g = grad.reshape(n, n)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for symmetric_n in (0, n):
        b_nll, b_grad = kernels._nll_slot_grad_blocked(values, slots, odd, 0.6, chunks, symmetric_n)
        want = (g + g.T).reshape(-1) if symmetric_n else grad
        assert b_nll == pytest.approx(nll, rel=tol)
        assert np.abs(b_grad - want).max() <= tol * np.abs(want).max()
    # the single-pass kernel's symmetric output is G + G^T bit for bit
    s_nll, s_grad = kernels.nll_slot_grad_cpu(values, slots, odd, 0.6, blocked=False, symmetric_n=n)
    assert s_nll == nll and np.array_equal(s_grad, (g + g.T).reshape(-1))
    bad = values.copy()
    bad[slots[7, 1]] = np.inf
    b_nll, b_grad = kernels._nll_slot_grad_blocked(bad, slots, odd, 0.6, chunks, n)
    assert np.isnan(b_nll) and np.isnan(b_grad).all()
