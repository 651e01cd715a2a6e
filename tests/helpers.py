"""Helpers shared by tests: random triplets and planted worlds."""

from __future__ import annotations

import numpy as np
import torch

from modelrecovery.data import Triplets
from modelrecovery.probe import triplet_probabilities


def random_triplet_ids(n_concepts: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """m random triplets of distinct concepts (repeats across rows allowed)."""
    ids = np.stack([rng.choice(n_concepts, 3, replace=False) for _ in range(m)])
    return ids.astype(np.int32)


def planted_triplets(z: np.ndarray, m: int, seed: int, temperature: float = 1.0) -> Triplets:
    """Triplets whose responses are sampled from the dot-product model on ``z``."""
    rng = np.random.default_rng(seed)
    ids = random_triplet_ids(z.shape[0], m, rng)
    probe = Triplets(ids, np.zeros(m), z.shape[0])
    probs = triplet_probabilities(torch.as_tensor(z, dtype=torch.float64), probe, temperature)
    odd = (rng.random(m)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return Triplets(ids, np.minimum(odd, 2), z.shape[0])


def write_things2023(path, train: Triplets, repeated: Triplets, test_set: int = 2):
    """Write training and repeated triplets in the THINGS 2023 format (1-based)."""
    import pandas as pd

    rows = []
    for triplets, nc in ((train, 0), (repeated, test_set)):
        frame = pd.DataFrame(triplets.ids + 1, columns=["image1", "image2", "image3"])
        frame["choice"] = triplets.odd.astype(int) + 1
        frame["subject_id"] = 1
        frame["noise_ceiling"] = nc
        rows.append(frame)
    pd.concat(rows).to_csv(path, sep="\t", index=False)
    return path


def repeated_triplets(z: np.ndarray, n_unique: int, repeats: int, seed: int, temperature=1.0):
    """A noise-ceiling set: n_unique triplets, each answered ``repeats`` times."""
    rng = np.random.default_rng(seed)
    ids = random_triplet_ids(z.shape[0], n_unique, rng)
    ids = np.repeat(ids, repeats, axis=0)
    probe = Triplets(ids, np.zeros(len(ids)), z.shape[0])
    probs = triplet_probabilities(torch.as_tensor(z, dtype=torch.float64), probe, temperature)
    odd = (rng.random(len(ids))[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return Triplets(ids, np.minimum(odd, 2), z.shape[0])


def planted_recovery_world(n_concepts: int = 90, seed: int = 0, n_models: int = 3):
    """Candidates that differ strongly (random non-linear maps of a sparse 'human'
    embedding), each usable as a generator with a low temperature."""
    rng = np.random.default_rng(seed)
    human = np.abs(rng.normal(size=(n_concepts, 8))) * (rng.random((n_concepts, 8)) < 0.4)
    features = {}
    for m in range(n_models):
        dim = 12 + 6 * m
        features[f"model{m}"] = np.tanh(human @ rng.normal(size=(8, dim)) * 1.5) + 0.3 * rng.normal(
            size=(n_concepts, dim)
        )
    return {k: v.astype(np.float32) for k, v in features.items()}


def planted_grid_config(features, **overrides):
    """A small grid over the planted world (3 seeds by default)."""
    from modelrecovery.recovery.grid import GridConfig

    names = tuple(features)
    settings = dict(
        generators=names,
        candidates=names,
        sizes=(60, 3000),
        seeds=(0, 1),
        lams=(1e-2, 1.0, 100.0),
    )
    settings.update(overrides)
    return GridConfig(**settings)


def planted_grid_inputs(features, levels, temperature=0.05, exclude=None):
    """Grid inputs whose generators are the candidates' own features (W = I) at every
    level of ``levels``."""
    from modelrecovery.recovery.executors import GridInputs

    generators = {
        (level.label, name): (x, temperature) for level in levels for name, x in features.items()
    }
    return GridInputs(generators, features, exclude)


def fit_with_trainer(module, max_epochs: int = 100, logger=False):
    """Train a ProbeModule with a quiet CPU ``lightning.Trainer``; returns its fit."""
    import lightning as L

    trainer = L.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module)
    return module.fitted()
