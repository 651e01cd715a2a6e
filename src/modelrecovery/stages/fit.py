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
    tracker = MLflowTracker(args.experiment)
    outcome = fit_probe(
        features,
        human.train,
        tracker=tracker,
        model=model,
        setup=setup,
        lam=args.lam,
        test=human.test,
        data_hashes=hashes,
        source=str(args.features),
    )
    problem = diverged(outcome.fitted)
    if problem is not None:  # no result to use: the run ends FAILED, the command with 2
        tracker.client.set_tag(outcome.run_id, "failure", problem)
        tracker.client.set_terminated(outcome.run_id, "FAILED")
        raise ValueError(
            f"fit/{model}/{setup.level.family}: {problem} (run {outcome.run_id} ended FAILED)"
        )
    return outcome.result()


def diverged(fitted) -> str | None:
    """Why a fit has no usable result, or None: its loss became non-finite, or it ended
    above log 3 (worse than W = 0) and was flagged for it
    (:meth:`~modelrecovery.probe.fit.FittedProbe.convergence_warning`). Steps running out
    or a collapse to W = 0 stay warnings on a FINISHED run."""
    import math

    from modelrecovery.probe.fit import DIVERGED_MARGIN, LOG3

    problem = fitted.convergence_warning()
    loss = fitted.train_objective
    if problem is None:
        return None
    if fitted.stop_reason == "non_finite" or not math.isfinite(loss):
        return problem
    return problem if loss > LOG3 + DIVERGED_MARGIN else None
