"""Temperature calibration: with W fixed, the temperature T at which the model is as noisy
as people (docs/science/method.md §3), recorded as a run ``calibrate/<model>/<level>``: under
``study`` its expected agreement with its own most likely response, under ``loo_matched``
its own expected leave-one-out noise ceiling on the repeated set, equals the human noise
ceiling. Either way the run logs both statistics at the chosen T beside the human ceiling."""

from __future__ import annotations

import numpy as np
import torch

from modelrecovery.data.ceiling import noise_ceiling
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.calibrate import calibrate_temperature, calibration_statistics
from modelrecovery.study.tracker import Run, Tracker, standard_tags
from modelrecovery.study.tracking_names import CALIBRATE


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
    calibration: str = "study",
) -> dict[str, float]:
    """T for transformed features ``z`` on the repeated set; the ceiling is computed from
    the repeated responses unless given. ``calibration`` ``study``: the mean over responses
    (every response one row, so a triplet weighs as many responses as it has) of max P
    equals the ceiling; ``loo_matched``: the model's exact expected LOO ceiling with each
    triplet's own number of responses, averaged as the human ceiling is. The triplet
    similarities are computed on ``device``. Returns ``temperature``, ``ceiling`` (the
    target), ``achieved_agreement`` (the matched statistic at T), ``expected_accuracy``,
    ``expected_loo_ceiling`` and ``human_loo_ceiling`` (measured on ``repeated``)."""
    check_ceiling(ceiling)
    device = require_device(device, "device")
    human_loo = noise_ceiling(repeated)
    source = "given"
    if ceiling is None:
        ceiling, source = human_loo, "repeated triplets"
        if not 1 / 3 < ceiling < 1:  # nothing to match: say where it came from
            raise ValueError(
                f"the noise ceiling measured from the data ({len(repeated)} repeated "
                f"responses) is {ceiling:.3g}, not in (1/3, 1): "
                + (
                    "below chance, the repeats disagree as random answers would; "
                    if ceiling <= 1 / 3
                    else "every repeat agrees; "
                )
                + "give the ceiling instead (calibrate --ceiling, or probe.ceiling in "
                "a study config)"
            )
    z_here = torch.as_tensor(z, dtype=torch.float64).to(device)
    temperature, achieved = calibrate_temperature(
        z_here, repeated, ceiling, calibration=calibration
    )
    n_unique = len(np.unique(repeated.sorted_keys()))
    result = {
        "temperature": temperature,
        "achieved_agreement": achieved,
        "ceiling": ceiling,
        **calibration_statistics(z_here, repeated, temperature),
        "human_loo_ceiling": human_loo,
    }
    params = {
        "calibration": calibration,
        "ceiling_source": source,
        "n_responses": len(repeated),
        "n_triplets": n_unique,
        "device": device,
    }
    tags = standard_tags(CALIBRATE.stage, model, level)
    name = CALIBRATE.run_name(model=model, level=level)
    with tracker.run(name, tags=tags, params=params, parent=parent) as run:
        run.log_metrics(result)
    return result
