"""Stage ``fit``: one probe on human triplets through the Lightning module, logged to MLflow
(parameters, metrics, W, the loss curve, and the probe as a pyfunc model).

A fit that must not be trusted (:meth:`~modelrecovery.probe.fit.FittedProbe.convergence_warning`:
steps ran out before its stopping rule, non-finite loss, or a loss above log 3) still
finishes its run, but never silently: metric ``converged`` 0, tags ``converged=false``,
``stop_reason`` and ``warning``, one warning line on stderr, and ``converged: False`` plus
``warning`` in the command's result. Degenerate features (every used concept the same
vector) are warned about in one line and tagged ``degenerate_features=true``."""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import matplotlib
import mlflow
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger

from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.fit import FittedProbe, LBFGSSettings, check_features, warn_once
from modelrecovery.probe.lightning_module import ProbeModule
from modelrecovery.probe.pyfunc import log_probe_model
from modelrecovery.stages.common import load_cli_inputs
from modelrecovery.tracking import setup_experiment, standard_tags, tracking_uri

matplotlib.use("Agg")
for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)  # no per-fit banner

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class FitOutcome:
    """A fitted probe, its scores and the MLflow run that holds it."""

    fitted: FittedProbe
    metrics: dict[str, float]
    run_id: str
    warnings: list[str] = field(default_factory=list)  # degenerate features, convergence

    @property
    def converged(self) -> bool:
        """The stopping rule was met and the fit is not flagged (metric ``converged``)."""
        return bool(self.metrics.get("converged", 0.0))

    def result(self) -> dict:
        """The command-line result: run id, metrics, ``converged`` as a bool and, when
        something is wrong, ``warning`` (one line)."""
        out = {"run_id": self.run_id, **self.metrics, "converged": self.converged}
        if self.warnings:
            out["warning"] = "; ".join(self.warnings)
        return out


def check_lambda(regulariser: str, family: str, lam: float) -> None:
    """λ must be > 0 for a penalised family (0 would leave W unregularised), finite."""
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    if family != "zero_shot" and lam <= 0:
        raise ValueError(
            f"lam must be > 0 for family {family!r} with regulariser {regulariser!r}, got {lam}"
        )


def score_sets(fitted: FittedProbe, features: np.ndarray, sets: dict[str, Triplets | None]) -> dict:
    """``<set>_accuracy`` and ``<set>_nll`` for every non-empty set."""
    metrics = {}
    for name, triplets in sets.items():
        if triplets is not None and len(triplets):
            for key, value in fitted.evaluate(features, triplets).items():
                metrics[f"{name}_{key}"] = value
    return metrics


