"""Reproducible sampling of synthetic triplets and responses (docs/science/method.md §4, steps 2-3).

:func:`sample_triplets` draws N distinct unordered triplets uniformly among a concept subset,
excluding given triplets (e.g. every triplet of the human data); :func:`sample_responses`
draws one odd-one-out response per triplet from model probabilities. Every random choice
comes from an explicit seed (or numpy Generator).
"""

from __future__ import annotations

import math

import numpy as np

from modelrecovery.data.triplets import Triplets, triplet_keys

__all__ = ["sample_triplets", "sample_responses", "excluded_keys", "SeedLike"]

SeedLike = int | np.random.SeedSequence | np.random.Generator

# Enumerate every combination instead of rejection sampling when N is at least this share of
# the available triplets (and the enumeration fits in memory).
_EXHAUSTIVE_SHARE = 0.25
_EXHAUSTIVE_MAX = 20_000_000
_MAX_BATCH = 50_000_000
_MIN_BATCH = 4096


def sample_triplets(
    concepts: np.ndarray,
    n_triplets: int,
    *,
    seed: SeedLike,
    n_concepts: int,
    exclude: Triplets | np.ndarray | None = None,
    paper_compatible_sampling: bool = False,
) -> np.ndarray:
    """Draw ``n_triplets`` distinct unordered triplets among ``concepts``.

    Default (uniform): the result is a uniformly random ``n_triplets``-subset of all
    unordered triplets ``{i, j, k}`` of the given concepts whose concept set is not in
    ``exclude``; row order and the order within each row are random too. Rejection sampling
    in vectorised batches (three distinct members each, first occurrence of each triplet kept,
    excluded ones dropped) when N is small against the available triplets; otherwise all
    combinations are enumerated and N of them chosen without replacement.

    ``paper_compatible_sampling=True`` reproduces the published scripts' sampler
    (``generate_unique_triplets_subset_of_concepts_very_new``): draw ``5 N`` random index
    triples, drop rows with a repeated index, sort within rows, keep the unique rows in
    lexicographic order, drop excluded and already accepted ones, keep the FIRST ``N``
    (repeat for any shortfall). This is biased toward triplets of low concept indices;
    rows come back sorted within rows and in lexicographic order, as in the scripts. The
    random stream differs from the scripts' (torch), so the triplets are not identical.

    Parameters
    ----------
    concepts : 1-D array of distinct global concept indices in ``[0, n_concepts)``.
    n_triplets : number of triplets N.
    seed : integer seed, SeedSequence or numpy Generator.
    n_concepts : size of the global concept set (for the triplet keys).
    exclude : triplets to avoid: a :class:`Triplets`, an ``(m, 3)`` array of concept
        indices, or a 1-D array of keys from :func:`triplet_keys` with ``n_concepts``.
    paper_compatible_sampling : reproduce the published scripts' biased sampler.

    Returns
    -------
    (N, 3) int32 array of global concept indices.
    """
    n_concepts = int(n_concepts)
    if n_concepts < 3:
        raise ValueError(f"n_concepts must be at least 3, got {n_concepts}")
    if n_concepts**3 >= 2**63:
        raise ValueError(f"n_concepts={n_concepts} too large for int64 triplet keys")
    pool = _check_concepts(concepts, n_concepts)
    n = int(n_triplets)
    if n < 0:
        raise ValueError(f"n_triplets must be non-negative, got {n_triplets}")
    m = pool.size
    total = math.comb(m, 3)
    excl = excluded_keys(exclude, n_concepts, concepts=pool)
    available = total - excl.size
    if n > available:
        raise ValueError(
            f"cannot draw {n} distinct triplets: only {available} are available among "
            f"{m} concepts (C({m}, 3) = {total} minus {excl.size} excluded)"
        )
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.empty((0, 3), dtype=np.int32)
    if paper_compatible_sampling:
        return _sample_paper(pool, n, rng, n_concepts, excl)
    if n >= _EXHAUSTIVE_SHARE * available and total <= _EXHAUSTIVE_MAX:
        return _sample_exhaustive(pool, n, rng, n_concepts, excl)
    return _sample_rejection(pool, n, rng, n_concepts, excl, available)


