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
