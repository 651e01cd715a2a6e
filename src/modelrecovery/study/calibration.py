"""Temperature calibration: with W fixed, the temperature T at which the model's
expected agreement with its own most likely response equals the human noise ceiling
(docs/method.md §3), recorded as a run ``calibrate/<model>/<level>``."""

from __future__ import annotations

import numpy as np
import torch

from modelrecovery.data.ceiling import noise_ceiling
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.calibrate import calibrate_temperature
from modelrecovery.study.tracker import Run, Tracker, standard_tags


def check_ceiling(ceiling: float | None) -> None:
    """A given ceiling must lie in (1/3, 1)."""
    if ceiling is not None and not (1 / 3 < ceiling < 1):
        raise ValueError(f"ceiling must lie in (1/3, 1), got {ceiling}")


def calibrate(
    z: np.ndarray,
    repeated: Triplets,
    *,
    tracker: Tracker,
    model: str,
    level: str,
    ceiling: float | None = None,
    parent: Run | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """T for transformed features ``z`` on the repeated set, every response one row, so a
    triplet weighs as many responses as it has (the study's calibration averages over
    responses); the ceiling is computed from the repeated responses unless given. The
    triplet similarities are computed on ``device``. Returns ``temperature``,
    ``achieved_agreement`` and ``ceiling``."""
    check_ceiling(ceiling)
    device = require_device(device, "device")
    source = "given"
    if ceiling is None:
        ceiling, source = noise_ceiling(repeated), "repeated triplets"
    z_here = torch.as_tensor(z, dtype=torch.float64).to(device)
    temperature, achieved = calibrate_temperature(z_here, repeated, ceiling)
    n_unique = len(np.unique(repeated.sorted_keys()))
    result = {"temperature": temperature, "achieved_agreement": achieved, "ceiling": ceiling}
    params = {
        "ceiling_source": source,
        "n_responses": len(repeated),
        "n_triplets": n_unique,
        "device": device,
    }
    tags = standard_tags("calibrate", model, level)
    with tracker.run(f"calibrate/{model}/{level}", tags=tags, params=params, parent=parent) as run:
        run.log_metrics(result)
    return result
