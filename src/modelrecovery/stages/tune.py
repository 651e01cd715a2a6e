"""Stage ``tune``: λ by cross-validation (:func:`modelrecovery.study.tuning.tune_and_fit`),
every trial an MLflow child run, the Optuna study in the Optuna storage; and
``dashboard``: optuna-dashboard on that storage."""

from __future__ import annotations

import argparse

from modelrecovery.store_checks import check_optuna_url, hide_password


def cmd_tune(args: argparse.Namespace) -> dict:
    """Choose λ by cross-validation (Optuna), refit with it, log everything to MLflow."""
    from modelrecovery.stages.fit import probe_setup
    from modelrecovery.study.inputs import load_cli_inputs
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.spec import STUDY_LAMBDAS, TuneSpec
    from modelrecovery.study.tuning import tune_and_fit

    setup = probe_setup(args)
    settings = TuneSpec(
        method=args.method,
        lams=tuple(args.lams) if args.lams else STUDY_LAMBDAS,
        n_folds=args.folds,
        fold_kind=args.fold_kind,
        n_trials=args.trials,
        seed=args.seed,
        stopping=args.stopping,
        reduction=args.reduction,
        reshuffle=args.reshuffle,
    )
    human, features, hashes, model = load_cli_inputs(args)
    tracker = MLflowTracker(args.experiment)
    outcome = tune_and_fit(
        features,
        human.train,
        tracker=tracker,
        model=model,
        setup=setup,
        settings=settings,
        test=human.test,
        data_hashes=hashes,
        source=str(args.features),
    )
    result = {
        "run_id": outcome.run_id,
        "best_lam": outcome.best_lam,
        "optuna_study": outcome.study_name,
        "optuna_storage": hide_password(tracker.optuna_storage()),
        **{f"refit_{k}": v for k, v in outcome.fit.metrics.items()},
        "refit_converged": outcome.fit.converged,
    }
    if outcome.warnings:
        result["warning"] = "; ".join(outcome.warnings)
    return result


def cmd_dashboard(args: argparse.Namespace) -> dict:
    """Start optuna-dashboard on the Optuna storage (127.0.0.1 by default); blocks."""
    from optuna_dashboard import run_server

    from modelrecovery.tracking import optuna_storage

    if args.storage:
        check_optuna_url(args.storage, what="--storage")
    storage = args.storage or optuna_storage()
    shown = hide_password(storage)
    print(f"optuna-dashboard on http://{args.host}:{args.port} (storage {shown})", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return {"storage": shown}
