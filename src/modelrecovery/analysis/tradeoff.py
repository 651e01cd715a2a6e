"""Recovery against predictive accuracy on human data (method.md section 5, trade-off)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from modelrecovery.analysis.metrics import default_groups, recovery_accuracy

__all__ = ["human_accuracy_by_family", "tradeoff_table"]


def human_accuracy_by_family(
    models: pd.DataFrame,
    *,
    column: str = "human_accuracy",
    model_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean (and SEM) of a per-model human-data score for every family.

    Parameters
    ----------
    models : the ``models`` table (rows per model, or per model and family).
    column : the score (``human_accuracy`` by default).
    model_names : restrict to these models (e.g. the generators of the jobs).

    Returns
    -------
    ``family`` (``NA`` when ``models`` has none), ``n_models``, ``human_mean``, ``human_sem``.
    """
    m = models if model_names is None else models[models["model"].isin(list(model_names))]
    m = m.assign(_v=pd.to_numeric(m[column], errors="coerce")).dropna(subset=["_v"])
    if "family" not in m.columns:
        m = m.assign(family=pd.NA)
    rows = []
    for fam, sub in m.groupby("family", dropna=False, sort=True):
        v = np.sort(sub["_v"].to_numpy(dtype=float))  # order-free sums
        rows.append(
            {
                "family": fam,
                "n_models": len(v),
                "human_mean": float(v.mean()),
                "human_sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["family", "n_models", "human_mean", "human_sem"])


def tradeoff_table(
    jobs: pd.DataFrame,
    models: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    column: str = "human_accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Recovery accuracy and mean human-data accuracy, one row per condition and N.

    The human-data accuracy of a family is the mean over the models that generated jobs of
    that family (all models of the family when none match). When ``models`` has no
    ``family`` column, every family gets the same value.

    Returns
    -------
    :func:`~modelrecovery.analysis.metrics.recovery_accuracy` columns (grouped by ``by``,
    default condition and ``n_train``) plus ``n_models``, ``human_mean``, ``human_sem``.
    """
    by = default_groups(jobs) if by is None else list(by)
    if "family" not in by:
        raise ValueError("tradeoff_table needs 'family' among the grouping columns")
    rec = recovery_accuracy(jobs, by, confidence=confidence)
    parts = []
    for fam, sub in jobs.groupby("family", dropna=False, sort=True):
        fam_models = models
        if "family" in models.columns:
            fam_models = models[models["family"] == fam]
        gens = set(sub["generator"])
        names = sorted(gens & set(fam_models["model"])) or None
        h = human_accuracy_by_family(fam_models, column=column, model_names=names)
        if len(h):
            row = h.iloc[[0]].assign(family=fam)
        else:
            row = pd.DataFrame(
                {"family": [fam], "n_models": [0], "human_mean": [np.nan], "human_sem": [np.nan]}
            )
        parts.append(row)
    human = pd.concat(parts, ignore_index=True)
    return rec.merge(human, on="family", how="left")
