"""λ by cross-validation on the human training triplets (Optuna chooses among the
trials; each trial is a child run of the tuning run), then the refit on all training
triplets with the best λ (docs/science/method.md §3).

Default: a grid over the study's values {1e-6, ..., 100} (``GridSampler``); option: TPE
over log λ with a median pruner that stops bad trials after the first folds. The Optuna
study lives in the tracker's storage (default ``tracking/optuna.db``; the null tracker's
is in memory), visible in optuna-dashboard (``modelrecovery dashboard``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.crossval import CrossValidation, make_folds, select_lambda
from modelrecovery.probe.fit import check_features, warn_once
from modelrecovery.study.fitting import FitOutcome, ProbeSetup, fit_probe
from modelrecovery.study.keys import inputs_key
from modelrecovery.study.spec import TuneSpec
from modelrecovery.study.tracker import Run, Tracker, standard_tags
from modelrecovery.study.tracking_names import TRIAL, TUNE


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
    tracker: Tracker,
    model: str,
    setup: ProbeSetup,
    settings: TuneSpec,
    parent: Run | None = None,
    study_name: str | None = None,
    source: str | None = None,
    cv_warnings: list[str] | None = None,
) -> tuple[float, pd.DataFrame, str]:
    """Cross-validated λ: mean validation accuracy over folds, best wins (ties: the
    smallest λ, see :func:`~modelrecovery.probe.crossval.select_lambda`).

    Each trial is a child run of ``parent`` with the trial's λ, per-fold and mean
    validation accuracy / NLL, and tag ``converged`` (``false`` when a fold's fit must not
    be trusted, with ``unconverged_folds`` and ``warning``). Returns (best λ, trials table,
    study name); a one-line summary of the untrusted fits is logged as a warning and
    appended to ``cv_warnings`` when given. ``source`` names the features in messages
    (default: the model name).
    """
    level = setup.level
    family = level.family
    folds = make_folds(train, settings.n_folds, settings.seed, settings.fold_kind)
    cv = CrossValidation(
        features,
        train,
        folds,
        family=family,
        k=level.k,
        regulariser=setup.regulariser,
        dtype=setup.torch_dtype(),
        device=setup.device,
        settings=setup.lbfgs(),
        name=source or model,
        reduce=setup.reduction,
    )
    storage = tracker.optuna_storage()
    study_name = study_name or f"tune/{model}/{family}"
    experiment = getattr(tracker, "experiment", None)
    if experiment and not study_name.startswith(f"{experiment}/"):
        study_name = f"{experiment}/{study_name}"  # studies of a shared storage never collide
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
    describe_study(study, experiment)

    def objective(trial: optuna.Trial) -> float:
        if settings.method == "grid":
            lam = trial.suggest_categorical("lam", list(settings.lams))
        else:
            lam = trial.suggest_float("lam", min(settings.lams), max(settings.lams), log=True)
        with tracker.run(
            TRIAL.run_name(model=model, family=family, n=trial.number),
            tags=standard_tags(TRIAL.stage, model, family),
            params={"lam": lam, "trial": trial.number, "study": study_name},
            parent=parent,
        ) as run:
            accs, nlls = [], []
            for f in range(len(folds)):
                scores = cv.fold_scores(f, lam)
                accs.append(scores["accuracy"])
                nlls.append(scores["nll"])
                run.log_metrics(
                    {"fold_val_accuracy": scores["accuracy"], "fold_val_nll": scores["nll"]}, step=f
                )
                trial.report(float(np.mean(accs)), step=f)
                if trial.should_prune():
                    _tag_fold_health(run, cv, lam, f + 1)
                    run.set_tags({"pruned": "true"})
                    raise optuna.TrialPruned()
            _tag_fold_health(run, cv, lam, len(folds))
            run.log_metrics({"val_accuracy": float(np.mean(accs)), "val_nll": float(np.mean(nlls))})
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


#: the dashboard's note on a λ study
DASHBOARD_NOTE = (
    "## λ by cross-validation\n\n"
    "The objective is the **mean validation accuracy** over the folds (higher is better), "
    "one trial per λ. The study has **one parameter** (λ): optuna-dashboard's *contour* and "
    "*rank* plots need two or more and stay empty; read *History*, *Slice* (accuracy against "
    "λ) and the trials table."
)


def describe_study(study: optuna.Study, experiment: str | None = None) -> None:
    """Name the objective (``mean_val_accuracy``) and note, for optuna-dashboard, the MLflow
    experiment and that a one-parameter study leaves the contour and rank plots empty
    (user attributes ``experiment`` and ``note``, and the dashboard's own note)."""
    with warnings.catch_warnings():  # experimental in Optuna, stable in its dashboard
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["mean_val_accuracy"])
    if experiment:
        study.set_user_attr("experiment", experiment)
    study.set_user_attr("note", "one parameter (λ): contour and rank plots stay empty")
    try:
        from optuna_dashboard import save_note
    except ImportError:  # the dashboard is optional for the science
        return
    save_note(study, DASHBOARD_NOTE)


