"""PCA of a feature matrix, as the study's ``PCA_500`` ablation.

The study reduced every model's features to 500 principal components once, before any
probing, fitted on all 1854 concepts (its ``models_original_features/PCA_500`` folder serves
the generators and every candidate of every job). That fit is transductive in the concepts
(a job's test concepts enter the components) but uses no behaviour; we do the same. The
scores are the centred features projected on the leading right singular vectors, each
component's sign fixed so that its largest-magnitude loading is positive (reproducible
across LAPACK builds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from modelrecovery.input_files import sha256

__all__ = ["pca_scores", "pca_feature_file"]


def pca_scores(features: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, explained variance ratio) of the first ``min(n_components, rank)``
    principal components of ``features`` (rows: concepts), in float64 then float32."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"PCA needs a 2-D matrix with at least 2 rows, got {x.shape}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    tol = s.max(initial=0.0) * max(x.shape) * np.finfo(np.float64).eps
    keep = min(int(n_components), int((s > tol).sum()))
    vt = vt[:keep]
    signs = np.sign(vt[np.arange(keep), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    scores = centred @ vt.T
    total = float((s**2).sum())
    ratio = (s[:keep] ** 2) / total if total > 0 else np.zeros(keep)
    return scores.astype(np.float32), ratio


def pca_feature_file(
    source: str | os.PathLike[str],
    n_components: int,
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    n_concepts: int | None = None,
) -> Path:
    """``out_dir/<name>.npy``: the PCA scores of the feature file ``source`` (cached: a
    JSON sidecar records the source's SHA-256 and the component count; a changed source is
    reduced again)."""
    from modelrecovery.features.io import load_features

    source = Path(source)
    out_dir = Path(out_dir)
    target = out_dir / f"{name}.npy"
    sidecar = target.with_suffix(".json")
    wanted = {"source": str(source), "source_sha256": sha256(source), "pca": n_components}
    if target.is_file() and sidecar.is_file():
        try:
            known = json.loads(sidecar.read_text())
        except ValueError:
            known = {}
        if {k: known.get(k) for k in wanted} == wanted:
            return target
    features = load_features(source, n_concepts=n_concepts)
    scores, ratio = pca_scores(features, n_components)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npy")
    np.save(tmp, scores)
    os.replace(tmp, target)
    info = {
        **wanted,
        "n_components_kept": int(scores.shape[1]),
        "explained_variance": float(ratio.sum()),
        "fitted_on": f"all {features.shape[0]} concepts (as the study)",
    }
    sidecar.write_text(json.dumps(info, indent=2))
    return target
