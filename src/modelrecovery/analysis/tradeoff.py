"""Recovery against predictive accuracy on human data (docs/science/method.md §5, trade-off).

The human-data accuracy of a flexibility level is the mean over the generators of that
level's jobs of their ``human_accuracy`` rows *at that level* in the ``models`` table
(rows matched by ``(model, level)``; another level's rows are never used). Old ``models``
tables without ``level`` are matched by ``family``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from modelrecovery.analysis.metrics import (
    _is_na,
    _key_text,
    add_condition,
    default_groups,
    level_sort_key,
    recovery_accuracy,
)
from modelrecovery.analysis.pooling import ensure_level, ensure_models_level

__all__ = [
    "PAPER_REFERENCE",
    "human_accuracy_by_family",
    "human_accuracy_by_level",
    "paper_reference",
    "paper_table",
    "tradeoff_table",
]

#: Approximate headline numbers stated in the paper (Avitan & Golan, NeurIPS 2025) per
#: flexibility family: mean prediction accuracy of the fitted models on held-out human
#: triplets, and recovery accuracy at the paper's largest N (20 models, chance 5%).
#: ``recovery_bound`` is ``"<"`` where the paper gives only an upper bound.
PAPER_REFERENCE: dict[str, dict[str, object]] = {
    "zero_shot": {"human_accuracy": 0.34, "recovery": 0.95, "recovery_bound": "~"},
    "diagonal": {"human_accuracy": 0.47, "recovery": 0.85, "recovery_bound": "~"},
    "rectangular": {"human_accuracy": 0.55, "recovery": 0.75, "recovery_bound": "~"},
    "full": {"human_accuracy": 0.63, "recovery": 0.80, "recovery_bound": "<"},
}

_HUMAN_COLS = ["n_models", "human_mean", "human_sem"]


def _summary(values: np.ndarray) -> dict[str, float]:
    v = np.sort(np.asarray(values, dtype=float))  # order-free sums
    v = v[np.isfinite(v)]
    return {
        "n_models": len(v),
        "human_mean": float(v.mean()) if len(v) else np.nan,
        "human_sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan,
    }


def _by(models: pd.DataFrame, key: str, column: str, model_names) -> pd.DataFrame:
    m = models if model_names is None else models[models["model"].isin(list(model_names))]
    m = m.assign(_v=pd.to_numeric(m[column], errors="coerce")).dropna(subset=["_v"])
    if key not in m.columns:
        m = m.assign(**{key: pd.NA})
    rows = [
        {key: value, **_summary(sub["_v"].to_numpy())}
        for value, sub in m.groupby(key, dropna=False, sort=True)
    ]
    out = pd.DataFrame(rows, columns=[key, *_HUMAN_COLS])
    if key == "level" and len(out):
        order = sorted(range(len(out)), key=lambda i: level_sort_key(out[key].iloc[i]))
        out = out.iloc[order].reset_index(drop=True)
    return out


def human_accuracy_by_level(
    models: pd.DataFrame,
    *,
    column: str = "human_accuracy",
    model_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean (and SEM over models) of a per-model human-data score for every level.

    Parameters
    ----------
    models : the ``models`` table (one row per model and level; old tables: per model and
        family, the level derived from the family).
    column : the score (``human_accuracy`` by default).
    model_names : restrict to these models (e.g. the generators of the jobs).

    Returns
    -------
    ``level``, ``n_models``, ``human_mean``, ``human_sem``, in level order.
    """
    return _by(ensure_level(models), "level", column, model_names)