def excluded_keys(
    exclude: Triplets | np.ndarray | None,
    n_concepts: int,
    *,
    concepts: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted unique int64 keys of ``exclude`` (restricted to triplets inside ``concepts``).

    ``exclude`` may be a :class:`Triplets`, an ``(m, 3)`` array of concept indices or a 1-D
    array of keys from :func:`triplet_keys` computed with ``n_concepts``.
    """
    if exclude is None:
        return np.empty(0, dtype=np.int64)
    if isinstance(exclude, Triplets):
        if exclude.n_concepts > n_concepts and len(exclude) and exclude.ids.max() >= n_concepts:
            raise ValueError(
                f"exclude refers to concept {int(exclude.ids.max())}, beyond n_concepts="
                f"{n_concepts}"
            )
        keys = triplet_keys(exclude.ids, n_concepts)
    else:
        arr = np.asarray(exclude)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"exclude must hold integers, got dtype {arr.dtype}")
        if arr.ndim == 2 and arr.shape[1] == 3:
            if arr.size and (arr.min() < 0 or arr.max() >= n_concepts):
                raise ValueError(f"exclude holds concept indices outside [0, {n_concepts - 1}]")
            keys = triplet_keys(arr, n_concepts)
        elif arr.ndim == 1:
            keys = arr.astype(np.int64)
            if keys.size and (keys.min() < 0 or keys.max() >= n_concepts**3):
                raise ValueError(
                    f"exclude holds keys outside [0, n_concepts**3) for n_concepts={n_concepts}"
                )
        else:
            raise ValueError(
                f"exclude must be Triplets, an (m, 3) array or 1-D keys, got shape {arr.shape}"
            )
    keys = _sorted_unique(keys)
    if concepts is not None and keys.size:
        member = np.zeros(n_concepts, dtype=bool)
        member[np.asarray(concepts, dtype=np.int64)] = True
        nn = np.int64(n_concepts)
        inside = member[keys // (nn * nn)] & member[(keys // nn) % nn] & member[keys % nn]
        keys = keys[inside]
    return keys


def sample_responses(probabilities: np.ndarray, seed: SeedLike) -> np.ndarray:
    """Draw one odd-one-out position per triplet.

    Parameters
    ----------
    probabilities : (m, 3) array; row ``r`` gives P(odd = position 0, 1, 2); rows must be
        non-negative and sum to 1 (within 1e-4).
    seed : integer seed, SeedSequence or numpy Generator.

    Returns
    -------
    (m,) int8 array of positions 0-2.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must have shape (m, 3), got {p.shape}")
    bad = np.flatnonzero(~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1))
    if bad.size:
        raise ValueError(
            f"probabilities row {bad[0]}: {p[bad[0]].tolist()} has a negative or non-finite "
            f"entry ({bad.size} such rows)"
        )
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-4)
    if bad.size:
        raise ValueError(
            f"probabilities row {bad[0]}: sums to {sums[bad[0]]!r}, expected 1 (within 1e-4; "
            f"{bad.size} such rows)"
        )
    rng = np.random.default_rng(seed)
    cum = np.cumsum(p, axis=1)
    u = rng.random(p.shape[0]) * cum[:, 2]
    return ((u >= cum[:, 0]).astype(np.int8) + (u >= cum[:, 1])).astype(np.int8)


# ----------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------


def _check_concepts(concepts: np.ndarray, n_concepts: int) -> np.ndarray:
    pool = np.asarray(concepts)
    if pool.ndim != 1 or (pool.size and not np.issubdtype(pool.dtype, np.integer)):
        raise ValueError("concepts must be a 1-D array of integer concept indices")
    pool = np.sort(pool.astype(np.int64))
    if pool.size < 3:
        raise ValueError(f"need at least 3 concepts to draw triplets, got {pool.size}")
    if pool[0] < 0 or pool[-1] >= n_concepts:
        raise ValueError(f"concepts must lie in [0, {n_concepts - 1}]")
    if np.any(pool[1:] == pool[:-1]):
        raise ValueError("concepts contain repeated indices")
    return pool


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort based: faster than numpy's hash-based unique on big arrays)."""
    s = np.sort(keys)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _is_excluded(keys: np.ndarray, excl: np.ndarray) -> np.ndarray:
    """Membership of ``keys`` in the sorted unique array ``excl``."""
    if excl.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(excl, keys)
    pos[pos == excl.size] = 0
    return excl[pos] == keys


def _keys_of_rows(rows: np.ndarray, n_concepts: int) -> np.ndarray:
    return triplet_keys(rows, n_concepts)


