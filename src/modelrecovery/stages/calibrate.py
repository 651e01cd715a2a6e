"""Stage ``calibrate``: T of a logged probe (an MLflow run with a ``probe`` model) on the
repeated human triplets (:func:`modelrecovery.study.calibration.calibrate`)."""

from __future__ import annotations

import argparse

import mlflow
import numpy as np

from modelrecovery.devices import require_device


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
    """Calibrate T of a logged probe on the repeated test triplets."""
    from modelrecovery.study.calibration import calibrate, check_ceiling
    from modelrecovery.study.inputs import load_human_data
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    check_ceiling(args.ceiling)
    device = require_device(args.device, "--device")
    human = load_human_data(args.triplets, format=args.format, sortindex=args.sortindex)
    if human.test is None:
        raise ValueError(f"{args.triplets}: no repeated test set to calibrate on")
    run = find_run(args.run_id)
    tracker = MLflowTracker(args.experiment)
    model = run.data.tags.get("model", "model")
    family = run.data.tags.get("family", "full")
    local = tracker.artifacts(args.run_id, "probe")
    z = np.load(next(local.rglob("z.npy")))
    return calibrate(
        z,
        human.test,
        tracker=tracker,
        model=model,
        level=family,
        ceiling=args.ceiling,
        device=device,
    )
