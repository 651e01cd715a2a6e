"""Model-discriminating triplet selection (beyond the paper, docs/science/method.md §6).

The recovery grid's training triplets are drawn uniformly (``random``, the study). An
experimenter who knows the candidate models can do better: from a large random pool of
triplets, ask those on which the candidates' predictions disagree most, so that the
responses tell the candidates apart.

How disagreement is measured (per triplet, vectorised over candidates and triplets; no
Python loop over triplets):

- ``mi``: the mutual information between the response y and the model identity m under a
  uniform prior over the C candidates, I(y; m) = H(mean_c p_c) - mean_c H(p_c) (nats),
  the expected information gain of one response (the generalised Jensen-Shannon
  divergence of the C predictive distributions with equal weights). The default.
- ``js``: the mean pairwise Jensen-Shannon divergence over the C (C - 1) / 2 pairs.

Designs:

- ``discriminating`` (one-shot): before any data, score every pool triplet under the
  candidates' probes fitted to the human data and keep the N best (:func:`one_shot`).
- ``sequential``: in batches; the first batch is the one-shot design of its size under the
  human-fitted probes; after each batch the experimenter collects its responses, refits
  every candidate on the triplets so far and scores the rest of the pool under the
  refitted probes (:func:`sequential`). With one batch it is the one-shot design.

The design sees only what an experimenter has: the pool, the candidates' predictions and
the responses collected so far (through the ``collect`` callback); never the generator's
identity. Ties in the score go to the earlier pool triplet (the pool's order is random,
seeded by the job), so designs are reproducible.

This module is pure (arrays in, arrays out); the recovery job (:mod:`.job`) supplies the
pool, the probes and the refits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DESIGN_SCORES",
    "Design",
    "batch_sizes",
    "design_score",
    "mean_pairwise_js",
    "mutual_information",
    "odd_one_out_probabilities",
    "one_shot",
    "sequential",
    "top_k",
]

_EPS = 1e-300


def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) over the last axis; 0 log 0 = 0."""
    return -(p * np.log(np.maximum(p, _EPS))).sum(-1)


def _check_probabilities(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[-1] != 3:
        raise ValueError(f"expected (candidates, triplets, 3) probabilities, got {probs.shape}")
    if probs.shape[0] < 1:
        raise ValueError("expected at least one candidate's probabilities")
    if not np.isfinite(probs).all():
        raise ValueError("candidate probabilities hold NaN or inf")
    return probs


def mutual_information(probs: np.ndarray) -> np.ndarray:
    """I(response; model) per triplet under a uniform prior over candidates (nats).

    ``probs``: (C, M, 3) predictive distributions of C candidates on M triplets. Between 0
    (all candidates agree) and min(log C, log 3)."""
    probs = _check_probabilities(probs)
    mixture = probs.mean(axis=0)
    return np.maximum(_entropy(mixture) - _entropy(probs).mean(axis=0), 0.0)


def mean_pairwise_js(probs: np.ndarray) -> np.ndarray:
    """Mean Jensen-Shannon divergence (nats) over the candidate pairs, per triplet."""
    probs = _check_probabilities(probs)
    c = probs.shape[0]
    if c < 2:
        return np.zeros(probs.shape[1])
    a, b = np.triu_indices(c, 1)
    pa, pb = probs[a], probs[b]  # (pairs, M, 3)
    mid = 0.5 * (pa + pb)
    js = _entropy(mid) - 0.5 * (_entropy(pa) + _entropy(pb))
    return np.maximum(js, 0.0).mean(axis=0)


DESIGN_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mi": mutual_information,
    "js": mean_pairwise_js,
}


def design_score(probs: np.ndarray, score: str = "mi") -> np.ndarray:
    """The disagreement score of every triplet (``mi`` or ``js``, module docstring)."""
    if score not in DESIGN_SCORES:
        raise ValueError(f"design score must be one of {tuple(DESIGN_SCORES)}, got {score!r}")
    return DESIGN_SCORES[score](probs)