def _tag_fold_health(run: Run, cv: CrossValidation, lam: float, n_folds: int) -> None:
    """Tag the trial run with the health of its first ``n_folds`` fold fits."""
    bad = [
        cv.fit_warnings[(f, float(lam))]
        for f in range(n_folds)
        if (f, float(lam)) in cv.fit_warnings
    ]
    tags = {"converged": "false" if bad else "true"}
    if bad:
        tags |= {"unconverged_folds": str(len(bad)), "warning": bad[0]}
    run.set_tags(tags)


def tune_and_fit(
    features: np.ndarray,
    train: Triplets,
    *,
    tracker: Tracker,
    model: str,
    setup: ProbeSetup,
    settings: TuneSpec,
    test: Triplets | None = None,
    data_hashes: dict[str, str] | None = None,
    parent: Run | None = None,
    log_model: bool = True,
    source: str | None = None,
) -> TuneOutcome:
    """A run ``tune/<model>/<family>``: trials as child runs, then the refit on all training
    triplets with the best λ as another child run (zero-shot: no λ, only the fit). Every
    fit runs on ``setup.device``, which is logged but enters no reuse key. Untrusted fits
    (see :func:`tune_lambda` and :func:`~modelrecovery.study.fitting.fit_probe`) are tagged
    (``converged=false``, ``warning``) on this run too and listed in the outcome's
    ``warnings``; ``source`` names the features in messages."""
    level = setup.level
    family = level.family
    device = require_device(setup.device, "device")  # before the run starts
    check_features(features, setup.torch_dtype(), source or model)  # before the run starts
    cv_warnings: list[str] = []
    params = {
        "model": model,
        "family": family,
        "k": level.k,
        "regulariser": setup.regulariser,
        "method": settings.method,
        "lams": list(settings.lams),
        "n_folds": settings.n_folds,
        "fold_kind": settings.fold_kind,
        "n_trials": settings.n_trials,
        "seed": settings.seed,
        "stopping": setup.stopping,
    }
    key = inputs_key("tune", params, data_hashes or {})
    tags = standard_tags(TUNE.stage, model, family)
    shown = {k_: str(v) for k_, v in params.items()} | {"device": device}
    with tracker.run(
        TUNE.run_name(model=model, family=family), tags=tags, params=shown, key=key, parent=parent
    ) as run:
        if family == "zero_shot":
            best_lam, trials, study_name = 0.0, pd.DataFrame(), ""
        else:
            best_lam, trials, study_name = tune_lambda(
                features,
                train,
                tracker=tracker,
                model=model,
                setup=setup,
                settings=settings,
                parent=run,
                study_name=f"tune/{model}/{family}/{key[:12]}",
                source=source,
                cv_warnings=cv_warnings,
            )
            run.log_params({"optuna_study": study_name})
            run.log_dict(trials.to_dict(orient="split"), "trials.json")
        run.log_metrics({"best_lam": best_lam})
        fit = fit_probe(
            features,
            train,
            tracker=tracker,
            model=model,
            setup=setup,
            lam=best_lam,
            test=test,
            data_hashes=data_hashes,
            parent=run,
            log_model=log_model,
            source=source,
        )
        run.log_metrics({f"refit_{name}": v for name, v in fit.metrics.items()})
        warnings = cv_warnings + fit.warnings
        tags = {"converged": "true" if fit.converged and not cv_warnings else "false"}
        if warnings:
            tags["warning"] = "; ".join(warnings)
        run.set_tags(tags)
    return TuneOutcome(best_lam, trials, study_name, run.id, fit, warnings)
