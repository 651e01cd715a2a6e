"""Compiled CPU kernel for the per-triplet work of the objective (numba).

One pass over the triplets gathers the three pair similarities, forms the softmax, adds
the NLL and scatters the gradient into per-thread buffers (no write conflicts), which are
summed at the end. This replaces about eight full passes of separate array operations
(gather, max, exp, sum, log, subtract, scatter) and is what keeps the per-triplet work
from dominating at millions of triplets. Results equal the array version to rounding.
"""

from __future__ import annotations

import numba
import numpy as np


def _nll_pair_grad_impl(sims, slot_pair, odd, inv_temperature, n_chunks):  # pragma: no cover
    m = slot_pair.shape[0]
    n_pairs = sims.shape[0]
    grads = np.zeros((n_chunks, n_pairs), dtype=sims.dtype)
    nll_parts = np.zeros(n_chunks, dtype=np.float64)
    inv_t = sims.dtype.type(inv_temperature)
    scale = sims.dtype.type(inv_temperature / m)
    for chunk in numba.prange(n_chunks):
        start = chunk * m // n_chunks
        stop = (chunk + 1) * m // n_chunks
        grad = grads[chunk]
        total = 0.0
        for t in range(start, stop):
            p0 = slot_pair[t, 0]
            p1 = slot_pair[t, 1]
            p2 = slot_pair[t, 2]
            l0 = sims[p0] * inv_t
            l1 = sims[p1] * inv_t
            l2 = sims[p2] * inv_t
            top = max(l0, max(l1, l2))
            e0 = np.exp(l0 - top)
            e1 = np.exp(l1 - top)
            e2 = np.exp(l2 - top)
            norm = e0 + e1 + e2
            o = odd[t]
            chosen = l0 if o == 0 else (l1 if o == 1 else l2)
            total += np.log(norm) + top - chosen
            w = scale / norm
            grad[p0] += e0 * w - (scale if o == 0 else 0)
            grad[p1] += e1 * w - (scale if o == 1 else 0)
            grad[p2] += e2 * w - (scale if o == 2 else 0)
        nll_parts[chunk] = total
    out = grads[0].copy()
    for chunk in range(1, n_chunks):
        out += grads[chunk]
    return nll_parts.sum() / m, out


_nll_pair_grad = numba.njit(parallel=True, fastmath=True, cache=True)(_nll_pair_grad_impl)
_nll_pair_grad_serial = numba.njit(fastmath=True, cache=True)(_nll_pair_grad_impl)

# Below this many triplets the kernels run on one thread: waking a second thread pool
# next to torch's (both spin while waiting) costs more than the work itself.
PARALLEL_MIN_TRIPLETS = 100_000


def nll_pair_grad_cpu(
    sims: np.ndarray, slot_pair: np.ndarray, odd: np.ndarray, temperature: float
) -> tuple[float, np.ndarray]:
    """Mean NLL and gradient per unique pair (see :func:`objective.nll_and_pair_grad`)."""
    if slot_pair.shape[0] < PARALLEL_MIN_TRIPLETS:
        return _nll_pair_grad_serial(sims, slot_pair, odd, 1.0 / temperature, 1)
    n_chunks = numba.get_num_threads()
    return _nll_pair_grad(sims, slot_pair, odd, 1.0 / temperature, n_chunks)


def _nll_dense_grad_impl(s_flat, slot_flat, odd, n, inv_temperature, n_chunks):  # pragma: no cover
    m = slot_flat.shape[0]
    grads = np.zeros((n_chunks, n * n), dtype=s_flat.dtype)
    nll_parts = np.zeros(n_chunks, dtype=np.float64)
    inv_t = s_flat.dtype.type(inv_temperature)
    scale = s_flat.dtype.type(inv_temperature / m)
    for chunk in numba.prange(n_chunks):
        start = chunk * m // n_chunks
        stop = (chunk + 1) * m // n_chunks
        grad = grads[chunk]
        total = 0.0
        for t in range(start, stop):
            f0 = slot_flat[t, 0]
            f1 = slot_flat[t, 1]
            f2 = slot_flat[t, 2]
            l0 = s_flat[f0] * inv_t
            l1 = s_flat[f1] * inv_t
            l2 = s_flat[f2] * inv_t
            top = max(l0, max(l1, l2))
            e0 = np.exp(l0 - top)
            e1 = np.exp(l1 - top)
            e2 = np.exp(l2 - top)
            norm = e0 + e1 + e2
            o = odd[t]
            chosen = l0 if o == 0 else (l1 if o == 1 else l2)
            total += np.log(norm) + top - chosen
            w = scale / norm
            g0 = e0 * w - (scale if o == 0 else 0)
            g1 = e1 * w - (scale if o == 1 else 0)
            g2 = e2 * w - (scale if o == 2 else 0)
            grad[f0] += g0
            grad[f1] += g1
            grad[f2] += g2
        nll_parts[chunk] = total
    out = grads[0]
    for chunk in range(1, n_chunks):
        out += grads[chunk]
    return nll_parts.sum() / m, out


_nll_dense_grad = numba.njit(parallel=True, fastmath=True, cache=True)(_nll_dense_grad_impl)
_nll_dense_grad_serial = numba.njit(fastmath=True, cache=True)(_nll_dense_grad_impl)


def nll_dense_grad_cpu(
    s_flat: np.ndarray, slot_flat: np.ndarray, odd: np.ndarray, n: int, temperature: float
) -> tuple[float, np.ndarray]:
    """Mean NLL and the gradient G (flat n*n, upper triangle: dL/dS_rc at r*n + c, r < c)
    from the full similarity matrix ``s_flat``; ``slot_flat`` holds each logit's r*n + c."""
    if slot_flat.shape[0] < PARALLEL_MIN_TRIPLETS:
        return _nll_dense_grad_serial(s_flat, slot_flat, odd, n, 1.0 / temperature, 1)
    n_chunks = numba.get_num_threads()
    return _nll_dense_grad(s_flat, slot_flat, odd, n, 1.0 / temperature, n_chunks)
