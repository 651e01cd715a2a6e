"""A LightningModule around the probe, trained with the custom full-batch L-BFGS step.

Every training step is one L-BFGS step (up to ``max_iter`` iterations with strong-Wolfe
line search) on all triplets; an epoch holds one step, and training stops by the same
:class:`~modelrecovery.probe.fit.StepRule` as :func:`~modelrecovery.probe.fit.fit_probe`
(``converged`` or the study's rule), so
``lightning.Trainer(max_epochs=settings.max_repeats).fit(module)`` reproduces
:func:`~modelrecovery.probe.fit.fit_probe` (same steps, same last iterate), and any
Lightning logger records the loss.
"""

from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import FittedProbe, LBFGSSettings, StepRule, build_problem


class _OneBatch(torch.utils.data.Dataset):
    """A dataset of one item: the step works on all triplets held by the module."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        return index


class ProbeModule(L.LightningModule):
    """The probe as a LightningModule (manual optimisation, one L-BFGS step per epoch).

    Parameters
    ----------
    features, triplets : as for :func:`~modelrecovery.probe.fit.fit_probe`.
    settings : L-BFGS settings and stopping rule.
    validation : optional triplets whose accuracy and NLL are logged after every step.
    **options : problem options of :func:`~modelrecovery.probe.fit.build_problem`.
    """

    def __init__(
        self,
        features: torch.Tensor | np.ndarray,
        triplets: Triplets,
        *,
        settings: LBFGSSettings | None = None,
        validation: Triplets | None = None,
        **options,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.settings = settings or LBFGSSettings()
        options.setdefault("stopping", self.settings.stopping)
        options.setdefault("engine", self.settings.engine)
        self.problem = build_problem(features, triplets, **options)
        self.theta = torch.nn.Parameter(self.problem.theta0.clone())
        self._last_finite = self.problem.theta0.clone()
        self._features = torch.as_tensor(features)
        self._validation = validation
        self.rule = StepRule(self.settings)
        self._extra_evals = 0
        self._start = time.perf_counter()
        # hyperparameters any Lightning logger records (plain values only; the arguments of
        # __init__ are ignored so that Lightning does not compare arrays with them)
        dtype = options.get("dtype", torch.float32)
        self.save_hyperparameters(
            {
                "family": self.problem.family.name,
                "k": self.problem.family.k,
                "regulariser": self.problem.regulariser,
                "lam": self.problem.lam,
                "temperature": self.problem.temperature,
                "n_train": len(triplets),
                "p": self.problem.p,
                "reduced_rank": None if self.problem.space is None else self.problem.space.rank,
                "path": self.problem.objective.path,
                "dtype": str(dtype).removeprefix("torch."),
            },
            ignore=["features", "triplets", "validation", "settings", "init", "space"],
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_OneBatch(), batch_size=None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.settings.optimiser(
            [self.theta], getattr(self.problem.objective, "geometry", None)
        )

    @property
    def loss_history(self) -> list[float]:
        """The losses the stopping rule compared (see :class:`StepRule`)."""
        return self.rule.history

    @property
    def converged(self) -> bool:
        """Whether the stopping rule was met."""
        return self.rule.converged

    def on_fit_start(self) -> None:
        self.problem.objective = self.problem.objective.to(self.theta.device)
        self._start = time.perf_counter()

    def _loss(self) -> float:
        with torch.no_grad():
            return float(self.problem.objective.loss_and_grad(self.theta.detach())[0])

    def training_step(self, batch, batch_idx: int) -> None:
        optimiser = self.optimizers()
        objective = self.problem.objective
        if self.settings.reshuffle:
            objective.reshuffle(self.rule.steps)

        def closure() -> torch.Tensor:
            loss, grad = objective.loss_and_grad(self.theta.detach())
            self.theta.grad = grad
            return loss

        start_loss = float(optimiser.step(closure=closure))
        end_loss = None
        if self.rule.needs_end_loss:
            # the lean L-BFGS knows the loss at the end of its step; torch's does not
            end_loss = optimiser.optimizer.state[self.theta].get("loss")
            if end_loss is None:
                end_loss = self._loss()
                self._extra_evals += 1
        stop = self.rule.update(start_loss, end_loss)
        loss = end_loss if end_loss is not None else start_loss
        if not math.isfinite(loss) or not bool(torch.isfinite(self.theta).all()):
            # as fit_probe: stop, and keep the last finite iterate
            self.rule.reason = "non_finite"
            with torch.no_grad():
                self.theta.copy_(self._last_finite)
            self.trainer.should_stop = True
            return
        self._last_finite = self.theta.detach().clone()
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=1)
        if self._validation is not None:
            scores = self.fitted().evaluate(self._features, self._validation)
            self.log("val_accuracy", scores["accuracy"], on_step=False, on_epoch=True, batch_size=1)
            self.log("val_nll", scores["nll"], on_step=False, on_epoch=True, batch_size=1)
        if stop:
            self.trainer.should_stop = True

    def fitted(self) -> FittedProbe:
        """The current parameters as a :class:`FittedProbe`."""
        optimiser = self.optimizers() if self._trainer is not None else None
        state = {}
        if optimiser is not None:
            state = optimiser.optimizer.state.get(self.theta, {})
        return self.problem.result(
            self.theta.detach().clone(),
            list(self.loss_history),
            int(state.get("n_iter", 0)),
            int(state.get("func_evals", 0)) + self._extra_evals,
            self.converged,
            time.perf_counter() - self._start,
            self.settings.stopping,
            self.stop_reason,
        )

    @property
    def stop_reason(self) -> str:
        """``rule`` or ``non_finite`` once the rule stopped training, ``max_steps`` once
        the steps ran out, ``""`` while training."""
        if self.rule.reason is not None:
            return self.rule.reason
        return "max_steps" if self.rule.steps >= self.settings.max_repeats else ""
