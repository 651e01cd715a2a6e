"""Concept names and the sparse, non-negative "human" embedding of the world (SPoSE-like)."""

from __future__ import annotations

import math

import numpy as np

from modelrecovery.world.config import STREAM_EMBEDDING, STREAM_NAMES, WorldConfig

__all__ = ["concept_names", "human_embedding"]


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "s", "m")


def concept_names(n_concepts: int, seed: int) -> tuple[str, ...]:
    """Distinct readable made-up concept ids (lowercase, some with an underscore), seeded."""
    rng = np.random.default_rng([int(seed), STREAM_NAMES])

    def word(n_syllables: int) -> str:
        parts = [
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(n_syllables)
        ]
        return "".join(parts) + _CODAS[rng.integers(len(_CODAS))]

    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_concepts:
        name = word(int(rng.integers(2, 4)))
        if rng.random() < 0.15:
            name = f"{name}_{word(int(rng.integers(1, 3)))}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return tuple(names)


def human_embedding(config: WorldConfig) -> np.ndarray:
    """The sparse, non-negative "human" embedding (SPoSE-like), seeded.

    Each concept loads strongly on one dimension (lognormal weight around 1, dimensions drawn
    with prevalence decaying like ``(d + 1) ** -0.7``) and weakly on a Poisson number of others
    (mean ``dims_per_concept - 1``, heavy-tailed lognormal weights around 0.25); columns are
    then sorted by total weight, as SPoSE reports them.

    Returns
    -------
    (n_concepts, n_dims) float64 array, every row non-zero, rows distinct.
    """
    rng = np.random.default_rng([config.seed, STREAM_EMBEDDING])
    n, d = config.n_concepts, config.n_dims
    prevalence = (np.arange(d) + 1.0) ** -0.7
    prevalence /= prevalence.sum()
    e = np.zeros((n, d))
    primary = rng.choice(d, size=n, p=prevalence)
    e[np.arange(n), primary] = rng.lognormal(0.0, 0.3, size=n)
    n_secondary = np.minimum(rng.poisson(config.dims_per_concept - 1.0, size=n), d - 1)
    for i in range(n):
        p = prevalence.copy()
        p[primary[i]] = 0.0
        others = rng.choice(d, size=n_secondary[i], replace=False, p=p / p.sum())
        e[i, others] = rng.lognormal(math.log(0.25), 0.8, size=others.size)
    order = np.argsort(-e.sum(axis=0), kind="stable")
    return e[:, order]
