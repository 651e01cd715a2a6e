"""The LightningModule trains the probe with the custom L-BFGS step, like fit_probe."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from helpers import planted_triplets
from modelrecovery.probe import fit_probe
from modelrecovery.probe.lightning_module import ProbeModule


def test_trainer_fit_matches_fit_probe(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) / 2
    z = x @ (np.eye(6) + 0.7 * rng.normal(size=(6, 6)))
    train = planted_triplets(z, 3_000, seed=1)
    valid = planted_triplets(z, 500, seed=2)
    options = dict(family="full", lam=0.01, dtype=torch.float64)
    module = ProbeModule(x, train, validation=valid, **options)
    trainer = L.Trainer(
        max_epochs=100,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module)
    fitted = module.fitted()
    reference = fit_probe(x, train, **options)
    assert module.converged
    assert fitted.loss_history[-1] == pytest.approx(reference.loss_history[-1], rel=1e-8)
    np.testing.assert_allclose(fitted.matrix().numpy(), reference.matrix().numpy(), atol=1e-5)
    assert fitted.iterations > 0
    # the logger recorded the loss of every step and the validation scores
    metrics = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    header = metrics.splitlines()[0]
    assert "train_loss" in header and "val_accuracy" in header and "val_nll" in header
    assert len(metrics.splitlines()) - 1 == len(fitted.loss_history) - 1
