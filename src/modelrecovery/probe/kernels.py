"""Compiled CPU kernel for the per-triplet work of the objective (numba).

One pass over the triplets gathers each triplet's three similarities, forms the softmax,
adds the NLL and scatters the gradient (one thread; large problems take the blocked path
below). This replaces about eight full passes of separate array
operations (gather, max, exp, sum, log, subtract, scatter) and is what keeps the
per-triplet work from dominating at millions of triplets. Results equal the array version
to rounding.

The same kernel serves both objective paths: ``values`` is either the list of unique pair
similarities (``slots`` index pairs) or the flattened n x n similarity matrix (``slots``
hold r * n + c), and the gradient comes back in the same layout as ``values``.

Large problems (at least ``PARALLEL_MIN_TRIPLETS`` triplets, e.g. the human data at the
paper's scale) take a blocked path instead: per block of triplets, one compiled pass
gathers the logits and subtracts each triplet's maximum, NumPy's vectorised ``exp`` forms
the softmax numerators (numba's scalar ``exp`` was most of the single-pass kernel's time),
and a second compiled pass scatters the gradient; the chosen logit's terms (in the NLL and
the -1/(mT) in the gradient) are arithmetic on the response, not branches. Chunks of
triplets run on threads (the compiled passes and NumPy's ufuncs release the GIL), each
into its own gradient buffer; the buffers are then summed on the same threads, and with
``symmetric_n`` mirrored into G + G^T (the dense path's dL/dZ needs (G + G^T) Z). It
computes the same sums in another order (and NumPy's exp instead of libm's): results agree
with the single-pass kernel to rounding (tested: 1e-12 relative in float64). At 4.2M
triplets on 2 threads a first version of this path took 0.08-0.09 s where the former
single-pass parallel kernel took 0.37-0.41 s (same run); the objective's figures are in
docs/benchmarks.md.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# Below this many triplets the kernel runs on one thread: waking a second thread pool
# next to torch's (both spin while waiting) costs more than the work itself.
PARALLEL_MIN_TRIPLETS = 100_000
# Triplets per block of the blocked path: its logits (block x 3) stay in the L2 cache.
BLOCK_TRIPLETS = 32_768


@numba.njit(fastmath=True, cache=True, nogil=True)
def _nll_slot_grad_serial(values, slots, odd, inv_temperature):  # pragma: no cover
    """The single-pass kernel: mean NLL and gradient over every triplet, on one thread."""
    m = slots.shape[0]
    grad = np.zeros(values.shape[0], dtype=values.dtype)
    inv_t = values.dtype.type(inv_temperature)
    scale = values.dtype.type(inv_temperature / m)
    total = 0.0
    for t in range(m):
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
    return total / m, grad


@numba.njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _gather_shifted(values, slots, odd, start, stop, inv_t, out):  # pragma: no cover
    """out[t - start] = logits of triplet t minus their maximum; returns the sum over the
    block of (maximum - chosen logit), the part of the NLL outside the log."""
    total = 0.0
    for t in range(start, stop):
        i = t - start
        l0 = values[slots[t, 0]] * inv_t
        l1 = values[slots[t, 1]] * inv_t
        l2 = values[slots[t, 2]] * inv_t
        top = max(l0, max(l1, l2))
        o = odd[t]
        chosen = l0 * (o == 0) + l1 * (o == 1) + l2 * (o == 2)
        out[i, 0] = l0 - top
        out[i, 1] = l1 - top
        out[i, 2] = l2 - top
        total += top - chosen
    return total


@numba.njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _scatter_softmax(e, slots, odd, start, stop, scale, grad, norm):  # pragma: no cover
    """grad[slot] += scale * (softmax weight - [chosen]) for the block's triplets, from the
    softmax numerators ``e``; norm = their sums."""
    for t in range(start, stop):
        i = t - start
        e0 = e[i, 0]
        e1 = e[i, 1]
        e2 = e[i, 2]
        total = e0 + e1 + e2
        norm[i] = total
        w = scale / total
        o = odd[t]
        grad[slots[t, 0]] += e0 * w - scale * (o == 0)
        grad[slots[t, 1]] += e1 * w - scale * (o == 1)
        grad[slots[t, 2]] += e2 * w - scale * (o == 2)


@numba.njit(fastmath=True, cache=True, nogil=True)
def _sum_buffers(grads, out, start, stop):  # pragma: no cover
    """out[start:stop] = the sum of the chunk buffers (in chunk order)."""
    out[start:stop] = grads[0, start:stop]
    for c in range(1, grads.shape[0]):
        for i in range(start, stop):
            out[i] += grads[c, i]


@numba.njit(cache=True, nogil=True)
def _symmetrise(g, out, start, stop, n):  # pragma: no cover
    """Rows start..stop of the upper triangle of G + G^T (G: flat n x n), written to both
    triangles of ``out``; by 32 x 32 tiles, so the transposed accesses stay in cache."""
    tile = 32
    for r0 in range(start, stop, tile):
        r1 = min(r0 + tile, stop)
        for c0 in range(r0, n, tile):
            c1 = min(c0 + tile, n)
            for r in range(r0, r1):
                for col in range(max(c0, r), c1):
                    v = g[r * n + col] + g[col * n + r]
                    out[r * n + col] = v
                    out[col * n + r] = v


def _triangle_cuts(n: int, parts: int) -> list[int]:
    """Row cuts giving each part about the same share of an n x n upper triangle."""
    cuts = [round(n - n * math.sqrt(1 - c / parts)) for c in range(parts)] + [n]
    return [min(max(c, 0), n) for c in cuts]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            size = max(1, numba.config.NUMBA_NUM_THREADS - 1)
            _pool = ThreadPoolExecutor(size, thread_name_prefix="triplet-kernel")
        return _pool


def _on_threads(fn, arguments: list[tuple]) -> list:
    """fn(*a) for each a: the first on this thread, the rest on the kernel's pool."""
    others = [_threads().submit(fn, *a) for a in arguments[1:]]
    return [fn(*arguments[0])] + [f.result() for f in others]