def human_accuracy_by_family(
    models: pd.DataFrame,
    *,
    column: str = "human_accuracy",
    model_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """As :func:`human_accuracy_by_level`, grouped by ``family`` (``NA`` when absent)."""
    return _by(models, "family", column, model_names)


def _match_column(jobs: pd.DataFrame, models: pd.DataFrame, by: Sequence[str]) -> str:
    if "level" in by and "level" in models.columns:
        return "level"
    if "family" in by:
        return "family"
    raise ValueError("tradeoff_table needs 'level' (or 'family') among the grouping columns")


def _human_per_condition(
    jobs: pd.DataFrame, models: pd.DataFrame, cond_by: Sequence[str], match: str, column: str
) -> dict[tuple, dict[str, float]]:
    """Human-data summary per condition: that condition's generators at its level."""
    out = {}
    for key, sub in jobs.groupby(list(cond_by), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        value = sub[match].iloc[0]
        if match in models.columns:
            rows = models[models[match].astype(object).map(_key_text) == _key_text(value)]
        else:  # models without family: one row per model, the same for every family
            rows = models
        rows = rows.drop_duplicates("model", keep="last")
        rows = rows[rows["model"].isin(set(sub["generator"]))]
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        summary = _summary(values)
        summary["n_generators"] = int(sub["generator"].nunique())
        out[tuple(_key_text(k) for k in key)] = summary
    return out


def tradeoff_table(
    jobs: pd.DataFrame,
    models: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    column: str = "human_accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Recovery accuracy and mean human-data accuracy, one row per condition and N.

    The human-data accuracy of a condition is the mean over the generators of its jobs of
    their ``models`` rows at the condition's level (matched by ``(model, level)``; by
    ``family`` for old tables without ``level``). Generators without such a row are left
    out (``n_models < n_generators`` then); another level's rows are never used.

    Returns
    -------
    :func:`~modelrecovery.analysis.metrics.recovery_accuracy` columns (grouped by ``by``,
    default condition and ``n_train``) plus ``n_generators``, ``n_models``,
    ``human_mean`` and ``human_sem`` (SEM over models).
    """
    jobs = ensure_level(jobs)
    models = ensure_models_level(models, jobs) if "family" in models.columns else models
    by = default_groups(jobs) if by is None else list(by)
    match = _match_column(jobs, models, by)
    rec = recovery_accuracy(jobs, by, confidence=confidence)
    cond_by = [c for c in by if c != "n_train"]
    human = _human_per_condition(jobs, models, cond_by, match, column)
    extra = {c: [] for c in ["n_generators", *_HUMAN_COLS]}
    for _, row in rec.iterrows():
        h = human.get(tuple(_key_text(row[c]) for c in cond_by), {})
        for c in extra:
            extra[c].append(h.get(c, 0 if c.startswith("n_") else np.nan))
    out = rec.copy()
    for c, values in extra.items():
        out[c] = values
    return out


def paper_reference(level: object) -> dict[str, object]:
    """The paper's approximate numbers for a level (``{}`` for unknown levels).

    Keys ``paper_human_accuracy`` and ``paper_recovery`` (floats) and
    ``paper_recovery_text`` (e.g. ``"~95%"``, ``"<80%"``).
    """
    if _is_na(level):
        return {}
    for name, ref in PAPER_REFERENCE.items():
        if str(level).startswith(name):
            return {
                "paper_human_accuracy": ref["human_accuracy"],
                "paper_recovery": ref["recovery"],
                "paper_recovery_text": f"{ref['recovery_bound']}{ref['recovery']:.0%}",
            }
    return {}


def paper_table(
    jobs: pd.DataFrame,
    models: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    column: str = "human_accuracy",
    confidence: float = 0.95,
    reference: bool = True,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The paper's table: per level (condition), human-data accuracy and recovery.

    One row per condition, in level order (zero_shot, diagonal, rectangular by k, full):
    mean prediction accuracy on held-out human triplets over that level's generators
    (± SEM over models, rows matched by ``(model, level)``), and recovery accuracy with its
    exact binomial CI at the condition's largest N (``n_train``). Recovery at every N is
    :func:`tradeoff_table` (pass it as ``table`` to reuse it).

    Parameters
    ----------
    jobs, models : results tables.
    by : grouping columns, as for :func:`tradeoff_table` (must include ``n_train``).
    column : per-model human-data score.
    confidence : level of the binomial intervals.
    reference : add the paper's approximate numbers (``paper_human_accuracy``,
        ``paper_recovery``, ``paper_recovery_text``; see :data:`PAPER_REFERENCE`).
    table : precomputed :func:`tradeoff_table` output.

    Returns
    -------
    Condition columns, ``condition`` (readable label, when not among them), ``n_train``,
    ``n_sizes`` (number of N of the condition), ``n_jobs``, ``n_recovered``,
    ``recovery``, ``ci_low``, ``ci_high``, ``chance``, ``n_generators``, ``n_models``,
    ``human_mean``, ``human_sem``, and the reference columns.
    """
    if table is None:
        table = tradeoff_table(jobs, models, by, column=column, confidence=confidence)
    by = default_groups(ensure_level(jobs)) if by is None else list(by)
    cond_by = [c for c in by if c != "n_train"]
    rows = []
    groups = table.groupby(cond_by, dropna=False, sort=False) if cond_by else [(0, table)]
    for _key, sub in groups:
        sub = sub.sort_values("n_train")
        row = sub.iloc[-1].to_dict()
        row["n_sizes"] = len(sub)
        rows.append(row)
    out = pd.DataFrame(rows).rename(columns={"accuracy": "recovery"})
    if "condition" not in out.columns:
        out = add_condition(out, cond_by)
    level_col = "level" if "level" in out.columns else "family"
    if reference:
        refs = [paper_reference(v) for v in out.get(level_col, pd.Series(pd.NA, index=out.index))]
        for c in ("paper_human_accuracy", "paper_recovery", "paper_recovery_text"):
            out[c] = [r.get(c, np.nan) for r in refs]
    cols = [
        *[c for c in cond_by if c != "condition"],
        "condition",
        "n_train",
        "n_sizes",
        "n_jobs",
        "n_recovered",
        "recovery",
        "ci_low",
        "ci_high",
        "chance",
        "n_generators",
        *_HUMAN_COLS,
    ]
    if "tied_top_share" in out.columns:
        cols.insert(cols.index("chance") + 1, "tied_top_share")
    if reference:
        cols += ["paper_human_accuracy", "paper_recovery", "paper_recovery_text"]
    levels = out[level_col] if level_col in out.columns else out["condition"]
    labels = out["condition"]
    keys = [(level_sort_key(v), str(c)) for v, c in zip(levels, labels, strict=True)]
    order = sorted(range(len(out)), key=keys.__getitem__)
    return out[cols].iloc[order].reset_index(drop=True)
