"""How useful a model set is for a recovery study: zero-shot accuracy and RDM similarity.

:func:`model_set_report` computes, for features of several models, each model's zero-shot
accuracy on human triplets and the correlations between the models' RDMs
(:func:`rdm_correlations`), flagging near copies and models that carry no image information.
NumPy and SciPy only: the zero-shot scores need no fit (the dot-product similarities and
one temperature), so the report does not import torch or the probe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelrecovery.data.triplets import Triplets

__all__ = ["rdm", "rdm_correlations", "model_set_report"]


def rdm(features: np.ndarray, metric: str = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix of one feature matrix.

    Parameters
    ----------
    features : (n, p) array, one row per concept.
    metric : ``"correlation"`` (1 - Pearson correlation of the rows) or ``"euclidean"``.

    Returns
    -------
    (n, n) float64 symmetric matrix with a zero diagonal.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
        d = 1.0 - x @ x.T
    elif metric == "euclidean":
        sq = (x * x).sum(axis=1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    else:
        raise ValueError(f"metric must be 'correlation' or 'euclidean', not {metric!r}")
    np.fill_diagonal(d, 0.0)
    return d


def rdm_correlations(
    features_by_model: Mapping[str, np.ndarray], metric: str = "correlation"
) -> pd.DataFrame:
    """Pearson correlations between the models' RDMs (upper triangles).

    Returns
    -------
    Square DataFrame indexed and labelled by model name.
    """
    names = list(features_by_model)
    if not names:
        raise ValueError("no models given")
    n = {np.asarray(f).shape[0] for f in features_by_model.values()}
    if len(n) != 1:
        raise ValueError(f"models have different numbers of concepts: {sorted(n)}")
    iu = np.triu_indices(n.pop(), 1)
    vectors = np.stack([rdm(features_by_model[m], metric)[iu] for m in names])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(vectors) if len(names) > 1 else np.ones((1, 1))
    return pd.DataFrame(np.atleast_2d(corr), index=names, columns=names)


def model_set_report(
    features_by_model: Mapping[str, np.ndarray],
    human_triplets: Triplets,
    *,
    metric: str = "correlation",
    near_copy_threshold: float = 0.95,
    chance_margin: float = 0.01,
    human_embedding: np.ndarray | None = None,
) -> pd.DataFrame:
    """How useful a model set is for a recovery study.

    Parameters
    ----------
    features_by_model : model name -> (n_concepts, p) features.
    human_triplets : human responses (e.g. a world's training triplets).
    metric : RDM dissimilarity (``"correlation"`` or ``"euclidean"``).
    near_copy_threshold : RDM correlation above which two models count as near copies.
    chance_margin : a model whose zero-shot accuracy is below ``1/3 + chance_margin`` counts
        as carrying no image information.
    human_embedding : optional; adds the RDM correlation of each model with it.

    Returns
    -------
    DataFrame, one row per model: ``feature_dim``, ``zero_shot_accuracy`` (raw features,
    dot product, tied positions sharing the credit: the accuracy of
    :func:`~modelrecovery.probe.accuracy_and_nll`), ``zero_shot_nll`` (at the
    best single temperature), ``zero_shot_accuracy_centred`` (features
    centred over concepts), ``zero_shot_z`` (z-score of the accuracy against chance 1/3),
    ``rdm_corr_min``, ``rdm_corr_median``, ``rdm_corr_max`` (with the other models),
    ``most_similar``, ``near_copy``, ``uninformative`` and, with ``human_embedding``,
    ``rdm_corr_human``. ``df.attrs["rdm_correlations"]`` holds the full matrix and
    ``df.attrs["rdm_correlation_spread"]`` the min/median/max over model pairs.
    """
    names = list(features_by_model)
    m = len(human_triplets)
    if m == 0:
        raise ValueError("human_triplets is empty")
    corr = rdm_correlations(features_by_model, metric)
    rows = []
    for name in names:
        x = np.asarray(features_by_model[name], dtype=np.float64)
        if x.shape[0] != human_triplets.n_concepts:
            raise ValueError(
                f"{name}: {x.shape[0]} feature rows, but the triplets have "
                f"{human_triplets.n_concepts} concepts"
            )
        gram = x @ x.T
        acc = _tie_accuracy(_triplet_logits(x, human_triplets, gram), human_triplets)
        nll = _best_temperature_nll(_gram_logits(gram, human_triplets), human_triplets)
        centred = _tie_accuracy(_triplet_logits(x - x.mean(axis=0), human_triplets), human_triplets)
        others = corr.loc[name].drop(index=name)
        row: dict[str, Any] = {
            "model": name,
            "feature_dim": int(x.shape[1]),
            "zero_shot_accuracy": acc,
            "zero_shot_nll": nll,
            "zero_shot_accuracy_centred": centred,
            "zero_shot_z": (acc - 1 / 3) / math.sqrt((1 / 3) * (2 / 3) / m),
            "rdm_corr_min": float(others.min()) if len(others) else math.nan,
            "rdm_corr_median": float(others.median()) if len(others) else math.nan,
            "rdm_corr_max": float(others.max()) if len(others) else math.nan,
            "most_similar": str(others.idxmax()) if len(others) else "",
        }
        row["near_copy"] = bool(row["rdm_corr_max"] > near_copy_threshold)
        row["uninformative"] = bool(acc < 1 / 3 + chance_margin)
        if human_embedding is not None:
            both = rdm_correlations({"human": human_embedding, name: x}, metric)
            row["rdm_corr_human"] = float(both.iloc[0, 1])
        rows.append(row)
    report = pd.DataFrame(rows).set_index("model")
    iu = np.triu_indices(len(names), 1)
    pairs = corr.to_numpy()[iu]
    report.attrs["rdm_correlations"] = corr
    report.attrs["rdm_metric"] = metric
    report.attrs["rdm_correlation_spread"] = {
        "min": float(pairs.min()) if pairs.size else math.nan,
        "median": float(np.median(pairs)) if pairs.size else math.nan,
        "max": float(pairs.max()) if pairs.size else math.nan,
    }
    return report


def _gram_logits(gram: np.ndarray, triplets: Triplets) -> np.ndarray:
    """(m, 3) similarities ``(s_jk, s_ik, s_ij)`` of each triplet (i, j, k), read from ``gram``."""
    i, j, k = (triplets.ids[:, c].astype(np.int64) for c in range(3))
    return np.stack([gram[j, k], gram[i, k], gram[i, j]], axis=1)


def _triplet_logits(
    x: np.ndarray, triplets: Triplets, gram: np.ndarray | None = None
) -> np.ndarray:
    """(m, 3) dot-product similarities of each triplet (:func:`_gram_logits`), computed the way
    :func:`modelrecovery.probe.accuracy_and_nll` computes them, so that the accuracy's exact
    ties are the same: from one Gram matrix (``gram``, else computed) when the concepts are
    few (``n^2 <= m p``), else triplet by triplet, as sums of the products of the rows.

    Raises ValueError when they are not finite (features so large that they overflow)."""
    m = len(triplets)
    if x.shape[0] ** 2 <= m * x.shape[1]:
        logits = _gram_logits(x @ x.T if gram is None else gram, triplets)
    else:
        ids = triplets.ids.astype(np.int64)
        logits = np.empty((m, 3), dtype=np.float64)
        chunk = 1 << 16
        for start in range(0, m, chunk):
            a, b, c = (x[ids[start : start + chunk, col]] for col in range(3))
            logits[start : start + chunk, 0] = (b * c).sum(1)
            logits[start : start + chunk, 1] = (a * c).sum(1)
            logits[start : start + chunk, 2] = (a * b).sum(1)
    if not np.isfinite(logits).all():
        raise ValueError(
            f"the similarities of the features are not finite (they overflow float64; largest "
            f"|x| = {np.abs(x).max():.3g}): rescale the features (e.g. divide by their largest "
            "norm)"
        )
    return logits


def _tie_accuracy(logits: np.ndarray, triplets: Triplets) -> float:
    """Share of triplets whose largest similarity-logit is at the response; a response tied
    for the largest with one or two other positions earns 1/2 or 1/3. Counted in sixths and
    divided once, so all-tied triplets give exactly 1/3 (the definition of
    :func:`modelrecovery.probe.fit.tie_accuracy`)."""
    m = logits.shape[0]
    tied = logits == logits.max(axis=1, keepdims=True)
    hit = tied[np.arange(m), triplets.odd.astype(np.int64)]
    return int((hit * (6 // tied.sum(axis=1))).sum()) / (6 * m)


def _best_temperature_nll(logits: np.ndarray, triplets: Triplets) -> float:
    """Mean NLL of the dot-product model (``logits`` from :func:`_gram_logits`) at its best
    single temperature."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    rows = np.arange(len(triplets))
    odd = triplets.odd.astype(np.int64)

    def nll(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[rows, odd]))

    scale = math.log(float(np.std(logits)) or 1.0)
    best = minimize_scalar(nll, bounds=(scale - 12, scale + 12), method="bounded")
    return min(float(best.fun), math.log(3))
