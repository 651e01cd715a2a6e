"""Human noise ceiling of odd-one-out data (docs/method.md §1).

For every unique unordered triplet with at least two responses, each response is left out in
turn and predicted by the majority of the remaining responses; ties share the credit
(1 / number of tied winners). The per-response credits are averaged within the triplet, then
the per-triplet values are averaged over triplets. Responses are compared by the CONCEPT
chosen as odd one out, so the same triplet shown in different orders is pooled correctly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelrecovery.data.triplets import Triplets

__all__ = ["noise_ceiling", "noise_ceiling_details"]


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
    credit = np.zeros((u, 3), dtype=np.float64)
    for x in range(3):
        rest = counts.copy()
        rest[:, x] -= 1  # leave one response for concept x out
        winners = rest == rest.max(axis=1, keepdims=True)
        credit[:, x] = winners[:, x] / winners.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = (counts * credit).sum(axis=1) / n_resp
    agreement[n_resp < 2] = np.nan
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
