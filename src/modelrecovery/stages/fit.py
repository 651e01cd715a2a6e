"""Stage ``fit``: one probe on human triplets (:func:`modelrecovery.study.fitting.fit_probe`)
recorded in MLflow: parameters, metrics, W, the loss curve and the probe as a pyfunc model
(``runs:/<run>/probe``)."""

from __future__ import annotations

import argparse

from modelrecovery.devices import require_device


def cmd_fit(args: argparse.Namespace) -> dict:
    """Fit one probe on human triplets and log it to MLflow."""
    from modelrecovery.study.fitting import ProbeSetup, check_lambda, fit_probe
    from modelrecovery.study.inputs import load_cli_inputs
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.spec import Level

    check_lambda(args.regulariser, args.family, args.lam)
    device = require_device(args.device, "--device")
    setup = ProbeSetup(
        Level(args.family, args.k),
        args.regulariser,
        args.dtype,
        device,
        args.stopping,
        args.reduction,
        args.reshuffle,
    )
    human, features, hashes, model = load_cli_inputs(args)
    outcome = fit_probe(
        features,
        human.train,
        tracker=MLflowTracker(args.experiment),
        model=model,
        setup=setup,
        lam=args.lam,
        test=human.test,
        data_hashes=hashes,
        source=str(args.features),
    )
    return outcome.result()