def odd_one_out_probabilities(z: np.ndarray, ids: np.ndarray, temperature: float) -> np.ndarray:
    """P(odd = position) of the dot-product model with transformed features ``z`` (all
    concepts) on triplets ``ids`` (M, 3), in float64 (docs/science/method.md §2)."""
    z = np.asarray(z, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    i, j, k = ids[:, 0], ids[:, 1], ids[:, 2]
    used = np.unique(ids)
    if len(used) ** 2 <= len(ids) * z.shape[1]:  # many triplets: one Gram matrix, gathered
        local = np.searchsorted(used, ids)
        zu = z[used]
        s = zu @ zu.T
        i, j, k = local[:, 0], local[:, 1], local[:, 2]
        logits = np.stack([s[j, k], s[i, k], s[i, j]], axis=1)
    else:  # few triplets: three dot products each
        a, b, c = z[i], z[j], z[k]
        logits = np.stack([(b * c).sum(1), (a * c).sum(1), (a * b).sum(1)], axis=1)
    logits = logits / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties to the smaller index."""
    scores = np.asarray(scores, dtype=np.float64)
    k = int(k)
    if not 0 <= k <= scores.size:
        raise ValueError(f"cannot choose {k} of {scores.size} triplets")
    return np.argsort(-scores, kind="stable")[:k]


def one_shot(probs: np.ndarray, n: int, score: str = "mi") -> np.ndarray:
    """The one-shot design: indices (into the pool) of the ``n`` triplets with the largest
    disagreement under ``probs`` (C, M, 3), best first."""
    return top_k(design_score(probs, score), n)


def batch_sizes(n: int, n_batches: int) -> list[int]:
    """``n`` split into ``min(n_batches, n)`` near-equal batches, larger ones first."""
    if n < 1 or n_batches < 1:
        raise ValueError(f"need n >= 1 and n_batches >= 1, got {n} and {n_batches}")
    b = min(int(n_batches), int(n))
    return [len(part) for part in np.array_split(np.arange(n), b)]


@dataclass
class Design:
    """A design's outcome: the chosen pool indices in the order asked, the responses
    collected, and its costs per batch (seconds to score the pool and choose; seconds to
    refit the candidates before the batch, 0 for the first)."""

    chosen: np.ndarray
    responses: np.ndarray
    select_seconds: list[float] = field(default_factory=list)
    refit_seconds: list[float] = field(default_factory=list)
    scored: list[int] = field(default_factory=list)  # pool triplets scored per batch


def sequential(
    pool: np.ndarray,
    n: int,
    n_batches: int,
    prior: np.ndarray,
    collect: Callable[[np.ndarray, int], np.ndarray],
    refit: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    score: str = "mi",
) -> Design:
    """A sequential design of ``n`` triplets from ``pool`` (M, 3) in ``n_batches`` batches.

    Parameters
    ----------
    pool : the candidate triplets (M, 3).
    n : triplets to choose (at most M).
    n_batches : batches (one batch: the one-shot design, :func:`one_shot`).
    prior : (C, M, 3) the candidates' predictions on the pool before any data.
    collect : ``collect(ids, batch) -> responses``: asks the batch's triplets (the only
        contact with the data-generating process).
    refit : ``refit(ids_so_far, responses_so_far, rest) -> (C, len(rest), 3)``: the
        candidates refitted on the data so far, predicting the rest of the pool. Needed
        when ``n_batches`` > 1.
    score : ``mi`` or ``js``.
    """
    pool = np.asarray(pool)
    if n > len(pool):
        raise ValueError(f"cannot choose {n} triplets from a pool of {len(pool)}")
    prior = _check_probabilities(prior)
    if prior.shape[1] != len(pool):
        raise ValueError(f"prior covers {prior.shape[1]} triplets, the pool has {len(pool)}")
    sizes = batch_sizes(n, n_batches)
    if len(sizes) > 1 and refit is None:
        raise ValueError("a sequential design with several batches needs a refit")
    rest = np.arange(len(pool))
    chosen: list[np.ndarray] = []
    responses: list[np.ndarray] = []
    design = Design(np.empty(0, np.int64), np.empty(0, np.int8))
    probs = prior
    for b, size in enumerate(sizes):
        refit_s = 0.0
        if b > 0:
            tic = time.perf_counter()
            so_far = np.concatenate(chosen)
            probs = _check_probabilities(refit(pool[so_far], np.concatenate(responses), pool[rest]))
            refit_s = time.perf_counter() - tic
            if probs.shape[1] != len(rest):
                raise ValueError(f"refit predicted {probs.shape[1]} triplets, not {len(rest)}")
        tic = time.perf_counter()
        local = one_shot(probs, size, score)
        picked = rest[local]
        design.select_seconds.append(time.perf_counter() - tic)
        design.refit_seconds.append(refit_s)
        design.scored.append(len(rest))
        chosen.append(picked)
        responses.append(np.asarray(collect(pool[picked], b)))
        keep = np.ones(len(rest), dtype=bool)
        keep[local] = False
        rest = rest[keep]
    design.chosen = np.concatenate(chosen).astype(np.int64)
    design.responses = np.concatenate(responses)
    return design


def concentration(ids: np.ndarray, concepts: Sequence[int]) -> float:
    """Share of triplets ``ids`` (M, 3) that involve at least one of ``concepts``."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        return float("nan")
    return float(np.isin(ids, np.asarray(list(concepts))).any(axis=1).mean())
