"""Pool the results tables of several recover runs, like with like.

A job is identified by what it measured, not by its ``job_id`` (which changes with every
code commit): ``(condition_key, generator, n_train, seed)``. Pooling keeps exactly one job
per such key, the latest source winning; ``scores`` and ``fits`` follow the jobs kept
(same source, same ``job_id``); ``models`` keeps one row per ``(model, level)``, the latest
source winning. Tables written before ``level`` and ``condition_key`` existed get them
derived (:func:`ensure_level`, :func:`ensure_condition_key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from modelrecovery.analysis.metrics import CONDITION_COLUMNS, _is_na, _key_text, per_combination

__all__ = [
    "JOB_KEY",
    "KEY_COLUMNS",
    "Pooled",
    "dedupe_jobs",
    "derive_condition_key",
    "ensure_condition_key",
    "ensure_level",
    "ensure_models_level",
    "follow_jobs",
    "level_name",
    "pool_tables",
]

#: One result per (condition, generator, N, seed).
JOB_KEY: tuple[str, ...] = ("condition_key", "generator", "n_train", "seed")

#: Columns hashed into a derived ``condition_key`` (those present and not missing).
KEY_COLUMNS: tuple[str, ...] = tuple(c for c in CONDITION_COLUMNS if c != "condition_key")

_SORT = {
    "jobs": ["condition_key", "generator", "n_train", "seed", "job_id"],
    "scores": ["job_id", "candidate"],
    "fits": ["job_id", "candidate", "lam", "fold"],
    "models": ["model", "level"],
}


def level_name(family: object, k: object = None) -> object:
    """Level label of a probe family: ``rectangular<k>`` for rectangular, else the family."""
    if _is_na(family):
        return pd.NA
    if str(family) == "rectangular" and not _is_na(k):
        return f"rectangular{_key_text(k)}"
    return str(family)


def ensure_level(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``table`` whose missing ``level`` values come from ``family`` (and ``k``)."""
    out = table.copy()
    if "family" not in out.columns:
        if "level" not in out.columns:
            out["level"] = pd.Series(pd.NA, index=out.index, dtype=object)
        return out
    if "level" not in out.columns:
        out["level"] = pd.Series(pd.NA, index=out.index, dtype=object)
    missing = out["level"].isna().to_numpy()
    if missing.any():
        cols = ["family", "k"] if "k" in out.columns else ["family"]
        sub = out.loc[missing, cols]
        derived = per_combination(sub, cols, lambda v: level_name(*v))
        out["level"] = out["level"].astype(object)
        out.loc[missing, "level"] = derived
    return out


