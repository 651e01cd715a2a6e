"""Stage ``calibrate``: T of a logged probe (an MLflow run with a ``probe`` model,
``--run-id``) or of a zero-shot model (W = I) of a feature file (``--features``) on the
repeated human triplets, under the calibration rule ``--calibration``
(:func:`modelrecovery.study.calibration.calibrate`)."""

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
        run = mlflow.get_run(run_id)
    except MlflowException as err:
        if getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ValueError(
                f"--run-id {run_id}: no such run in the tracking store {uri} "
                "(MLFLOW_TRACKING_URI chooses the store)"
            ) from None
        raise
    if run.info.status != "FINISHED":  # a fit that failed or was stopped logged no probe
        raise ValueError(
            f"--run-id {run_id}: the run {run.info.status} (a fit that did not finish logs "
            "no probe to calibrate); give the id of a FINISHED fit run"
        )
    return run


def repeated_triplets(path, *, format: str, sortindex: str | None, n_concepts: int | None):
    """The repeated set of ``path``: a THINGS 2023 file's repeated set, else (with the
    number of concepts known, i.e. with ``--features``) the whole file as repeated
    triplets."""
    from modelrecovery.data.loaders import detect_format, load_triplets
    from modelrecovery.study.inputs import load_human_data

    fmt = detect_format(path) if format == "auto" else format
    if fmt == "things2023" or n_concepts is None:
        human = load_human_data(path, format=fmt, sortindex=sortindex, n_concepts=n_concepts)
        if human.test is None:
            raise ValueError(f"{path}: no repeated test set to calibrate on")
        return human.test
    return load_triplets(path, format=fmt, sortindex=sortindex, n_concepts=n_concepts)


def cmd_calibrate(args: argparse.Namespace) -> dict:
    """Calibrate T of a logged probe, or of a feature file's zero-shot model (W = I), on
    the repeated triplets: T, the calibration rule, and at T the model's expected accuracy
    and expected LOO noise ceiling beside the human LOO ceiling (and the target)."""
    from modelrecovery.data.ceiling import noise_ceiling
    from modelrecovery.study.calibration import calibrate, check_ceiling
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    check_ceiling(args.ceiling)
    device = require_device(args.device, "--device")
    if args.features is not None:
        from pathlib import Path

        from modelrecovery.features.io import load_features

        z = load_features(args.features).astype(np.float64)  # zero-shot: Z = X (W = I)
        repeated = repeated_triplets(
            args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=z.shape[0]
        )
        tracker = MLflowTracker(args.experiment)
        model, family = Path(args.features).stem, "zero_shot"
    else:
        repeated = repeated_triplets(
            args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=None
        )
        run = find_run(args.run_id)
        tracker = MLflowTracker(args.experiment)
        model = run.data.tags.get("model", "model")
        family = run.data.tags.get("family", "full")
        local = tracker.artifacts(args.run_id, "probe")
        z = np.load(next(local.rglob("z.npy")))
    try:
        noise_ceiling(repeated)
    except ValueError as err:
        raise ValueError(f"{args.triplets}: {err}") from None
    try:
        result = calibrate(
            z,
            repeated,
            tracker=tracker,
            model=model,
            level=family,
            ceiling=args.ceiling,
            device=device,
            calibration=args.calibration,
        )
    except ValueError as err:  # a target the model cannot reach: name the model
        source = args.features if args.features is not None else f"run {args.run_id}"
        raise ValueError(f"{source}: {err}") from None
    return {
        "temperature": result["temperature"],
        "calibration": args.calibration,
        "expected_accuracy": result["expected_accuracy"],
        "expected_loo_ceiling": result["expected_loo_ceiling"],
        "human_loo_ceiling": result["human_loo_ceiling"],
        "target": result["ceiling"],
        "n_responses": len(repeated),
        "n_triplets": int(len(np.unique(repeated.sorted_keys()))),
    }
