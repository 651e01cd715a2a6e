"""Noise calibration (docs/method.md §3): choose T so that the model's expected
agreement with its own most likely response equals the human noise ceiling."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import _triplet_logits


def expected_agreement(logits: torch.Tensor | np.ndarray, temperature: float) -> float:
    """Mean over triplets of max_i P(i) for logits (similarities, (m, 3)) at ``temperature``."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    return float(torch.softmax(x / temperature, dim=1).max(dim=1).values.mean())


def calibrate_temperature(
    z: torch.Tensor | np.ndarray,
    triplets: Triplets,
    target: float,
    *,
    xtol: float = 1e-12,
    tol: float = 1e-6,
) -> tuple[float, float]:
    """Temperature T with mean_t max_i P_T(i | t) = ``target`` on ``triplets``.

    ``z`` are the transformed features (Z = X W) of all concepts. The expected agreement
    falls monotonically from (nearly) 1 as T -> 0 to 1/3 as T -> infinity, so T is the root
    of a 1-D function, found by Brent's method on log T. Returns (T, achieved agreement).

    Raises
    ------
    ValueError if ``target`` is not in (1/3, 1), or the model cannot reach it (for example
    identical similarities within every triplet).
    """
    if not (isinstance(target, int | float) and 1 / 3 < target < 1):
        raise ValueError(f"ceiling must lie in (1/3, 1), got {target!r}")
    if len(triplets) == 0:
        raise ValueError("calibration needs at least one triplet")
    logits = _triplet_logits(torch.as_tensor(z, dtype=torch.float64), triplets, 1.0)
    spread = float((logits.max(1).values - logits.min(1).values).max())
    if spread <= 0:
        raise ValueError("all similarities are equal within every triplet: T cannot be calibrated")

    def gap(log_t: float) -> float:
        return expected_agreement(logits, math.exp(log_t)) - target

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
            f"the model's agreement spans [{gap(hi) + target:.4f}, {gap(lo) + target:.4f}] "
            f"and cannot reach the ceiling {target}"
        )
    log_t = brentq(gap, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=500)
    temperature = math.exp(log_t)
    achieved = expected_agreement(logits, temperature)
    if abs(achieved - target) > tol:
        raise ValueError(f"calibration reached {achieved:.8f}, not {target} within {tol}")
    return temperature, achieved
