"""Stage ``tune``: Optuna chooses λ by cross-validation on the human training triplets,
every trial is an MLflow child run, and the best λ is refit on all training data.

Default: a grid over the study's values {1e-6, ..., 100} (``GridSampler``); option: TPE
over log λ with a median pruner that stops bad trials after the first folds. The study
lives in an Optuna storage (default ``tracking/optuna.db``), visible in optuna-dashboard
(``modelrecovery dashboard``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

import mlflow
import numpy as np
import optuna
import pandas as pd
import torch

from modelrecovery.backends import check_optuna_url, hide_password
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.crossval import (
    STUDY_LAMBDAS,
    CrossValidation,
    make_folds,
    select_lambda,
)
from modelrecovery.probe.fit import LBFGSSettings, check_features, warn_once
from modelrecovery.probe.reduced import REDUCTIONS
from modelrecovery.stages.common import load_cli_inputs
from modelrecovery.stages.fit import DTYPES, FitOutcome, fit_and_log
from modelrecovery.tracking import (
    inputs_key,
    optuna_storage,
    setup_experiment,
    standard_tags,
)


@dataclass
class TuneSettings:
    """How λ is chosen."""

    method: str = "grid"  # or "tpe"
    lams: tuple[float, ...] = STUDY_LAMBDAS
    n_folds: int = 5
    fold_kind: str = "triplets"  # or "concepts"
    n_trials: int = 20  # TPE only
    seed: int = 0
    stopping: str = "converged"  # the optimiser's stopping rule: converged or study
    reduction: str = "auto"  # full W in the row space: auto, always, path, never (reduced.py)
    reshuffle: bool = False  # the study's per-step reshuffled loss order

    def lbfgs(self) -> LBFGSSettings:
        """The optimiser settings of the tuning fits and the refit."""
        return LBFGSSettings.of(self.stopping, reshuffle=self.reshuffle)

    def __post_init__(self) -> None:
        if self.method not in ("grid", "tpe"):
            raise ValueError(f"tune method must be 'grid' or 'tpe', got {self.method!r}")
        LBFGSSettings.of(self.stopping)  # a clear error for an unknown rule
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        self.lams = tuple(float(v) for v in self.lams)
        if not self.lams or any(not (math.isfinite(v) and v > 0) for v in self.lams):
            raise ValueError(f"every λ of the grid must be a finite number > 0, got {self.lams}")


@dataclass
class TuneOutcome:
    best_lam: float
    trials: pd.DataFrame
    study_name: str
    run_id: str
    fit: FitOutcome | None = field(default=None)
    # cross-validation fits that must not be trusted (one line), then the refit's warnings
    warnings: list[str] = field(default_factory=list)


def tune_lambda(
    features: np.ndarray,
    train: Triplets,
    *,
    model: str,
    family: str = "full",
    k: int | None = None,
    regulariser: str = "scalar_shrinkage",
    settings: TuneSettings | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    study_name: str | None = None,
    storage: str | None = None,
    nested: bool = True,
    source: str | None = None,
    cv_warnings: list[str] | None = None,
) -> tuple[float, pd.DataFrame, str]:
    """Cross-validated λ: mean validation accuracy over folds, best wins (ties: the
    smallest λ, see :func:`~modelrecovery.probe.crossval.select_lambda`).

    Each trial is an MLflow child run of the active run (``nested``) with the trial's λ,
    per-fold and mean validation accuracy / NLL, and tag ``converged`` (``false`` when a
    fold's fit must not be trusted, with ``unconverged_folds`` and ``warning``). Returns
    (best λ, trials table, study name); a one-line summary of the untrusted fits is logged
    as a warning and appended to ``cv_warnings`` when given. ``source`` names the features
    in messages (default: the model name).
    """
    settings = settings or TuneSettings()
    folds = make_folds(train, settings.n_folds, settings.seed, settings.fold_kind)
    cv = CrossValidation(
        features,
        train,
        folds,
        family=family,
        k=k,
        regulariser=regulariser,
        dtype=DTYPES[dtype],
        device=device,
        settings=settings.lbfgs(),
        name=source or model,
        reduce=settings.reduction,
    )
    storage = storage or optuna_storage()
    study_name = study_name or f"tune/{model}/{family}"
    if settings.method == "grid":
        sampler = optuna.samplers.GridSampler({"lam": list(settings.lams)}, seed=settings.seed)
        pruner = optuna.pruners.NopPruner()
        n_trials = len(settings.lams)
        # the grid is known: its fits run side by side (the trials then log them)
        cv.precompute(settings.lams, threads=torch.get_num_threads())
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.seed)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        n_trials = settings.n_trials
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are logged to MLflow
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    study.set_user_attr("model", model)
    study.set_user_attr("family", family)

    def objective(trial: optuna.Trial) -> float:
        if settings.method == "grid":
            lam = trial.suggest_categorical("lam", list(settings.lams))
        else:
            lam = trial.suggest_float("lam", min(settings.lams), max(settings.lams), log=True)
        with mlflow.start_run(
            run_name=f"trial/{model}/{family}/{trial.number}",
            nested=nested,
            tags=standard_tags("tune_trial", model, family),
        ):
            mlflow.log_params({"lam": lam, "trial": trial.number, "study": study_name})
            accs, nlls = [], []
            for f in range(len(folds)):
                scores = cv.fold_scores(f, lam)
                accs.append(scores["accuracy"])
                nlls.append(scores["nll"])
                mlflow.log_metrics(
                    {"fold_val_accuracy": scores["accuracy"], "fold_val_nll": scores["nll"]}, step=f
                )
                trial.report(float(np.mean(accs)), step=f)
                if trial.should_prune():
                    _tag_fold_health(cv, lam, f + 1)
                    mlflow.set_tag("pruned", "true")
                    raise optuna.TrialPruned()
            _tag_fold_health(cv, lam, len(folds))
            mlflow.log_metrics(
                {"val_accuracy": float(np.mean(accs)), "val_nll": float(np.mean(nlls))}
            )
            trial.set_user_attr("val_nll", float(np.mean(nlls)))
        return float(np.mean(accs))

    remaining = n_trials - len(
        [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,)]
    )
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    trials = study.trials_dataframe(attrs=("number", "params", "value", "state", "user_attrs"))
    trials = trials.rename(columns={"params_lam": "lam", "value": "val_accuracy"})
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best_lam = select_lambda([t.params["lam"] for t in done], [t.value for t in done])
    if cv.fit_warnings:
        (fold, lam), first = next(iter(sorted(cv.fit_warnings.items())))
        summary = (
            f"{len(cv.fit_warnings)} of {cv.n_fitted} cross-validation fits must not be "
            f"trusted (first: fold {fold}, λ = {lam:g}: {first})"
        )
        warn_once(f"tune/{model}/{family}: {summary}")
        if cv_warnings is not None:
            cv_warnings.append(summary)
    return best_lam, trials, study_name


def _tag_fold_health(cv: CrossValidation, lam: float, n_folds: int) -> None:
    """Tag the active trial run with the health of its first ``n_folds`` fold fits."""
    bad = [
        cv.fit_warnings[(f, float(lam))]
        for f in range(n_folds)
        if (f, float(lam)) in cv.fit_warnings
    ]
    tags = {"converged": "false" if bad else "true"}
    if bad:
        tags |= {"unconverged_folds": str(len(bad)), "warning": bad[0][:5000]}
    mlflow.set_tags(tags)


def tune_and_fit(
    features: np.ndarray,
    train: Triplets,
    *,
    model: str,
    family: str = "full",
    k: int | None = None,
    regulariser: str = "scalar_shrinkage",
    settings: TuneSettings | None = None,
    test: Triplets | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    data_hashes: dict[str, str] | None = None,
    nested: bool = False,
    log_model: bool = True,
    source: str | None = None,
) -> TuneOutcome:
    """A run ``tune/<model>/<family>``: trials as child runs, then the refit on all training
    triplets with the best λ as another child run (zero-shot: no λ, only the fit). Every
    fit runs on ``device``, which is logged but enters no reuse key. Untrusted fits (see
    :func:`tune_lambda` and :func:`~modelrecovery.stages.fit.fit_and_log`) are tagged
    (``converged=false``, ``warning``) on this run too and listed in the outcome's
    ``warnings``; ``source`` names the features in messages."""
    settings = settings or TuneSettings()
    device = require_device(device, "device")  # before the run starts
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    check_features(features, DTYPES[dtype], source or model)  # before the run starts
    cv_warnings: list[str] = []
    params = {
        "model": model,
        "family": family,
        "k": k,
        "regulariser": regulariser,
        "method": settings.method,
        "lams": list(settings.lams),
        "n_folds": settings.n_folds,
        "fold_kind": settings.fold_kind,
        "n_trials": settings.n_trials,
        "seed": settings.seed,
        "stopping": settings.stopping,
    }
    key = inputs_key("tune", params, data_hashes or {})
    tags = standard_tags("tune", model, family) | {"inputs_key": key}
    with mlflow.start_run(run_name=f"tune/{model}/{family}", nested=nested, tags=tags) as run:
        mlflow.log_params({k_: str(v) for k_, v in params.items()} | {"device": device})
        if family == "zero_shot":
            best_lam, trials, study_name = 0.0, pd.DataFrame(), ""
        else:
            best_lam, trials, study_name = tune_lambda(
                features,
                train,
                model=model,
                family=family,
                k=k,
                regulariser=regulariser,
                settings=settings,
                dtype=dtype,
                device=device,
                study_name=f"tune/{model}/{family}/{key[:12]}",
                source=source,
                cv_warnings=cv_warnings,
            )
            mlflow.log_param("optuna_study", study_name)
            mlflow.log_table(trials, "trials.json")
        mlflow.log_metric("best_lam", best_lam)
        fit = fit_and_log(
            features,
            train,
            model=model,
            family=family,
            k=k,
            regulariser=regulariser,
            lam=best_lam,
            test=test,
            dtype=dtype,
            device=device,
            data_hashes=data_hashes,
            nested=True,
            settings=settings.lbfgs(),
            log_model=log_model,
            source=source,
            reduction=settings.reduction,
        )
        mlflow.log_metrics({f"refit_{name}": v for name, v in fit.metrics.items()})
        warnings = cv_warnings + fit.warnings
        tags = {"converged": "true" if fit.converged and not cv_warnings else "false"}
        if warnings:
            tags["warning"] = "; ".join(warnings)[:5000]
        mlflow.set_tags(tags)
    return TuneOutcome(best_lam, trials, study_name, run.info.run_id, fit, warnings)


def cmd_tune(args: argparse.Namespace) -> dict:
    """Choose λ by cross-validation (Optuna), refit with it, log everything to MLflow."""
    args.device = require_device(args.device, "--device")
    settings = TuneSettings(
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
    setup_experiment(args.experiment)
    outcome = tune_and_fit(
        features,
        human.train,
        model=model,
        family=args.family,
        k=args.k,
        regulariser=args.regulariser,
        settings=settings,
        test=human.test,
        dtype=args.dtype,
        device=args.device,
        data_hashes=hashes,
        source=str(args.features),
    )
    result = {
        "run_id": outcome.run_id,
        "best_lam": outcome.best_lam,
        "optuna_study": outcome.study_name,
        "optuna_storage": hide_password(optuna_storage()),
        **{f"refit_{k}": v for k, v in outcome.fit.metrics.items()},
        "refit_converged": outcome.fit.converged,
    }
    if outcome.warnings:
        result["warning"] = "; ".join(outcome.warnings)
    return result


def cmd_dashboard(args: argparse.Namespace) -> dict:
    """Start optuna-dashboard on the Optuna storage (127.0.0.1 by default); blocks."""
    from optuna_dashboard import run_server

    if args.storage:
        check_optuna_url(args.storage, what="--storage")
    storage = args.storage or optuna_storage()
    shown = hide_password(storage)
    print(f"optuna-dashboard on http://{args.host}:{args.port} (storage {shown})", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return {"storage": shown}
