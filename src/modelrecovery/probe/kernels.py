"""Compiled CPU kernel for the per-triplet work of the objective (numba).

One pass over the triplets gathers each triplet's three similarities, forms the softmax,
adds the NLL and scatters the gradient into per-thread buffers (no write conflicts),
which are summed at the end. This replaces about eight full passes of separate array
operations (gather, max, exp, sum, log, subtract, scatter) and is what keeps the
per-triplet work from dominating at millions of triplets. Results equal the array version
to rounding.

The same kernel serves both objective paths: ``values`` is either the list of unique pair
similarities (``slots`` index pairs) or the flattened n x n similarity matrix (``slots``
hold r * n + c), and the gradient comes back in the same layout as ``values``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Below this many triplets the kernel runs on one thread: waking a second thread pool
# next to torch's (both spin while waiting) costs more than the work itself.
PARALLEL_MIN_TRIPLETS = 100_000


def _nll_slot_grad_impl(values, slots, odd, inv_temperature, n_chunks):  # pragma: no cover
    m = slots.shape[0]
    grads = np.zeros((n_chunks, values.shape[0]), dtype=values.dtype)
    nll_parts = np.zeros(n_chunks, dtype=np.float64)
    inv_t = values.dtype.type(inv_temperature)
    scale = values.dtype.type(inv_temperature / m)
    for chunk in numba.prange(n_chunks):
        start = chunk * m // n_chunks
        stop = (chunk + 1) * m // n_chunks
        grad = grads[chunk]
        total = 0.0
        for t in range(start, stop):
            s0 = slots[t, 0]
            s1 = slots[t, 1]
            s2 = slots[t, 2]
            l0 = values[s0] * inv_t
            l1 = values[s1] * inv_t
            l2 = values[s2] * inv_t
            top = max(l0, max(l1, l2))
            e0 = np.exp(l0 - top)
            e1 = np.exp(l1 - top)
            e2 = np.exp(l2 - top)
            norm = e0 + e1 + e2
            o = odd[t]
            chosen = l0 if o == 0 else (l1 if o == 1 else l2)
            total += np.log(norm) + top - chosen
            w = scale / norm
            grad[s0] += e0 * w - (scale if o == 0 else 0)
            grad[s1] += e1 * w - (scale if o == 1 else 0)
            grad[s2] += e2 * w - (scale if o == 2 else 0)
        nll_parts[chunk] = total
    out = grads[0]
    for chunk in range(1, n_chunks):
        out += grads[chunk]
    return nll_parts.sum() / m, out


_nll_slot_grad = numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)(
    _nll_slot_grad_impl
)
_nll_slot_grad_serial = numba.njit(fastmath=True, cache=True, nogil=True)(_nll_slot_grad_impl)


def nll_slot_grad_cpu(
    values: np.ndarray, slots: np.ndarray, odd: np.ndarray, temperature: float
) -> tuple[float, np.ndarray]:
    """Mean NLL over triplets and its gradient with respect to ``values``.

    ``slots[t]`` are the positions in ``values`` of triplet t's logits (similarities of the
    pairs bc, ac, ab); the gradient has the shape of ``values``. Non-finite similarities
    (an overflowing iterate) give a NaN loss and gradient, never an exception.
    """
    try:
        if slots.shape[0] < PARALLEL_MIN_TRIPLETS:
            return _nll_slot_grad_serial(values, slots, odd, 1.0 / temperature, 1)
        return _nll_slot_grad(values, slots, odd, 1.0 / temperature, numba.get_num_threads())
    except ZeroDivisionError:
        # numba's Python error model raises where a softmax normaliser is 0, which only
        # non-finite similarities produce (the error model stays: changing it changes the
        # compiled code and the last bits of every result)
        return math.nan, np.full_like(values, np.nan)