def derive_condition_key(table: pd.DataFrame) -> pd.Series:
    """16-hex SHA-256 of the condition columns of each row (:data:`KEY_COLUMNS`).

    Missing values are left out, so a column that is absent and a column that is missing
    on a row give the same key (tables of old runs pool with themselves, whatever they are
    concatenated with).
    """
    cols = [c for c in KEY_COLUMNS if c in table.columns]
    if not cols:
        digest = hashlib.sha256(b"").hexdigest()[:16]
        return pd.Series(digest, index=table.index, dtype=object)

    def key(values: tuple) -> str:
        text = "|".join(
            f"{c}={_key_text(v)}" for c, v in zip(cols, values, strict=True) if not _is_na(v)
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    return pd.Series(per_combination(table, cols, key), index=table.index, dtype=object)


def ensure_condition_key(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``table`` with ``level`` and ``condition_key`` filled where missing."""
    out = ensure_level(table)
    if "condition_key" not in out.columns:
        out["condition_key"] = pd.Series(pd.NA, index=out.index, dtype=object)
    missing = out["condition_key"].isna().to_numpy()
    if missing.any():
        out["condition_key"] = out["condition_key"].astype(object)
        out.loc[missing, "condition_key"] = derive_condition_key(out.loc[missing]).to_numpy()
    return out


def ensure_models_level(models: pd.DataFrame, jobs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Copy of a ``models`` table with ``level`` filled where missing.

    Old tables have one row per model and a ``family``: the level is the family, except
    for ``rectangular`` when ``jobs`` holds exactly one rectangular level (then that one).
    """
    out = ensure_level(models)
    if jobs is None or "family" not in out.columns or not len(out):
        return out
    levels = ensure_level(jobs)["level"].dropna().astype(str)
    rect = sorted({lev for lev in levels if lev.startswith("rectangular")})
    if len(rect) == 1:
        old = [(not _is_na(v)) and str(v) == "rectangular" for v in out["level"]]
        out.loc[old, "level"] = rect[0]
    return out


def dedupe_jobs(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per :data:`JOB_KEY` (and per ``job_id``), the last occurrence winning.

    ``level`` and ``condition_key`` are derived first where missing.
    """
    out = ensure_condition_key(jobs)
    out = out.drop_duplicates(list(JOB_KEY), keep="last")
    return out.drop_duplicates("job_id", keep="last")


def follow_jobs(table: pd.DataFrame, jobs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` whose ``job_id`` is in ``jobs``, one per ``keys`` (last wins).

    The condition columns of ``jobs`` (those it has among ``level``, ``condition_key`` and
    :data:`KEY_COLUMNS`) are copied onto the rows by ``job_id``, so every table of a job
    carries the same condition.
    """
    out = table[table["job_id"].isin(set(jobs["job_id"]))]
    out = out.drop_duplicates([k for k in keys if k in out.columns], keep="last").copy()
    by_id = jobs.drop_duplicates("job_id", keep="last").set_index("job_id")
    for col in ("condition_key", *KEY_COLUMNS):
        if col in by_id.columns:
            out[col] = by_id[col].reindex(out["job_id"]).to_numpy()
    return out


@dataclass
class Pooled:
    """Result of :func:`pool_tables`.

    Attributes
    ----------
    tables : ``jobs``, ``scores``, ``fits``, ``models`` (empty DataFrames when no source
        had them).
    n_job_rows : job rows over all sources.
    n_duplicates : job rows dropped because a later source held the same key.
    kept_per_source : jobs kept from each source (by source name).
    """

    tables: dict[str, pd.DataFrame]
    n_job_rows: int = 0
    n_duplicates: int = 0
    kept_per_source: dict[str, int] = field(default_factory=dict)


def _sorted(table: pd.DataFrame, name: str) -> pd.DataFrame:
    keys = [k for k in _SORT[name] if k in table.columns]
    if not keys or table.empty:
        return table.reset_index(drop=True)
    return table.sort_values(keys, kind="mergesort").reset_index(drop=True)


def pool_tables(
    sources: Sequence[tuple[str, Mapping[str, pd.DataFrame]]],
) -> Pooled:
    """Pool the results tables of several runs, one result per job key, latest winning.

    Parameters
    ----------
    sources : ``(name, tables)`` pairs, oldest first; ``tables`` maps ``jobs``, ``scores``,
        ``fits``, ``models`` to DataFrames (any may be missing).

    Returns
    -------
    :class:`Pooled`. Jobs: one per ``(condition_key, generator, n_train, seed)`` (the key
    derived where the tables lack it), from the latest source holding it. Scores and fits:
    the rows of the kept jobs from the source each job was kept from (same ``job_id``),
    with the job's ``level`` and ``condition_key``. Models: one row per ``(model, level)``.
    """
    jobs_parts = []
    for i, (_name, tables) in enumerate(sources):
        jobs = tables.get("jobs")
        if jobs is not None and len(jobs):
            jobs_parts.append(ensure_condition_key(jobs).assign(_source=i))
    if not jobs_parts:
        empty = {name: pd.DataFrame() for name in _SORT}
        return Pooled(empty, 0, 0, {name: 0 for name, _ in sources})
    all_jobs = pd.concat(jobs_parts, ignore_index=True)
    kept = all_jobs.drop_duplicates(list(JOB_KEY), keep="last")
    kept = kept.drop_duplicates("job_id", keep="last")
    out: dict[str, pd.DataFrame] = {}
    for name, keys in (("scores", _SORT["scores"]), ("fits", _SORT["fits"])):
        parts = []
        for i, (_src, tables) in enumerate(sources):
            table = tables.get(name)
            mine = kept[kept["_source"] == i]
            if table is None or not len(table) or not len(mine):
                continue
            parts.append(follow_jobs(table, mine, keys))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if len(frame):
            frame = frame.drop_duplicates([k for k in keys if k in frame.columns], keep="last")
        out[name] = _sorted(frame, name)
    model_parts = []
    for i, (_src, tables) in enumerate(sources):
        models = tables.get("models")
        if models is not None and len(models):
            model_parts.append(ensure_models_level(models, tables.get("jobs")).assign(_source=i))
    if model_parts:
        models = pd.concat(model_parts, ignore_index=True)
        models = models.drop_duplicates(["model", "level"], keep="last").drop(columns="_source")
    else:
        models = pd.DataFrame()
    out["models"] = _sorted(models, "models")
    counts = kept["_source"].value_counts()
    out["jobs"] = _sorted(kept.drop(columns="_source"), "jobs")
    return Pooled(
        tables={name: out[name] for name in _SORT},
        n_job_rows=len(all_jobs),
        n_duplicates=len(all_jobs) - len(kept),
        kept_per_source={name: int(counts.get(i, 0)) for i, (name, _) in enumerate(sources)},
    )
