"""Simulated human odd-one-out behaviour from the embedding's dot-product model.

P(odd = i) = softmax((S_jk, S_ik, S_ij) / T) with S = E Eᵀ, and T the root of "expected noise
ceiling of the repeated set = target" (0.678, THINGS test set 2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln

from modelrecovery.data.ceiling import noise_ceiling
from modelrecovery.data.sampling import sample_responses, sample_triplets
from modelrecovery.data.triplets import Triplets
from modelrecovery.world.config import (
    STREAM_CEILING,
    STREAM_CEILING_RESPONSES,
    STREAM_SUBJECTS,
    STREAM_TRAIN,
    STREAM_TRAIN_RESPONSES,
    WorldConfig,
)

__all__ = [
    "HumanBehaviour",
    "calibrate_temperature",
    "expected_noise_ceiling",
    "human_behaviour",
    "odd_one_out_probabilities",
]


def odd_one_out_probabilities(
    embedding: np.ndarray, ids: np.ndarray, temperature: float
) -> np.ndarray:
    """Dot-product model: P(odd = position a) = softmax over (S_jk, S_ik, S_ij) / T.

    Parameters
    ----------
    embedding : (n, d) representation; S = embedding @ embedding.T.
    ids : (m, 3) concept indices.
    temperature : T > 0.

    Returns
    -------
    (m, 3) float64 probabilities, rows summing to 1.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    x = np.asarray(embedding, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    a, b, c = x[ids[:, 0]], x[ids[:, 1]], x[ids[:, 2]]
    logits = np.stack(
        [(b * c).sum(axis=1), (a * c).sum(axis=1), (a * b).sum(axis=1)], axis=1
    ) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _compositions(total: int) -> np.ndarray:
    """Every (a, b, c) of non-negative integers with a + b + c = total."""
    rows = [(a, b, total - a - b) for a in range(total + 1) for b in range(total - a + 1)]
    return np.asarray(rows, dtype=np.int64)


def expected_noise_ceiling(
    probabilities: np.ndarray, n_repeats: int, *, per_triplet: bool = False
) -> float | np.ndarray:
    """Expected leave-one-out majority agreement of ``n_repeats`` responses per triplet.

    The responses of a triplet are i.i.d. draws from its probabilities. For a held-out response
    x the other ``n_repeats - 1`` are multinomial; the credit is 1 / #winners when x is among
    the most frequent of the others (as in :func:`~modelrecovery.data.ceiling`). The
    expectation is computed exactly by enumerating the multinomial outcomes.

    Parameters
    ----------
    probabilities : (m, 3) response probabilities.
    n_repeats : responses per triplet (>= 2).
    per_triplet : return the (m,) values instead of their mean.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must have shape (m, 3), got {p.shape}")
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be at least 2, got {n_repeats}")
    rest = _compositions(n_repeats - 1)  # (K, 3) counts of the other responses
    log_coef = gammaln(n_repeats) - gammaln(rest + 1).sum(axis=1)  # (K,)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p)
        terms = rest[None, :, :] * log_p[:, None, :]
    terms[:, rest == 0] = 0.0  # 0 * log 0 = 0
    pmf = np.exp(log_coef[None, :] + terms.sum(axis=2))  # (m, K)
    winners = rest == rest.max(axis=1, keepdims=True)
    credit = winners / winners.sum(axis=1, keepdims=True)  # (K, 3)
    values = (p * (pmf @ credit)).sum(axis=1)
    return values if per_triplet else float(values.mean())


def calibrate_temperature(
    embedding: np.ndarray, ids: np.ndarray, n_repeats: int, target: float
) -> tuple[float, float]:
    """Temperature whose expected noise ceiling on the triplets ``ids`` equals ``target``.

    The expected ceiling (:func:`expected_noise_ceiling`) falls from near 1 (T -> 0) to 1/3
    (T -> infinity); the root is found on log T with :func:`scipy.optimize.brentq`.

    Returns
    -------
    (temperature, expected ceiling at that temperature).
    """

    def gap(log_t: float) -> float:
        probs = odd_one_out_probabilities(embedding, ids, math.exp(log_t))
        return float(expected_noise_ceiling(probs, n_repeats)) - target

    x = np.asarray(embedding, dtype=np.float64)
    spread = float(np.std(x @ x.T))
    lo = hi = math.log(spread if spread > 0 else 1.0)
    for _ in range(60):
        if gap(lo) > 0:
            break
        lo -= 1.0
    else:
        raise ValueError(
            f"no temperature reaches a noise ceiling of {target}: the triplets are too ambiguous "
            "(too many ties in the embedding's similarities)"
        )
    for _ in range(60):
        if gap(hi) < 0:
            break
        hi += 1.0
    else:  # pragma: no cover - the ceiling tends to 1/3 < target
        raise ValueError(f"no temperature brings the noise ceiling down to {target}")
    log_t = brentq(gap, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=200)
    t = math.exp(log_t)
    return t, gap(log_t) + target


@dataclass(frozen=True, eq=False)
class HumanBehaviour:
    """Simulated human odd-one-out data.

    Attributes
    ----------
    train : unique training triplets with one response each.
    ceiling_set : the repeated noise-ceiling set (each triplet ``n_ceiling_repeats`` times,
        every presentation in its own random order).
    temperature : T of the dot-product model.
    expected_ceiling : expected noise ceiling of the set at T.
    realised_ceiling : noise ceiling of the drawn responses.
    ceiling_draws : response draws of the set until the realised ceiling was within tolerance.
    """

    train: Triplets
    ceiling_set: Triplets
    temperature: float
    expected_ceiling: float
    realised_ceiling: float
    ceiling_draws: int


_MAX_CEILING_DRAWS = 200


def human_behaviour(config: WorldConfig, embedding: np.ndarray) -> HumanBehaviour:
    """Training triplets and a repeated noise-ceiling set from the embedding, seeded.

    1. ``n_ceiling_triplets`` unique triplets for the noise-ceiling set; T is calibrated so
       that their expected noise ceiling with ``n_ceiling_repeats`` responses is the target.
    2. The set's responses are drawn (each presentation in a random order); if the realised
       ceiling misses the target by more than the tolerance, the responses are drawn again
       from the next random stream (deterministic; the number of draws is recorded).
    3. ``n_train_triplets`` unique training triplets (none in the noise-ceiling set), one
       response each at the same T; subject ids uniform in 1..n_subjects.
    """
    n = config.n_concepts
    concepts = np.arange(n)
    seed = config.seed
    base = sample_triplets(
        concepts, config.n_ceiling_triplets, seed=np.random.default_rng([seed, STREAM_CEILING]),
        n_concepts=n,
    )  # fmt: skip
    temperature, expected = calibrate_temperature(
        embedding, base, config.n_ceiling_repeats, config.target_ceiling
    )
    repeated = np.repeat(base, config.n_ceiling_repeats, axis=0)
    best: tuple[float, Triplets, int] | None = None
    for draw in range(_MAX_CEILING_DRAWS):
        rng = np.random.default_rng([seed, STREAM_CEILING_RESPONSES, draw])
        shown = rng.permuted(repeated, axis=1)
        shown = shown[rng.permutation(shown.shape[0])]
        probs = odd_one_out_probabilities(embedding, shown, temperature)
        odd = sample_responses(probs, rng)
        subject = rng.integers(1, config.n_subjects + 1, size=shown.shape[0])
        candidate = Triplets(shown, odd, n, subject=subject)
        realised = noise_ceiling(candidate)
        if best is None or abs(realised - config.target_ceiling) < abs(
            best[0] - config.target_ceiling
        ):
            best = (realised, candidate, draw + 1)
        if abs(realised - config.target_ceiling) <= config.ceiling_tolerance:
            break
    assert best is not None
    realised, ceiling_set, draws = best
    if abs(realised - config.target_ceiling) > config.ceiling_tolerance:
        warnings.warn(
            f"world: realised noise ceiling {realised:.4f} misses the target "
            f"{config.target_ceiling} by more than {config.ceiling_tolerance} after "
            f"{_MAX_CEILING_DRAWS} draws; use more noise-ceiling triplets or repeats",
            stacklevel=2,
        )
    train_ids = sample_triplets(
        concepts, config.n_train_triplets, seed=np.random.default_rng([seed, STREAM_TRAIN]),
        n_concepts=n, exclude=base,
    )  # fmt: skip
    rng = np.random.default_rng([seed, STREAM_TRAIN_RESPONSES])
    odd = sample_responses(odd_one_out_probabilities(embedding, train_ids, temperature), rng)
    subject = np.random.default_rng([seed, STREAM_SUBJECTS]).integers(
        1, config.n_subjects + 1, size=train_ids.shape[0]
    )
    train = Triplets(train_ids, odd, n, subject=subject)
    return HumanBehaviour(train, ceiling_set, temperature, expected, realised, draws)