def _blocked_chunk(values, slots, odd, start, stop, inv_t, scale, grad) -> float:
    """The NLL summed over triplets start..stop, their gradient added into ``grad``."""
    width = min(BLOCK_TRIPLETS, max(stop - start, 1))
    e = np.empty((width, 3), dtype=values.dtype)
    norm = np.empty(width, dtype=values.dtype)
    total = 0.0
    for b in range(start, stop, width):
        c = min(b + width, stop)
        k = c - b
        total += _gather_shifted(values, slots, odd, b, c, inv_t, e)
        np.exp(e[:k], out=e[:k])
        _scatter_softmax(e, slots, odd, b, c, scale, grad, norm)
        total += float(np.log(norm[:k]).sum(dtype=np.float64))
    return total


def _nll_slot_grad_blocked(values, slots, odd, temperature, n_chunks, symmetric_n):
    m = slots.shape[0]
    dtype = values.dtype.type
    inv_t = dtype(1.0 / temperature)
    scale = dtype(1.0 / temperature / m)
    grads = np.zeros((n_chunks, values.shape[0]), dtype=values.dtype)
    cuts = [c * m // n_chunks for c in range(n_chunks + 1)]
    chunks = [
        (values, slots, odd, cuts[c], cuts[c + 1], inv_t, scale, grads[c]) for c in range(n_chunks)
    ]
    parts = _on_threads(_blocked_chunk, chunks)
    nll = sum(parts) / m
    if not math.isfinite(nll):
        return math.nan, np.full_like(values, np.nan)
    if n_chunks > 1:
        size = values.shape[0]
        cuts = [c * size // n_chunks for c in range(n_chunks + 1)]
        _on_threads(
            _sum_buffers, [(grads, grads[0], cuts[c], cuts[c + 1]) for c in range(n_chunks)]
        )
    if not symmetric_n:
        return nll, grads[0]
    out = np.empty_like(values)
    cuts = _triangle_cuts(symmetric_n, n_chunks)
    args = [(grads[0], out, cuts[c], cuts[c + 1], symmetric_n) for c in range(n_chunks)]
    _on_threads(_symmetrise, args)
    return nll, out


def nll_slot_grad_cpu(
    values: np.ndarray,
    slots: np.ndarray,
    odd: np.ndarray,
    temperature: float,
    blocked: bool | None = None,
    symmetric_n: int = 0,
) -> tuple[float, np.ndarray]:
    """Mean NLL over triplets and its gradient with respect to ``values``.

    ``slots[t]`` are the positions in ``values`` of triplet t's logits (similarities of the
    pairs bc, ac, ab); the gradient has the shape of ``values``. Non-finite similarities
    (an overflowing iterate) give a NaN loss and gradient, never an exception.
    ``blocked`` chooses the blocked path (default: from ``PARALLEL_MIN_TRIPLETS``
    triplets). With ``symmetric_n`` = n, ``values`` is a flattened n x n matrix and the
    gradient G comes back as G + G^T (what dL/dZ needs), summed in the same pass.
    """
    if blocked is None:
        blocked = slots.shape[0] >= PARALLEL_MIN_TRIPLETS
    if blocked:
        n_chunks = numba.get_num_threads() if slots.shape[0] >= PARALLEL_MIN_TRIPLETS else 1
        with np.errstate(all="ignore"):
            return _nll_slot_grad_blocked(values, slots, odd, temperature, n_chunks, symmetric_n)
    try:
        nll, grad = _nll_slot_grad_serial(values, slots, odd, 1.0 / temperature)
    except ZeroDivisionError:
        # numba's Python error model raises where a softmax normaliser is 0, which only
        # non-finite similarities produce (the error model stays: changing it changes the
        # compiled code and the last bits of every result)
        return math.nan, np.full_like(values, np.nan)
    if symmetric_n:
        out = np.empty_like(grad)
        _symmetrise(grad, out, 0, symmetric_n, symmetric_n)
        grad = out
    return nll, grad
