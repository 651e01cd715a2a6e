"""One probe fitted on human triplets through the Lightning module (around the probe's
own L-BFGS step), recorded by a tracker: parameters, metrics, W, the loss curve and,
optionally, the probe as a model.

A fit that must not be trusted (:meth:`~modelrecovery.probe.fit.FittedProbe.convergence_warning`:
steps ran out before its stopping rule, non-finite loss, or a loss above log 3) still
finishes its run, but never silently: metric ``converged`` 0, tags ``converged=false``,
``stop_reason`` and ``warning``, one warning line on stderr, and ``converged: False`` plus
``warning`` in the command's result. Degenerate features (every used concept the same
vector) are warned about in one line and tagged ``degenerate_features=true``."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import matplotlib
import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.fit import FittedProbe, LBFGSSettings, check_features, warn_once
from modelrecovery.probe.lightning_module import ProbeModule
from modelrecovery.study.spec import DTYPES, Level, ProbeSpec, TuneSpec
from modelrecovery.study.tracker import Run, Tracker, standard_tags
from modelrecovery.study.tracking_names import FIT

matplotlib.use("Agg")
for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)  # no per-fit banner

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
assert tuple(TORCH_DTYPES) == DTYPES


@dataclass(frozen=True)
class ProbeSetup:
    """Everything a probe fit is set up with but its data and λ: the level, the
    regulariser, the dtype and device, and the optimiser's stopping rule, row-space
    reduction and loss order (docs/science/method.md §2)."""

    level: Level = Level("full")
    regulariser: str = "scalar_shrinkage"
    dtype: str = "float32"
    device: str = "cpu"
    stopping: str = "converged"
    reduction: str = "auto"
    reshuffle: bool = False

    @classmethod
    def of(cls, level: Level, probe: ProbeSpec, tune: TuneSpec) -> ProbeSetup:
        """A generator's probe: regulariser, dtype and device from the study's ``probe``
        section; stopping rule, reduction and reshuffle from its ``tune`` section (which
        default to the probe's)."""
        return cls(
            level,
            probe.regulariser,
            probe.dtype,
            probe.device,
            tune.stopping,
            tune.reduction,
            tune.reshuffle,
        )

    def lbfgs(self) -> LBFGSSettings:
        """The optimiser's settings."""
        return LBFGSSettings.of(self.stopping, reshuffle=self.reshuffle)

    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    def params(self) -> dict:
        """The setup as run parameters."""
        return {
            "family": self.level.family,
            "k": self.level.k,
            "level": self.level.label,
            "regulariser": self.regulariser,
            "dtype": self.dtype,
            "stopping": self.stopping,
            "reduction": self.reduction,
            "reshuffle": self.reshuffle,
        }


@dataclass
class FitOutcome:
    """A fitted probe, its scores and the run that holds it."""

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


def loss_figure(history: list[float], path: Path) -> Path:
    """The loss per L-BFGS step as a PNG."""
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


def fit_probe(
    features: np.ndarray,
    train: Triplets,
    *,
    tracker: Tracker,
    model: str,
    setup: ProbeSetup,
    lam: float,
    validation: Triplets | None = None,
    test: Triplets | None = None,
    data_hashes: dict[str, str] | None = None,
    parent: Run | None = None,
    log_model: bool = True,
    source: str | None = None,
) -> FitOutcome:
    """Fit with ``lightning.Trainer`` on ``setup.device`` and record a run
    ``fit/<model>/<family>`` (``log_model``: also the probe as a model; generators store W
    and Z instead). ``source`` names the features in messages (default: the model name);
    features that are not finite or whose similarities overflow the dtype are refused
    before the run starts."""
    level = setup.level
    check_lambda(setup.regulariser, level.family, lam)
    device = require_device(setup.device, "device")  # before the run starts
    name = source or model
    check_features(features, setup.torch_dtype(), name)  # before the run starts
    run_name = FIT.run_name(model=model, family=level.family)
    params = {
        "model": model,
        "feature_dim": features.shape[1],
        "n_validation": 0 if validation is None else len(validation),
        "n_test": 0 if test is None else len(test),
        "stopping": setup.stopping,
        "reduction": setup.reduction,
        "reshuffle": setup.reshuffle,
        "device": device,
        **{f"hash_{key}": h for key, h in (data_hashes or {}).items()},
    }
    tags = standard_tags(FIT.stage, model, level.family)
    with tracker.run(run_name, tags=tags, params=params, parent=parent) as run:
        # family, k, regulariser, lam, temperature, n_train, p, dtype: logged by Lightning
        # from the module's hyperparameters
        module = ProbeModule(
            features,
            train,
            settings=setup.lbfgs(),
            validation=validation,
            family=level.family,
            k=level.k,
            regulariser=setup.regulariser,
            lam=lam,
            dtype=setup.torch_dtype(),
            device=device,
            name=name,
            reduce=setup.reduction,
        )
        trainer = L.Trainer(
            max_epochs=module.settings.max_repeats,
            logger=tracker.lightning_logger(run),
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
        run.log_metrics(metrics)
        notes = _record_warnings(run, fitted, problem, run_name)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "fit"
            folder.mkdir()
            np.save(folder / "W.npy", fitted.matrix().cpu().numpy())
            loss_figure(fitted.loss_history, folder / "loss_curve.png")
            run.log_artifacts(folder)
        if log_model:
            z = fitted.transform(features).cpu().numpy()
            tracker.log_probe(run, z, fitted.temperature)
    return FitOutcome(fitted=fitted, metrics=metrics, run_id=run.id, warnings=notes)


def _record_warnings(run: Run, fitted: FittedProbe, problem: str | None, what: str) -> list[str]:
    """Tag the run with the fit's health and warn (one line) about a fit that must not
    be trusted; returns the warnings (degenerate features, convergence)."""
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
        tags["warning"] = "; ".join(notes)
    run.set_tags(tags)
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
