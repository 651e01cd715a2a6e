"""Image-free stand-ins for network features, generated from the human embedding.

:func:`generated_features` is fast and needs no images or networks (tests and benchmarks); the
default model set (:mod:`modelrecovery.world.models`) uses real networks instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["generated_features"]

_ACTIVATIONS = ("relu", "tanh", "softplus", "square")


def generated_features(
    human_embedding: np.ndarray,
    dims: Sequence[int] = (512, 1024, 2048, 4096),
    *,
    seed: int = 0,
    noise: float = 0.5,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Candidate representations made from the human embedding, without images.

    Model ``m`` sees a random subset of the human dimensions (each kept with a probability
    drawn in [0.5, 1]), mixes them through a random hidden layer (64-256 units, a random
    activation among relu, tanh, softplus, square), projects to ``dims[m]`` features and adds
    Gaussian noise (``noise`` x a random factor in [0.5, 1.5], relative to the signal's
    standard deviation) plus a model-specific nuisance representation. Models therefore
    differ in how well they predict the human triplets.

    Parameters
    ----------
    human_embedding : (n_concepts, n_dims) array.
    dims : feature dimension of each model.
    seed : seed; model ``m`` uses the stream ``(seed, m)``.
    noise : overall noise level (0: none).
    names : model names (default ``gen00_p512``, ``gen01_p1024``, ...).

    Returns
    -------
    Ordered dict name -> (n_concepts, dims[m]) float32 array.
    """
    e = np.asarray(human_embedding, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"human_embedding must be 2-D, got shape {e.shape}")
    if names is None:
        names = [f"gen{m:02d}_p{int(p)}" for m, p in enumerate(dims)]
    if len(names) != len(dims) or len(set(names)) != len(names):
        raise ValueError("names must be distinct and one per entry of dims")
    n, d = e.shape
    e = e / (np.std(e) or 1.0)
    out: dict[str, np.ndarray] = {}
    for m, (name, p) in enumerate(zip(names, dims, strict=True)):
        if int(p) < 1:
            raise ValueError(f"dims[{m}] = {p}: feature dimensions must be positive")
        rng = np.random.default_rng([int(seed), m])
        keep = rng.random(d) < rng.uniform(0.5, 1.0)
        if not keep.any():
            keep[rng.integers(d)] = True
        hidden = int(rng.integers(64, 257))
        a1 = rng.normal(0, 1 / math.sqrt(keep.sum()), size=(int(keep.sum()), hidden))
        b1 = rng.normal(0, 0.5, size=hidden)
        pre = e[:, keep] @ a1 + b1
        act = _ACTIVATIONS[int(rng.integers(len(_ACTIVATIONS)))]
        if act == "relu":
            h = np.maximum(pre, 0)
        elif act == "tanh":
            h = np.tanh(pre)
        elif act == "softplus":
            h = np.logaddexp(0, pre)
        else:
            h = pre**2
        h -= h.mean(axis=0)
        signal = h @ rng.normal(0, 1 / math.sqrt(hidden), size=(hidden, int(p)))
        scale = float(np.std(signal)) or 1.0
        level = noise * rng.uniform(0.5, 1.5)
        nuisance = rng.normal(size=(n, 8)) @ rng.normal(size=(8, int(p))) / math.sqrt(8)
        x = signal + level * scale * (0.5 * nuisance + rng.normal(size=(n, int(p))))
        out[name] = x.astype(np.float32)
    return out
