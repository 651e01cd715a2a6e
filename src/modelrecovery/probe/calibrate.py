"""Noise calibration (docs/science/method.md §3): choose T so that the model is as noisy as people.

Two rules (``calibration``, :data:`modelrecovery.study.spec.CALIBRATIONS`):

- ``study``: the model's expected agreement with its own most likely response (mean over
  the repeated responses of max P) equals the human noise ceiling, as the study did;
- ``loo_matched``: the model's expected leave-one-out noise ceiling on the repeated set,
  each triplet with its own number of responses (computed exactly over the multinomial
  counts, :func:`modelrecovery.data.ceiling.expected_noise_ceiling`), equals the human one:
  the statistic the ceiling measures. Its synthetic data are as noisy as the humans'; the
  study's rule gives noisier data, as the majority of the other responses is itself noisy.

Both statistics fall as T grows: softmax(s / T) at a larger T is majorised by the one at a
smaller T (its ordered ratios exp((s_i - s_j) / T) shrink toward 1), max P is Schur-convex
and so, checked numerically on a grid (tests/test_calibration_loo.py), is the expected LOO
agreement of every triplet. The root is found by Brent's method inside a bracket whose ends
are checked to straddle it, so the result hits the target even where that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import brentq

from modelrecovery.data.ceiling import expected_noise_ceiling, noise_ceiling_details
from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import _triplet_logits
from modelrecovery.study.spec import CALIBRATIONS


def expected_agreement(logits: torch.Tensor | np.ndarray, temperature: float) -> float:
    """Mean over triplets of max_i P(i) for logits (similarities, (m, 3)) at ``temperature``."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    return float(torch.softmax(x / temperature, dim=1).max(dim=1).values.mean())


class RepeatedDesign:
    """A model on a repeated set: the similarities of every response's triplet (for the
    expected accuracy, averaged over responses) and of every distinct unordered triplet
    with its number of responses (for the expected LOO ceiling, averaged as the human
    ceiling is)."""

    def __init__(self, z: torch.Tensor | np.ndarray, triplets: Triplets) -> None:
        if len(triplets) == 0:
            raise ValueError("calibration needs at least one triplet")
        z = torch.as_tensor(z, dtype=torch.float64)
        self.logits = _triplet_logits(z, triplets, 1.0)
        details = noise_ceiling_details(triplets)
        unique = Triplets(
            details[["i", "j", "k"]].to_numpy(np.int64),
            np.zeros(len(details), dtype=np.int64),
            triplets.n_concepts,
        )
        self.n_responses = details["n_responses"].to_numpy(np.int64)
        self.unique_logits = _triplet_logits(z, unique, 1.0)

    def expected_accuracy(self, temperature: float) -> float:
        """Mean over responses of the model's largest choice probability at T."""
        return expected_agreement(self.logits, temperature)

    def expected_loo(self, temperature: float) -> float:
        """The model's exact expected LOO noise ceiling at T on this repeated design."""
        x = torch.as_tensor(self.unique_logits) / temperature
        probs = torch.softmax(x, dim=1).cpu().numpy()
        return expected_noise_ceiling(probs, self.n_responses)

    def statistic(self, calibration: str) -> Callable[[float], float]:
        """The statistic a calibration rule matches, as a function of T."""
        if calibration not in CALIBRATIONS:
            raise ValueError(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}"
            )
        return self.expected_accuracy if calibration == "study" else self.expected_loo


def calibration_statistics(
    z: torch.Tensor | np.ndarray, triplets: Triplets, temperature: float
) -> dict[str, float]:
    """The model's expected accuracy (mean max P over responses) and expected LOO noise
    ceiling on the repeated ``triplets`` at ``temperature``."""
    design = RepeatedDesign(z, triplets)
    return {
        "expected_accuracy": design.expected_accuracy(temperature),
        "expected_loo_ceiling": design.expected_loo(temperature),
    }


def calibrate_temperature(
    z: torch.Tensor | np.ndarray,
    triplets: Triplets,
    target: float,
    *,
    calibration: str = "study",
    xtol: float = 1e-12,
    tol: float = 1e-6,
) -> tuple[float, float]:
    """Temperature T at which the statistic of ``calibration`` equals ``target`` on the
    repeated ``triplets``: ``study``, mean_t max_i P_T(i | t) over the responses;
    ``loo_matched``, the model's exact expected LOO noise ceiling.

    ``z`` are the transformed features (Z = X W) of all concepts. Both statistics fall
    from (nearly) 1 as T -> 0 to 1/3 as T -> infinity (module docstring), so T is the root
    of a 1-D function, found by Brent's method on log T in a bracket that is widened until
    its ends straddle the target. Returns (T, achieved statistic).

    Raises
    ------
    ValueError if ``target`` is not in (1/3, 1), or the model cannot reach it (for example
    identical similarities within every triplet, or ties that cap its T -> 0 limit).
    """
    if not (isinstance(target, int | float) and 1 / 3 < target < 1):
        raise ValueError(f"ceiling must lie in (1/3, 1), got {target!r}")
    design = RepeatedDesign(z, triplets)
    statistic = design.statistic(calibration)
    logits = design.logits
    spread = float((logits.max(1).values - logits.min(1).values).max())
    if spread <= 0:
        raise ValueError("all similarities are equal within every triplet: T cannot be calibrated")
    name = "agreement" if calibration == "study" else "expected LOO ceiling"

    def gap(log_t: float) -> float:
        return statistic(math.exp(log_t)) - target

    lo, hi = math.log(spread) - 5.0, math.log(spread) + 5.0
    for _ in range(60):
        if gap(lo) > 0:
            break
        lo -= 5.0
    for _ in range(60):
        if gap(hi) < 0:
            break
        hi += 5.0
    if not (gap(lo) > 0 > gap(hi)):
        raise ValueError(
            f"calibration {calibration}: the model's {name} spans "
            f"[{gap(hi) + target:.4f}, {gap(lo) + target:.4f}] and cannot reach the ceiling "
            f"{target:.4f}"
        )
    log_t = brentq(gap, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=500)
    temperature = math.exp(log_t)
    achieved = statistic(temperature)
    if abs(achieved - target) > tol:
        raise ValueError(f"calibration reached {achieved:.8f}, not {target} within {tol}")
    return temperature, achieved