def _loss_figure(history: list[float], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(len(history)), history, marker="o", ms=3)
    ax.set_xlabel("L-BFGS step")
    ax.set_ylabel("loss (mean NLL + λR)")
    ax.set_title("probe fit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fit_and_log(
    features: np.ndarray,
    train: Triplets,
    *,
    model: str,
    family: str = "full",
    k: int | None = None,
    regulariser: str = "scalar_shrinkage",
    lam: float,
    validation: Triplets | None = None,
    test: Triplets | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    data_hashes: dict[str, str] | None = None,
    nested: bool = False,
    settings: LBFGSSettings | None = None,
    log_model: bool = True,
    source: str | None = None,
    reduction: str = "auto",
) -> FitOutcome:
    """Fit with ``lightning.Trainer`` on ``device`` and log everything to a run
    ``fit/<model>/<family>`` (``log_model``: also the probe as a pyfunc model; generators
    store W and Z instead). ``source`` names the features in messages (default: the
    model name); features that are not finite or whose similarities overflow ``dtype``
    are refused before the run starts."""
    check_lambda(regulariser, family, lam)
    device = require_device(device, "device")  # before the run starts
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    name = source or model
    check_features(features, DTYPES[dtype], name)  # before the run starts
    tags = standard_tags("fit", model, family)
    with mlflow.start_run(run_name=f"fit/{model}/{family}", nested=nested, tags=tags) as run:
        # family, k, regulariser, lam, temperature, n_train, p, dtype: logged by Lightning
        # from the module's hyperparameters
        mlflow.log_params(
            {
                "model": model,
                "feature_dim": features.shape[1],
                "n_validation": 0 if validation is None else len(validation),
                "n_test": 0 if test is None else len(test),
                "stopping": (settings or LBFGSSettings()).stopping,
                "reduction": reduction,
                "reshuffle": (settings or LBFGSSettings()).reshuffle,
                "device": device,
                **{f"hash_{name}": h for name, h in (data_hashes or {}).items()},
            }
        )
        module = ProbeModule(
            features,
            train,
            settings=settings,
            validation=validation,
            family=family,
            k=k,
            regulariser=regulariser,
            lam=lam,
            dtype=DTYPES[dtype],
            device=device,
            name=name,
            reduce=reduction,
        )
        trainer = L.Trainer(
            max_epochs=module.settings.max_repeats,
            logger=MLFlowLogger(tracking_uri=tracking_uri(), run_id=run.info.run_id),
            **_lightning_device(device),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
        )
        trainer.fit(module)
        fitted = module.fitted()
        metrics = score_sets(fitted, features, {"train": train, "val": validation, "test": test})
        problem = fitted.convergence_warning()
        metrics.update(
            iterations=fitted.iterations,
            evaluations=fitted.evaluations,
            converged=float(fitted.converged and problem is None),
            seconds=fitted.seconds,
            train_objective=fitted.train_objective,
            final_loss=fitted.train_objective,
        )
        mlflow.log_metrics(metrics)
        notes = _record_warnings(fitted, problem, f"fit/{model}/{family}")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            np.save(tmp / "W.npy", fitted.matrix().cpu().numpy())
            mlflow.log_artifact(str(tmp / "W.npy"))
            mlflow.log_artifact(str(_loss_figure(fitted.loss_history, tmp / "loss_curve.png")))
            if log_model:
                z = fitted.transform(features).cpu().numpy()
                log_probe_model(z, fitted.temperature, tmp / "probe")
    return FitOutcome(fitted=fitted, metrics=metrics, run_id=run.info.run_id, warnings=notes)


def _record_warnings(fitted: FittedProbe, problem: str | None, what: str) -> list[str]:
    """Tag the active run with the fit's health and warn (one line) about a fit that
    must not be trusted; returns the warnings (degenerate features, convergence)."""
    tags = {
        "converged": "true" if fitted.converged and problem is None else "false",
        "stop_reason": fitted.stop_reason or "unknown",
    }
    notes = []
    if fitted.degenerate is not None:  # already warned about when the problem was set up
        tags["degenerate_features"] = "true"
        notes.append(fitted.degenerate)
    if problem is not None:
        warn_once(f"{what}: {problem}")
        notes.append(problem)
    if notes:
        tags["warning"] = "; ".join(notes)[:5000]  # MLflow's limit on a tag value
    mlflow.set_tags(tags)
    return notes


def _lightning_device(device: str) -> dict:
    """``Trainer`` arguments that keep the module on ``device`` (cpu, cuda, cuda:<n>)."""
    if not device.startswith("cuda"):
        return {"accelerator": "cpu", "devices": 1}
    index = torch.device(device).index
    return {
        "accelerator": "gpu",
        "devices": [torch.cuda.current_device() if index is None else index],
    }


def cmd_fit(args: argparse.Namespace) -> dict:
    """Fit one probe on human triplets and log it to MLflow."""
    check_lambda(args.regulariser, args.family, args.lam)
    args.device = require_device(args.device, "--device")
    human, features, hashes, model = load_cli_inputs(args)
    setup_experiment(args.experiment)
    outcome = fit_and_log(
        features,
        human.train,
        model=model,
        family=args.family,
        k=args.k,
        regulariser=args.regulariser,
        lam=args.lam,
        test=human.test,
        dtype=args.dtype,
        device=args.device,
        data_hashes=hashes,
        settings=LBFGSSettings.of(args.stopping, reshuffle=args.reshuffle),
        source=str(args.features),
        reduction=args.reduction,
    )
    return outcome.result()
