"""Representational geometry of the models before and after the probe (docs/science/method.md §5).

RDMs are condensed upper triangles of Euclidean distances between concepts
(``scipy.spatial.distance.pdist``). Two comparisons are available:

- ``"corr"``: Pearson correlation of the RDM vectors.
- ``"corr_cov"``: the whitened correlation of rsatoolbox (``rsatoolbox.rdm.compare(...,
  method="corr_cov")`` without a pattern covariance): with ``d`` the RDM vector minus its
  mean and ``V = (C Cᵀ) ∘ (C Cᵀ)`` the covariance of RDM vectors under independent, equally
  noisy patterns (``C`` the pairwise-contrast matrix), it is
  ``d₁ᵀ V⁻¹ d₂ / sqrt(d₁ᵀ V⁻¹ d₁ · d₂ᵀ V⁻¹ d₂)``. It is computed without forming ``V``: the
  value equals the cosine (Frobenius inner product) of the double-centred matrices
  ``G = -½ H D H`` (``D`` the square form of ``d``, ``H`` the centring matrix), as in
  rsatoolbox's fast path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist, squareform

__all__ = [
    "RDM_METHODS",
    "compare_rdms",
    "effective_dimensionality",
    "euclidean_rdm",
    "human_distance",
    "mds_coordinates",
    "model_geometry",
    "model_rdms",
    "rdm_similarity",
    "representational_shift",
    "transform_features",
]

RDM_METHODS: tuple[str, ...] = ("corr", "corr_cov")

HUMAN = "human"


def euclidean_rdm(features: np.ndarray) -> np.ndarray:
    """Condensed Euclidean RDM (upper triangle, ``pdist`` order) of an ``n x p`` array."""
    x = np.asarray(features, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    return pdist(x, metric="euclidean")


def transform_features(features: np.ndarray, transform: np.ndarray | None) -> np.ndarray:
    """``X W`` for a ``p x k`` matrix ``W``; a 1-D ``W`` is a diagonal; ``None`` is ``X``."""
    x = np.asarray(features, dtype=float)
    if transform is None:
        return x
    w = np.asarray(transform, dtype=float)
    if w.ndim == 1:
        if w.shape[0] != x.shape[1]:
            raise ValueError(f"diagonal of length {w.shape[0]} for {x.shape[1]} features")
        return x * w
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"W has {w.shape[0]} rows for {x.shape[1]} features")
    return x @ w


def _n_from_condensed(length: int) -> int:
    n = int(round((1 + np.sqrt(1 + 8 * length)) / 2))
    if n * (n - 1) // 2 != length:
        raise ValueError(f"{length} is not the length of a condensed RDM")
    return n


def _unit_vector(rdm: np.ndarray, method: str) -> np.ndarray:
    """Representation of an RDM in which the comparison is a plain dot product."""
    d = np.asarray(rdm, dtype=float).ravel()
    if method == "corr":
        v = d - d.mean()
    elif method == "corr_cov":
        n = _n_from_condensed(d.size)
        full = squareform(d - d.mean(), checks=False)  # zero diagonal, as in rsatoolbox
        g = full - full.mean(axis=0, keepdims=True)
        g -= g.mean(axis=1, keepdims=True)
        g *= -0.5
        # Frobenius inner product = 2 * upper triangle + diagonal
        v = np.concatenate([np.sqrt(2.0) * squareform(g, checks=False), np.diag(g)])
        del full, g
        if v.size != n * (n + 1) // 2:  # pragma: no cover - internal consistency
            raise AssertionError
    else:
        raise ValueError(f"unknown RDM comparison {method!r}; choose from {RDM_METHODS}")
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else np.full_like(v, np.nan)


def compare_rdms(
    rdm1: np.ndarray, rdm2: np.ndarray, method: str = "corr_cov", *, backend: str = "numpy"
) -> float:
    """Similarity of two condensed RDMs (``"corr"`` or ``"corr_cov"``, see module docstring).

    Parameters
    ----------
    rdm1, rdm2 : condensed RDMs of the same length.
    method : ``"corr"`` or ``"corr_cov"``.
    backend : ``"numpy"`` (this module) or ``"rsatoolbox"`` (``rsatoolbox.rdm.compare``,
        which must be installed).
    """
    a, b = np.asarray(rdm1, dtype=float).ravel(), np.asarray(rdm2, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"RDMs of different lengths: {a.size} and {b.size}")
    if backend == "rsatoolbox":
        import rsatoolbox  # optional dependency

        if method not in RDM_METHODS:
            raise ValueError(f"unknown RDM comparison {method!r}; choose from {RDM_METHODS}")
        r1, r2 = rsatoolbox.rdm.RDMs(a[None, :]), rsatoolbox.rdm.RDMs(b[None, :])
        return float(rsatoolbox.rdm.compare(r1, r2, method=method)[0, 0])
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}")
    return float(_unit_vector(a, method) @ _unit_vector(b, method))


def representational_shift(
    features: np.ndarray, transform: np.ndarray | None, method: str = "corr_cov"
) -> float:
    """``1 - compare(RDM(X), RDM(X W))``: how much the probe changes the geometry.

    Zero for ``W = I`` and for any scaled orthogonal ``W`` (distances only scale).
    """
    x = np.asarray(features, dtype=float)
    return 1.0 - compare_rdms(
        euclidean_rdm(x), euclidean_rdm(transform_features(x, transform)), method
    )


def effective_dimensionality(features: np.ndarray) -> float:
    """Participation ratio ``(Σλ)² / Σλ²`` of the PCA eigenvalues of the centred features.

    Scale-free; computed from the smaller Gram matrix. NaN for constant features.
    """
    x = np.asarray(features, dtype=float)
    x = x - x.mean(axis=0, keepdims=True)
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    lam = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return float("nan")
    return float(total**2 / np.sum(lam**2))


def human_distance(
    features: np.ndarray,
    human_embedding: np.ndarray,
    transform: np.ndarray | None = None,
    method: str = "corr_cov",
) -> float:
    """``1 - compare(RDM(X W), RDM(human embedding))`` (``W = I`` when ``transform`` is None)."""
    return 1.0 - compare_rdms(
        euclidean_rdm(transform_features(features, transform)),
        euclidean_rdm(human_embedding),
        method,
    )


def _concept_subset(n: int, max_concepts: int | None, seed: int) -> np.ndarray:
    if max_concepts is None or max_concepts >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_concepts, replace=False))


def model_rdms(
    features: Mapping[str, np.ndarray],
    transforms: Mapping[str, np.ndarray] | None = None,
    human_embedding: np.ndarray | None = None,
    *,
    max_concepts: int | None = None,
    seed: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """Condensed Euclidean RDMs of every model, raw and transformed, and of the humans.

    Parameters
    ----------
    features : model name -> ``n x p`` features (same concepts, same order, for all).
    transforms : model name -> ``W`` (``p x k``, or the diagonal); models without one have
        no transformed RDM.
    human_embedding : ``n x d`` human embedding (optional).
    max_concepts, seed : use a random subset of this many concepts (seeded) to save time.

    Returns
    -------
    ``{(model, "raw"): rdm, (model, "transformed"): rdm, ("human", "human"): rdm}``.
    """
    sizes = {np.asarray(x).shape[0] for x in features.values()}
    if human_embedding is not None:
        sizes.add(np.asarray(human_embedding).shape[0])
    if len(sizes) > 1:
        raise ValueError(f"features and embedding disagree on the number of concepts: {sizes}")
    if not sizes:
        return {}
    idx = _concept_subset(sizes.pop(), max_concepts, seed)
    transforms = transforms or {}
    out: dict[tuple[str, str], np.ndarray] = {}
    for model in sorted(features):
        x = np.asarray(features[model], dtype=float)[idx]
        out[(model, "raw")] = euclidean_rdm(x)
        if model in transforms:
            out[(model, "transformed")] = euclidean_rdm(transform_features(x, transforms[model]))
    if human_embedding is not None:
        out[(HUMAN, HUMAN)] = euclidean_rdm(np.asarray(human_embedding, dtype=float)[idx])
    return out


def model_geometry(
    features: Mapping[str, np.ndarray],
    transforms: Mapping[str, np.ndarray] | None = None,
    human_embedding: np.ndarray | None = None,
    *,
    method: str = "corr_cov",
    rdms: Mapping[tuple[str, str], np.ndarray] | None = None,
    max_concepts: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Geometry properties of every model.

    Parameters
    ----------
    features, transforms, human_embedding, max_concepts, seed : as in :func:`model_rdms`.
    method : RDM comparison (``"corr"`` or ``"corr_cov"``).
    rdms : precomputed :func:`model_rdms` output (same arguments) to avoid recomputing.

    Returns
    -------
    One row per model: ``model``, ``n_concepts``, ``feature_dim``, ``transformed_dim``,
    ``ed_before``, ``ed_after``, ``shift``, ``human_distance_before``,
    ``human_distance_after`` (NaN where the transform or the embedding is missing).
    """
    if rdms is None:
        rdms = model_rdms(
            features, transforms, human_embedding, max_concepts=max_concepts, seed=seed
        )
    transforms = transforms or {}
    human = rdms.get((HUMAN, HUMAN))
    nan = float("nan")
    n_all = {np.asarray(x).shape[0] for x in features.values()}
    idx = _concept_subset(n_all.pop(), max_concepts, seed) if n_all else np.arange(0)
    rows = []
    for model in sorted(features):
        x = np.asarray(features[model], dtype=float)[idx]
        raw = rdms[(model, "raw")]
        w = transforms.get(model)
        z = transform_features(x, w) if w is not None else None
        trans = rdms.get((model, "transformed"))
        rows.append(
            {
                "model": model,
                "n_concepts": x.shape[0],
                "feature_dim": x.shape[1],
                "transformed_dim": z.shape[1] if z is not None else np.nan,
                "ed_before": effective_dimensionality(x),
                "ed_after": effective_dimensionality(z) if z is not None else nan,
                "shift": 1.0 - compare_rdms(raw, trans, method) if trans is not None else nan,
                "human_distance_before": (
                    1.0 - compare_rdms(raw, human, method) if human is not None else nan
                ),
                "human_distance_after": (
                    1.0 - compare_rdms(trans, human, method)
                    if human is not None and trans is not None
                    else nan
                ),
            }
        )
    return pd.DataFrame(rows)