def _rows_of_keys(keys: np.ndarray, n_concepts: int) -> np.ndarray:
    nn = np.int64(n_concepts)
    return np.stack([keys // (nn * nn), (keys // nn) % nn, keys % nn], axis=1)


def _draw_distinct(rng: np.random.Generator, m: int, size: int) -> np.ndarray:
    """``size`` uniformly random ordered triples of distinct local indices in ``[0, m)``."""
    a = rng.integers(0, m, size)
    b = rng.integers(0, m - 1, size)
    b += b >= a
    c = rng.integers(0, m - 2, size)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    c += c >= lo
    c += c >= hi
    return np.stack([a, b, c], axis=1)


def _sample_rejection(
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    n_concepts: int,
    excl: np.ndarray,
    available: int,
) -> np.ndarray:
    """Uniform N-subset by drawing i.i.d. uniform triplets and keeping first occurrences.

    Draws are i.i.d. uniform over all triplets; dropping excluded ones leaves i.i.d. uniform
    draws over the available ones, whose distinct values in order of first appearance form a
    uniformly random ordering; the first N of them are a uniform random N-subset.
    """
    m = pool.size
    total = math.comb(m, 3)
    accept = available / total
    kept_local = np.empty((0, 3), dtype=np.int64)  # first occurrences so far, in draw order
    kept_keys = np.empty(0, dtype=np.int64)
    while True:
        # Expected draws (of available triplets) to see n distinct ones, given those seen.
        n_unique = kept_keys.size
        target = min(n * 1.02 + 64, available)
        if target >= available:
            extra = available * (math.log(available) + 1.0)
        else:
            extra = available * math.log((available - n_unique) / (available - target))
        size = min(max(int(extra / accept * 1.05), _MIN_BATCH), _MAX_BATCH)
        local = np.concatenate([kept_local, _draw_distinct(rng, m, size)])
        keys = np.concatenate([kept_keys, _local_keys(pool, local, n_concepts)])
        uniq, first = np.unique(keys, return_index=True)
        first = np.sort(first[~_is_excluded(uniq, excl)])  # uniq is sorted: fast lookup
        if first.size >= n:
            return pool[local[first[:n]]].astype(np.int32)
        kept_local = local[first]
        kept_keys = keys[first]


def _local_keys(pool: np.ndarray, local: np.ndarray, n_concepts: int) -> np.ndarray:
    """Keys of rows of local indices into the sorted ``pool`` (no row sort needed)."""
    a, b, c = local.T
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    mid = a + b + c - lo - hi
    nn = np.int64(n_concepts)
    return (pool[lo] * nn + pool[mid]) * nn + pool[hi]


def _all_combinations(m: int) -> np.ndarray:
    """Every ``a < b < c`` in ``[0, m)``, (C(m, 3), 3) int64, lexicographic order."""
    b_all, c_all = np.triu_indices(m, 1)
    out = np.empty((math.comb(m, 3), 3), dtype=np.int64)
    at = 0
    for a in range(m - 2):
        start = (a + 1) * m - (a + 1) * (a + 2) // 2  # pairs (b, c) with b <= a come first
        cnt = b_all.size - start
        out[at : at + cnt, 0] = a
        out[at : at + cnt, 1] = b_all[start:]
        out[at : at + cnt, 2] = c_all[start:]
        at += cnt
    return out


def _sample_exhaustive(
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    n_concepts: int,
    excl: np.ndarray,
) -> np.ndarray:
    """Enumerate all available triplets and choose N without replacement."""
    rows = pool[_all_combinations(pool.size)]  # pool is sorted, so rows stay sorted
    if excl.size:
        rows = rows[~_is_excluded(_keys_of_rows(rows, n_concepts), excl)]
    chosen = rows[rng.choice(rows.shape[0], size=n, replace=False)]
    return rng.permuted(chosen, axis=1).astype(np.int32)


def _sample_paper(
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    n_concepts: int,
    excl: np.ndarray,
) -> np.ndarray:
    """The published scripts' sampler: first N of 5N lexicographically sorted draws."""
    m = pool.size
    accepted: list[np.ndarray] = []
    accepted_keys = np.empty(0, dtype=np.int64)
    desired = n
    while desired > 0:
        local = rng.integers(0, m, (5 * desired, 3))
        a, b, c = local.T
        local = local[(a != b) & (b != c) & (a != c)]
        # Sorting within rows then rows lexicographically = sorting the keys (pool is sorted).
        keys = _sorted_unique(_local_keys(pool, local, n_concepts))
        keys = keys[~_is_excluded(keys, excl)]
        if accepted_keys.size:
            keys = keys[~_is_excluded(keys, accepted_keys)]
        take = keys[:desired]
        accepted.append(take)
        accepted_keys = np.sort(np.concatenate([accepted_keys, take]))
        desired -= take.size
    keys = np.concatenate(accepted)
    return _rows_of_keys(keys, n_concepts).astype(np.int32)
