"""Stage ``fit``: one probe on human triplets (:func:`modelrecovery.study.fitting.fit_probe`)
recorded in MLflow: parameters, metrics, W, the loss curve and the probe as a pyfunc model
(``runs:/<run>/probe``)."""

from __future__ import annotations

import argparse

from modelrecovery.devices import require_device


def probe_setup(args: argparse.Namespace):
    """The probe of ``fit`` and ``tune``'s options (level, regulariser, dtype, device,
    stopping rule, reduction, reshuffle), the device checked."""
    from modelrecovery.study.fitting import ProbeSetup
    from modelrecovery.study.spec import Level

    return ProbeSetup(
        Level(args.family, args.k),
        args.regulariser,
        args.dtype,
        require_device(args.device, "--device"),
        args.stopping,
        args.reduction,
        args.reshuffle,
    )


def cmd_fit(args: argparse.Namespace) -> dict:
    """Fit one probe on human triplets and log it to MLflow."""
    from modelrecovery.study.fitting import check_lambda, fit_probe
    from modelrecovery.study.inputs import load_cli_inputs
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    check_lambda(args.regulariser, args.family, args.lam)
    setup = probe_setup(args)
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