def rdm_similarity(
    rdms: Mapping[tuple[str, str], np.ndarray] | Mapping[str, np.ndarray],
    method: str = "corr_cov",
) -> pd.DataFrame:
    """Symmetric matrix of pairwise RDM comparisons (labels as given, in sorted order)."""
    labels = sorted(rdms)
    if not labels:
        return pd.DataFrame()
    m = np.stack([_unit_vector(rdms[label], method) for label in labels])
    sim = m @ m.T
    np.fill_diagonal(sim, 1.0)
    names = [_label_text(label) for label in labels]
    return pd.DataFrame(sim, index=names, columns=names)


def _label_text(label: object) -> str:
    if isinstance(label, tuple):
        model, state = label
        return str(model) if state in ("raw", HUMAN) else f"{model} (probed)"
    return str(label)


def mds_coordinates(
    similarity: pd.DataFrame, *, seed: int = 0, labels: Sequence[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Two-dimensional metric MDS of ``1 - similarity`` (``sklearn.manifold.MDS``, seeded).

    Parameters
    ----------
    similarity : square similarity matrix (e.g. :func:`rdm_similarity`).
    seed : random state of the MDS.
    labels : optional ``(model, state)`` per row, to fill the ``model`` / ``state`` columns
        (default: parsed from the row labels: ``"<model> (probed)"`` is transformed,
        ``"human"`` the humans, anything else raw).

    Returns
    -------
    ``label``, ``model``, ``state`` (``raw``, ``transformed``, ``human``), ``x``, ``y``.
    """
    from sklearn.manifold import MDS  # imported lazily: heavy

    names = list(similarity.index)
    dis = 1.0 - similarity.to_numpy(dtype=float)
    dis = np.clip((dis + dis.T) / 2, 0.0, None)
    np.fill_diagonal(dis, 0.0)
    if len(names) == 1:
        xy = np.zeros((1, 2))
    elif len(names) == 2:
        xy = np.array([[-dis[0, 1] / 2, 0.0], [dis[0, 1] / 2, 0.0]])
    else:
        mds = MDS(
            n_components=2,
            metric="precomputed",
            init="classical_mds",
            random_state=seed,
            n_init=1,
            normalized_stress="auto",
        )
        xy = mds.fit_transform(dis)
    if labels is None:
        parsed = []
        for name in names:
            if name == HUMAN:
                parsed.append((HUMAN, HUMAN))
            elif name.endswith(" (probed)"):
                parsed.append((name[: -len(" (probed)")], "transformed"))
            else:
                parsed.append((name, "raw"))
        labels = parsed
    return pd.DataFrame(
        {
            "label": names,
            "model": [m for m, _ in labels],
            "state": [s for _, s in labels],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )
