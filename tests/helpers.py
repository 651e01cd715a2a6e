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
