"""Stage ``calibrate``: with W fixed, the temperature T at which the model's expected
agreement with its own most likely response equals the human noise ceiling."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
import numpy as np
import torch

from modelrecovery.data.noise_ceiling import noise_ceiling
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.calibrate import calibrate_temperature
from modelrecovery.tracking import setup_experiment, standard_tags


def check_ceiling(ceiling: float | None) -> None:
    """A given ceiling must lie in (1/3, 1)."""
    if ceiling is not None and not (1 / 3 < ceiling < 1):
        raise ValueError(f"ceiling must lie in (1/3, 1), got {ceiling}")


def calibrate_and_log(
    z: np.ndarray,
    repeated: Triplets,
    *,
    model: str,
    family: str,
    ceiling: float | None = None,
    nested: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    """T for transformed features ``z`` on the repeated set, every response one row, so a
    triplet weighs as many responses as it has (the study's calibration averages over
    responses); the ceiling is computed from the repeated responses unless given. The
    triplet similarities are computed on ``device``. Logged as a run
    ``calibrate/<model>/<family>``."""
    check_ceiling(ceiling)
    device = require_device(device, "device")
    source = "given"
    if ceiling is None:
        ceiling, source = noise_ceiling(repeated), "repeated triplets"
    z_here = torch.as_tensor(z, dtype=torch.float64).to(device)
    temperature, achieved = calibrate_temperature(z_here, repeated, ceiling)
    n_unique = len(np.unique(repeated.sorted_keys()))
    result = {"temperature": temperature, "achieved_agreement": achieved, "ceiling": ceiling}
    tags = standard_tags("calibrate", model, family)
    with mlflow.start_run(run_name=f"calibrate/{model}/{family}", nested=nested, tags=tags):
        mlflow.log_params(
            {
                "ceiling_source": source,
                "n_responses": len(repeated),
                "n_triplets": n_unique,
                "device": device,
            }
        )
        mlflow.log_metrics(result)
    return result


def find_run(run_id: str) -> mlflow.entities.Run:
    """The MLflow run ``run_id`` of the tracking store in use; a one-line error naming the
    store when there is no such run."""
    from mlflow.exceptions import MlflowException

    from modelrecovery.tracking import tracking_uri

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.get_run(run_id)
    except MlflowException as err:
        if getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ValueError(
                f"--run-id {run_id}: no such run in the tracking store {uri} "
                "(MLFLOW_TRACKING_URI chooses the store)"
            ) from None
        raise


def cmd_calibrate(args: argparse.Namespace) -> dict:
    """Calibrate T of a logged probe (an MLflow run with a ``probe`` model) on the
    repeated test triplets."""
    import mlflow.pyfunc

    from modelrecovery.stages.common import load_human_data

    check_ceiling(args.ceiling)
    device = require_device(args.device, "--device")
    human = load_human_data(args.triplets, format=args.format, sortindex=args.sortindex)
    if human.test is None:
        raise ValueError(f"{args.triplets}: no repeated test set to calibrate on")
    run = find_run(args.run_id)
    setup_experiment(args.experiment)
    model = run.data.tags.get("model", "model")
    family = run.data.tags.get("family", "full")
    local = mlflow.artifacts.download_artifacts(run_id=args.run_id, artifact_path="probe")
    z = np.load(next(Path(local).rglob("z.npy")))
    return calibrate_and_log(
        z, human.test, model=model, family=family, ceiling=args.ceiling, nested=False, device=device
    )
