"""Human noise ceiling of odd-one-out data (docs/science/method.md §1).

For every unique unordered triplet with at least two responses, each response is left out in
turn and predicted by the majority of the remaining responses; ties share the credit
(1 / number of tied winners). The per-response credits are averaged within the triplet, then
the per-triplet values are averaged over triplets. Responses are compared by the CONCEPT
chosen as odd one out, so the same triplet shown in different orders is pooled correctly.

The same statistic has an exact expectation under a model that answers a triplet with
probabilities ``p`` (three, one per position) independently ``k`` times: the sum over the
multinomial count vectors ``(n1, n2, n3)``, ``n1 + n2 + n3 = k``, of ``P(counts) x`` the
leave-one-out credit of those counts (:func:`expected_loo_agreement`), averaged over triplets
as the human ceiling is (:func:`expected_noise_ceiling`). Calibration ``loo_matched``
(docs/science/method.md §3) matches it to the human ceiling.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import gammaln, xlogy

from modelrecovery.data.triplets import Triplets

__all__ = [
    "count_vectors",
    "expected_loo_agreement",
    "expected_noise_ceiling",
    "loo_agreement",
    "noise_ceiling",
    "noise_ceiling_details",
]


def loo_agreement(counts: np.ndarray) -> np.ndarray:
    """Leave-one-out majority agreement of response counts, one row ``(n1, n2, n3)`` per
    triplet: each response left out in turn and predicted by the most frequent answer
    among the rest, ties sharing the credit, averaged over the row's responses (NaN for
    rows with fewer than two responses)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[1] != 3 or (counts < 0).any():
        raise ValueError(f"counts must be an (n, 3) array of counts >= 0, got {counts.shape}")
    n_resp = counts.sum(axis=1)
    credit = np.zeros(counts.shape, dtype=np.float64)
    for x in range(3):
        rest = counts.copy()
        rest[:, x] -= 1  # leave one response for position x out
        winners = rest == rest.max(axis=1, keepdims=True)
        credit[:, x] = winners[:, x] / winners.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = (counts * credit).sum(axis=1) / n_resp
    agreement[n_resp < 2] = np.nan
    return agreement


@lru_cache(maxsize=256)
def _design(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every count vector of k responses, its LOO agreement and log multinomial
    coefficient (read-only arrays, cached per k)."""
    counts = count_vectors(k)
    log_coef = gammaln(k + 1) - gammaln(counts + 1).sum(axis=1)
    arrays = (counts, loo_agreement(counts), log_coef)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def count_vectors(k: int) -> np.ndarray:
    """All ``(n1, n2, n3)`` of non-negative integers with ``n1 + n2 + n3 = k``, shape
    ``((k + 1)(k + 2) / 2, 3)``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    n1, n2 = np.triu_indices(k + 1)  # n1 <= n2: n1 = first, n2 - n1 = second
    return np.stack([n1, n2 - n1, k - n2], axis=1).astype(np.int64)


def expected_loo_agreement(probabilities: np.ndarray, n_responses: np.ndarray) -> np.ndarray:
    """Exact expected leave-one-out agreement per triplet of a model that answers triplet
    ``t`` ``n_responses[t]`` times independently with the probabilities ``probabilities[t]``
    (one per position): ``sum_counts P(counts) x loo_agreement(counts)`` over the
    multinomial count vectors. NaN where a triplet has fewer than two responses."""
    p = np.asarray(probabilities, dtype=np.float64)
    k = np.asarray(n_responses)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must have shape (n, 3), got {p.shape}")
    if k.shape != (p.shape[0],) or not np.issubdtype(k.dtype, np.integer) or (k < 0).any():
        raise ValueError(f"n_responses must be {p.shape[0]} integers >= 0, got shape {k.shape}")
    if not (np.isfinite(p).all() and (p >= 0).all()) or not np.allclose(p.sum(axis=1), 1):
        raise ValueError("every row of probabilities must be >= 0 and sum to 1")
    out = np.full(p.shape[0], np.nan)
    for size in np.unique(k[k >= 2]):
        rows = np.flatnonzero(k == size)
        counts, agreement, log_coef = _design(int(size))
        # log P(counts | p) for every count vector (rows) and triplet (columns); 0 log 0 = 0
        log_pmf = log_coef[:, None] + xlogy(counts[:, None, :], p[None, rows, :]).sum(axis=2)
        out[rows] = agreement @ np.exp(log_pmf)
    return out


def expected_noise_ceiling(probabilities: np.ndarray, n_responses: np.ndarray) -> float:
    """The model's expected noise ceiling: :func:`expected_loo_agreement` averaged over the
    triplets with at least two responses, as :func:`noise_ceiling` averages the humans'."""
    per_triplet = expected_loo_agreement(probabilities, n_responses)
    repeated = np.asarray(n_responses) >= 2
    if not repeated.any():
        raise ValueError("no triplet has two or more responses: the noise ceiling is undefined")
    return float(per_triplet[repeated].mean())


def noise_ceiling_details(triplets: Triplets) -> pd.DataFrame:
    """Leave-one-out majority agreement per unique unordered triplet.

    Returns
    -------
    DataFrame with one row per unique triplet (sorted by concept indices) and columns
    ``i, j, k`` (concepts, ``i < j < k``), ``n_responses``, ``n_i, n_j, n_k`` (how often
    each was chosen as odd one out) and ``agreement`` (the leave-one-out credit averaged over
    the triplet's responses; NaN for triplets with a single response).
    """
    if len(triplets) == 0:
        raise ValueError("no triplets: the noise ceiling needs repeated triplets")
    keys = triplets.sorted_keys()
    uniq, first_row, inverse = np.unique(keys, return_index=True, return_inverse=True)
    sorted_ids = np.sort(triplets.ids, axis=1)
    chosen = triplets.odd_concept()
    position = np.argmax(sorted_ids == chosen[:, None], axis=1)  # 0-2 within the sorted triple
    u = uniq.size
    counts = np.bincount(inverse * 3 + position, minlength=3 * u).reshape(u, 3)
    n_resp = counts.sum(axis=1)
    agreement = loo_agreement(counts)
    ijk = sorted_ids[first_row]
    return pd.DataFrame(
        {
            "i": ijk[:, 0],
            "j": ijk[:, 1],
            "k": ijk[:, 2],
            "n_responses": n_resp,
            "n_i": counts[:, 0],
            "n_j": counts[:, 1],
            "n_k": counts[:, 2],
            "agreement": agreement,
        }
    )


def noise_ceiling(triplets: Triplets) -> float:
    """Mean leave-one-out majority agreement over triplets with at least two responses.

    Raises
    ------
    ValueError if no unordered triplet has two or more responses.
    """
    details = noise_ceiling_details(triplets)
    repeated = details["n_responses"].to_numpy() >= 2
    if not repeated.any():
        raise ValueError(
            f"no triplet has two or more responses ({len(triplets)} responses on "
            f"{len(details)} distinct triplets): the noise ceiling is undefined"
        )
    return float(details["agreement"].to_numpy()[repeated].mean())
