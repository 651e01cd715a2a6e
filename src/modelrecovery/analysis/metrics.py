"""Recovery statistics from the results tables (docs/science/method.md §5).

Every function is pure: results tables in (``jobs``, ``scores``; see
``docs/reference/results-tables.md``), tidy DataFrames out. Grouping defaults to the experimental
condition (``level`` and ``family``, plus whichever of the other :data:`CONDITION_COLUMNS`
vary) and ``n_train``, so concatenations of tables from several runs never pool different
conditions. Ranks may be fractional (average ranks of tied candidates).
Results do not depend on the row order of the inputs: groups are sorted, bootstrap samples
are sorted before resampling, and each group draws from its own generator seeded by
``(seed, crc32(group key))``.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from modelrecovery.study.spec import FAMILIES

__all__ = [
    "CONDITION_COLUMNS",
    "LEVEL_ORDER",
    "add_condition",
    "binomial_ci",
    "bootstrap_mean_ci",
    "condition_columns",
    "confusion_matrix",
    "correct_rank",
    "default_groups",
    "false_rank",
    "group_rng",
    "level_sort_key",
    "mean_reciprocal_rank",
    "per_combination",
    "rank_summary",
    "recovery_accuracy",
    "recovery_curve",
    "recovery_metric_points",
    "recovery_chart_points",
    "size_steps",
    "sort_conditions",
    "win_share",
]

#: Columns that define an experimental condition, in label order. ``level`` and ``family``
#: always group (when present); the others only when they take several values.
#: ``condition_key`` (a hash of the whole condition) groups only when the other columns do
#: not already separate its values.
CONDITION_COLUMNS: tuple[str, ...] = (
    "level",
    "family",
    "k",
    "regulariser",
    "criterion",
    "tie_rule",
    "stopping",
    "warm_start",
    "sampling",
    "lams",
    "candidate_set",
    "triplet_selection",
    "selection_pool",
    "selection_batches",
    "selection_criterion",
    "undecided_z",
    "reduction",
    "evaluation",
    "reshuffle",
    "matmul_precision",
    "condition_key",
)
_ALWAYS = ("level", "family")

#: Order of the flexibility levels in tables and figures (``rectangular<k>`` by ``k``).
LEVEL_ORDER: tuple[str, ...] = FAMILIES  # the vocabulary's order


# ----------------------------------------------------------------------------- grouping
def _varies(df: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` separates conditions: it takes more than one value within some
    level (a value the level alone sets, as zero-shot's λ = 0 beside the other levels'
    grid, names no condition of its own)."""
    if "level" not in df.columns or col in ("level", "family", "k"):
        return df[col].nunique(dropna=False) > 1
    return bool((df.groupby("level", dropna=False)[col].nunique(dropna=False) > 1).any())


def condition_columns(df: pd.DataFrame) -> list[str]:
    """Columns that identify an experimental condition in ``df``.

    ``level`` and ``family`` (when present) always; ``k``, ``regulariser``, ``criterion``,
    ``tie_rule``, ``stopping``, ``warm_start``, ``sampling``, ``lams`` and ``candidate_set``
    only when they take more than one value within a level (missing values count as a
    value);
    ``condition_key`` only when it separates rows that the other columns do not.
    """
    cols = []
    for col in CONDITION_COLUMNS:
        if col not in df.columns or col == "condition_key":
            continue
        if col in _ALWAYS or _varies(df, col):
            cols.append(col)
    if "condition_key" in df.columns and df["condition_key"].nunique(dropna=False) > 1:
        n_visible = len(df[cols].drop_duplicates()) if cols else 1
        if len(df[[*cols, "condition_key"]].drop_duplicates()) > n_visible:
            cols.append("condition_key")
    return cols


def level_sort_key(label: object) -> tuple[int, float, str]:
    """Sort key of a level or condition label: zero_shot, diagonal, rectangular (by k), full.

    The label's first comma-separated part is read as the level (``"rectangular8"``,
    ``"rectangular, k=8"`` and ``"full, l2"`` all work); unknown levels sort last.
    """
    text = str(label)
    head = text.split(",")[0].strip()
    for i, name in enumerate(LEVEL_ORDER):
        if head.startswith(name):
            rest = head[len(name) :]
            match = re.match(r"\D*(\d+)", rest) if rest else re.search(r"k=(\d+)", text)
            k = float(match.group(1)) if match and name == "rectangular" else -1.0
            return i, k, text
    return len(LEVEL_ORDER), -1.0, text


def sort_conditions(values: Iterable[object]) -> list[str]:
    """Distinct labels (as text) in level order (:func:`level_sort_key`)."""
    return sorted({str(v) for v in values}, key=level_sort_key)


def default_groups(df: pd.DataFrame) -> list[str]:
    """Default grouping: :func:`condition_columns` followed by ``n_train``."""
    return [*condition_columns(df), "n_train"]


def _key_text(value: object) -> str:
    """Stable text for a group-key element (``30``, ``30.0`` and ``np.int64(30)`` agree)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "NA"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def _is_na(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _label_part(col: str, value: object) -> str | None:
    """Text of one condition column in a label (None: left out)."""
    if _is_na(value):
        return None
    if col == "k":
        return f"k={_key_text(value)}"
    if col == "criterion":
        return f"select by {value}"
    if col == "tie_rule":
        return f"ties: {value}"
    if col == "stopping":
        return f"stopping: {value}"
    if col == "warm_start":
        return "warm start" if bool(value) else "cold start"
    if col == "sampling":
        return f"sampling: {value}"
    if col == "lams":
        return f"lams={value}"
    if col == "candidate_set":
        names = [n for n in str(value).split(",") if n]
        if len(names) <= 3:
            return "candidates " + ",".join(names)
        return f"{len(names)} candidates #{zlib.crc32(str(value).encode()):08x}"
    if col == "triplet_selection":
        return f"triplets: {value}"
    if col == "selection_pool":
        return f"pool {_key_text(value)}N"
    if col == "selection_batches":
        return f"{_key_text(value)} batches"
    if col == "selection_criterion":
        return f"crown by {value}"
    if col == "undecided_z":
        return f"undecided below z={_key_text(value)}"
    if col == "reduction":
        return f"row-space reduction: {value}"
    if col == "evaluation":
        return f"evaluation: {value}"
    if col == "reshuffle":
        return "reshuffled steps" if bool(value) else "fixed order"
    if col == "matmul_precision":
        return f"matmul: {value}"
    if col == "condition_key":
        return None  # added only where labels would otherwise coincide
    return str(value)


def per_combination(
    df: pd.DataFrame, columns: Sequence[str], func: Callable[[tuple], object]
) -> np.ndarray:
    """``func(values)`` for each distinct combination of ``columns``, broadcast to the rows.

    ``func`` receives the tuple of the row's values (in ``columns`` order) once per
    combination; missing values group together.
    """
    columns = list(columns)
    if not len(df):
        return np.array([], dtype=object)
    codes = df.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(df))).groupby(codes).first()
    values = df[columns]
    out = np.empty(int(codes.max()) + 1, dtype=object)
    for code, pos in first.items():
        out[int(code)] = func(tuple(values.iloc[int(pos)]))
    return out[codes]


def add_condition(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Copy of ``df`` with a readable ``condition`` label column.

    Parameters
    ----------
    df : a results table.
    columns : condition columns to combine (default :func:`condition_columns` of ``df``).
        Missing values are left out of the label, e.g. ``"full"``, ``"rectangular8, l2"``,
        ``"full, ties: first, select by nll"``. When ``level`` is among them, ``family``
        and ``k`` are left out (the level names them). Conditions whose labels would
        coincide (they differ only in ``condition_key``) get ``#<first 6 hex of the key>``.
    """
    columns = condition_columns(df) if columns is None else list(columns)
    out = df.copy()
    if not columns:
        out["condition"] = "all"
        return out
    shown = [c for c in columns if not ("level" in columns and c in ("family", "k"))]

    def label(values: tuple) -> str:
        parts = [_label_part(col, v) for col, v in zip(columns, values, strict=True)]
        parts = [p for col, p in zip(columns, parts, strict=True) if p and col in shown]
        return ", ".join(parts) if parts else "all"

    labels = per_combination(out, columns, label)
    if "condition_key" in columns and len(out):
        keys = out["condition_key"].astype(str).str[:6].to_numpy()
        pairs = pd.DataFrame({"label": labels, "key": keys}).drop_duplicates()
        clash = set(pairs.loc[pairs["label"].duplicated(keep=False), "label"])
        if clash:
            tagged = np.array([f"{lab} #{k}" for lab, k in zip(labels, keys, strict=True)])
            labels = np.where(np.isin(labels, list(clash)), tagged, labels)
    out["condition"] = labels if len(out) else np.array([], dtype=object)
    return out


def _groups(df: pd.DataFrame, by: Sequence[str]) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """Sorted ``(key tuple, sub-frame)`` pairs; the whole frame when ``by`` is empty."""
    by = list(by)
    if not by:
        yield (), df
        return
    for key, sub in df.groupby(by, dropna=False, sort=True):
        yield (key if isinstance(key, tuple) else (key,)), sub


def group_rng(seed: int, key: Sequence[Hashable]) -> np.random.Generator:
    """Generator for one group, seeded by ``(seed, crc32 of the group key's text)``.

    The stream of a group depends only on ``seed`` and the group's key, not on which other
    groups exist or in which order rows arrive.
    """
    text = "|".join(_key_text(k) for k in key)
    return np.random.default_rng([int(seed), zlib.crc32(text.encode())])


def _recovered(jobs: pd.DataFrame) -> pd.Series:
    if "recovered" in jobs.columns:
        return jobs["recovered"].astype(bool)
    return jobs["winner"] == jobs["generator"]


# ----------------------------------------------------------------------------- intervals
def binomial_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion ``k / n``.

    Returns ``(nan, nan)`` when ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    rng: int | np.random.Generator,
    confidence: float = 0.95,
    n_resamples: int = 9999,
) -> tuple[float, float, str]:
    """BCa bootstrap confidence interval of the mean (``scipy.stats.bootstrap``).

    The values are sorted first, so the interval depends on the multiset of values and the
    generator only. Returns ``(low, high, method)``: ``method`` is ``"BCa"``; ``"constant"``
    when all values are equal (interval of zero width); ``"percentile"`` when BCa is
    undefined for the bootstrap distribution (same resamples); ``"none"`` with fewer than 2
    values (``nan`` interval).
    """
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    if x.size < 2:
        return float("nan"), float("nan"), "none"
    if np.all(x == x[0]):
        return float(x[0]), float(x[0]), "constant"
    gen = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    state = gen.bit_generator.state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (x,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="BCa",
            rng=gen,
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isfinite(low) and np.isfinite(high):
        return low, high, "BCa"
    gen.bit_generator.state = state
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=gen,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high), "percentile"


# ----------------------------------------------------------------------------- recovery
def recovery_accuracy(
    jobs: pd.DataFrame, by: Sequence[str] | None = None, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Share of jobs whose winner is the generator, with exact binomial CIs.

    Parameters
    ----------
    jobs : the ``jobs`` table.
    by : grouping columns (default :func:`default_groups`).
    confidence : level of the Clopper-Pearson interval.

    Returns
    -------
    One row per group: the ``by`` columns, ``n_jobs``, ``n_recovered``, ``accuracy``,
    ``ci_low``, ``ci_high`` and ``chance`` (mean of ``1 / n_candidates``); when ``jobs``
    has ``n_tied_top``, also ``tied_top_share`` (share of jobs where more than one
    candidate tied at the best score).
    """
    by = default_groups(jobs) if by is None else list(by)
    df = jobs.assign(_rec=_recovered(jobs))
    rows = []
    for key, sub in _groups(df, by):
        n, k = len(sub), int(sub["_rec"].sum())
        low, high = binomial_ci(k, n, confidence)
        chance = (
            float(np.mean(np.sort(1.0 / sub["n_candidates"].to_numpy(dtype=float))))
            if "n_candidates" in sub.columns
            else float("nan")
        )
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n_jobs": n,
                "n_recovered": k,
                "accuracy": k / n if n else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "chance": chance,
            }
        )
        if "n_tied_top" in sub.columns:
            tied = pd.to_numeric(sub["n_tied_top"], errors="coerce").to_numpy(dtype=float)
            rows[-1]["tied_top_share"] = float(np.mean(tied > 1)) if n else float("nan")
    cols = [*by, "n_jobs", "n_recovered", "accuracy", "ci_low", "ci_high", "chance"]
    if "n_tied_top" in jobs.columns:
        cols.append("tied_top_share")
    return pd.DataFrame(rows, columns=cols)


def recovery_curve(jobs: pd.DataFrame, *, split_conditions: bool = False) -> pd.DataFrame:
    """Recovery accuracy per flexibility level and N: the curves the recover and analyze
    stages log as MLflow metrics (see :func:`recovery_metric_points`).

    Parameters
    ----------
    jobs : the ``jobs`` table (``level``, ``n_train``, ``recovered``; ``triplet_selection``
        when the grid has designs).
    split_conditions : also group by ``condition_key`` (derived where missing), for
        tables pooled from several runs where one level may hold several conditions
        (a recover run holds one condition per level and triplet selection).

    Returns
    -------
    Columns ``level``, ``triplet_selection`` (when ``jobs`` has it; missing values read
    as ``"random"``), ``condition_key`` (with ``split_conditions``), ``n_train``,
    ``recovery_accuracy`` (share of jobs recovered) and ``n_jobs``; rows in level order
    (:func:`level_sort_key`), then by selection, key and N; ``level`` as text.
    """
    keys = ["level", "n_train"]
    if split_conditions:
        from modelrecovery.analysis.pooling import ensure_condition_key

        jobs = ensure_condition_key(jobs)
        jobs = jobs.assign(condition_key=jobs["condition_key"].astype(str))
        keys = ["level", "condition_key", "n_train"]
    if "triplet_selection" in jobs.columns:
        jobs = jobs.assign(triplet_selection=jobs["triplet_selection"].fillna("random"))
        keys = [keys[0], "triplet_selection", *keys[1:]]
    curve = jobs.groupby(keys)["recovered"].agg(recovery_accuracy="mean", n_jobs="size")
    curve = curve.reset_index()
    order = sorted(curve["level"].unique(), key=level_sort_key)
    curve["level"] = pd.Categorical(curve["level"], categories=order, ordered=True)
    curve = curve.sort_values(keys).astype({"level": str}).reset_index(drop=True)
    return curve[[k for k in keys if k != "n_train"] + ["n_train", "recovery_accuracy", "n_jobs"]]


def recovery_metric_points(curve: pd.DataFrame) -> list[tuple[str, float, int]]:
    """``(metric name, value, step)`` per row of :func:`recovery_curve`, for
    ``mlflow.log_metric(name, value, step=step)``.

    The name is ``recovery_accuracy_<level>``, with ``_<triplet_selection>`` appended when
    the selection is not ``"random"``, and ``_<first 8 characters of condition_key>``
    when the curve has ``condition_key`` and several conditions share that level and
    selection (so one curve per name, never mixing conditions); the step is ``n_train``.
    """
    select = "triplet_selection" in curve.columns
    several: set[tuple[str, str]] = set()
    if "condition_key" in curve.columns:
        sel = curve["triplet_selection"] if select else pd.Series("random", index=curve.index)
        counts = curve.assign(_sel=sel).groupby(["level", "_sel"])["condition_key"].nunique()
        several = {key for key, n in counts.items() if n > 1}
    points = []
    for row in curve.to_dict("records"):
        selection = row["triplet_selection"] if select else "random"
        name = f"recovery_accuracy_{row['level']}"
        if selection != "random":
            name += f"_{selection}"
        if (row["level"], selection) in several:
            name += f"_{str(row['condition_key'])[:8]}"
        points.append((name, float(row["recovery_accuracy"]), int(row["n_train"])))
    return points


def size_steps(curve: pd.DataFrame) -> list[int]:
    """The curve's sizes N, ascending: the step of :func:`recovery_chart_points` is the
    position of N in this list (the run's parameter ``size_steps`` says which N is which)."""
    return sorted({int(n) for n in curve["n_train"]})


def recovery_chart_points(
    curve: pd.DataFrame, confidence: float = 0.95
) -> list[tuple[str, float, int]]:
    """``(metric name, value, step)`` for the MLflow UI's charts: per curve of
    :func:`recovery_metric_points` (same suffix), ``recovery_by_size_<suffix>`` and its
    exact binomial interval ``recovery_ci_low_by_size_<suffix>`` /
    ``recovery_ci_high_by_size_<suffix>``, with step = the position of N among all the
    curve's sizes (:func:`size_steps`): sizes evenly spaced and shared by every level, so
    the levels overlay on one chart (N = 40 and 400 no longer crowd at the left)."""
    steps = {n: i for i, n in enumerate(size_steps(curve))}
    prefix = "recovery_accuracy_"
    points = []
    rows = curve.to_dict("records")
    for (name, value, n), row in zip(recovery_metric_points(curve), rows, strict=True):
        suffix = name[len(prefix) :]
        k = int(round(float(row["recovery_accuracy"]) * int(row["n_jobs"])))
        low, high = binomial_ci(k, int(row["n_jobs"]), confidence)
        step = steps[int(n)]
        points.append((f"recovery_by_size_{suffix}", value, step))
        points.append((f"recovery_ci_low_by_size_{suffix}", float(low), step))
        points.append((f"recovery_ci_high_by_size_{suffix}", float(high), step))
    return points


def _single_condition(df: pd.DataFrame, what: str) -> None:
    for col in condition_columns(df):
        if df[col].nunique(dropna=False) > 1:
            raise ValueError(
                f"{what}: the table mixes several values of {col!r}; filter to one condition"
            )


def _largest_n(df: pd.DataFrame, n_train: int | None) -> int:
    if n_train is not None:
        return int(n_train)
    if df.empty:
        raise ValueError("empty table")
    return int(df["n_train"].max())


def confusion_matrix(
    jobs: pd.DataFrame,
    *,
    n_train: int | None = None,
    normalize: bool = False,
    generators: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Generator x winner matrix at one training-set size, for one condition.

    Parameters
    ----------
    jobs : the ``jobs`` table of a single condition.
    n_train : training-set size (default: the largest in ``jobs``).
    normalize : divide each row by its number of jobs (rows without jobs become NaN).
    generators, candidates : row and column labels (default: sorted union of the generators
        and winners in ``jobs``).

    Returns
    -------
    DataFrame indexed by generator (index name ``generator``), one column per candidate
    (columns name ``winner``); counts, or row shares when ``normalize``.
    """
    _single_condition(jobs, "confusion_matrix")
    n = _largest_n(jobs, n_train)
    sub = jobs[jobs["n_train"] == n]
    labels = sorted(set(jobs["generator"]) | set(jobs["winner"]))
    rows = list(generators) if generators is not None else labels
    cols = list(candidates) if candidates is not None else labels
    counts = (
        pd.crosstab(sub["generator"], sub["winner"])
        .reindex(index=rows, columns=cols, fill_value=0)
        .astype(float if normalize else int)
    )
    counts.index.name, counts.columns.name = "generator", "winner"
    if normalize:
        totals = sub.groupby("generator").size().reindex(rows).astype(float)
        counts = counts.div(totals, axis=0)
    return counts


# ----------------------------------------------------------------------------- ranks
def correct_rank(
    jobs: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean rank of the generator among the candidates on its own data, BCa bootstrap CI.

    Parameters
    ----------
    jobs : the ``jobs`` table (uses ``generator_rank``, 1 = best; fractional average ranks
        of tied candidates are used as they are).
    by : grouping columns (default :func:`default_groups`; add ``"generator"`` for a value
        per model).
    confidence, n_resamples, seed : of the bootstrap (see :func:`bootstrap_mean_ci`; each
        group uses :func:`group_rng`).

    Returns
    -------
    ``by`` columns, ``n``, ``mean_rank``, ``ci_low``, ``ci_high``, ``ci_method``.
    """
    by = default_groups(jobs) if by is None else list(by)
    rows = []
    for key, sub in _groups(jobs, by):
        values = np.sort(sub["generator_rank"].to_numpy(dtype=float))  # order-free sums
        low, high, method = bootstrap_mean_ci(
            values, rng=group_rng(seed, key), confidence=confidence, n_resamples=n_resamples
        )
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n": len(values),
                "mean_rank": float(np.mean(values)) if len(values) else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "ci_method": method,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "n", "mean_rank", "ci_low", "ci_high", "ci_method"])


def false_rank(scores: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean rank of each candidate on data generated by other models, with its SEM.

    Parameters
    ----------
    scores : the ``scores`` table (uses ``rank``, 1 = best, possibly fractional).
    by : grouping columns besides ``candidate`` (default :func:`default_groups`).

    Returns
    -------
    ``by`` columns, ``candidate``, ``n``, ``mean_rank``, ``sem`` (``std(ddof=1) / sqrt(n)``,
    NaN for ``n < 2``).
    """
    by = default_groups(scores) if by is None else list(by)
    others = scores[scores["candidate"] != scores["generator"]]
    rows = []
    for key, sub in _groups(others, [*by, "candidate"]):
        values = np.sort(sub["rank"].to_numpy(dtype=float))  # order-free sums
        n = len(values)
        sem = float(np.std(values, ddof=1) / np.sqrt(n)) if n >= 2 else float("nan")
        rows.append(
            {
                **dict(zip([*by, "candidate"], key, strict=True)),
                "n": n,
                "mean_rank": float(np.mean(values)),
                "sem": sem,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "candidate", "n", "mean_rank", "sem"])


def mean_reciprocal_rank(jobs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of ``1 / generator_rank`` per group (1 = always ranked first).

    With average ranks (tie rule ``first``) a generator tied with one other candidate at
    the top counts ``1 / 1.5``.

    Returns
    -------
    ``by`` columns (default :func:`default_groups`), ``n``, ``mrr``.
    """
    by = default_groups(jobs) if by is None else list(by)
    rows = []
    for key, sub in _groups(jobs, by):
        r = np.sort(sub["generator_rank"].to_numpy(dtype=float))
        rows.append({**dict(zip(by, key, strict=True)), "n": len(r), "mrr": float(np.mean(1 / r))})
    return pd.DataFrame(rows, columns=[*by, "n", "mrr"])


def rank_summary(
    jobs: pd.DataFrame,
    scores: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """Per model: correct rank (BCa CI), false rank (SEM) and mean reciprocal rank.

    Parameters
    ----------
    jobs, scores : the results tables.
    by : grouping columns besides the model (default :func:`default_groups` of ``jobs``).

    Returns
    -------
    ``by`` columns, ``model``, ``correct_n``, ``correct_rank``, ``correct_ci_low``,
    ``correct_ci_high``, ``mrr``, ``false_n``, ``false_rank``, ``false_sem``; models that
    never generated (or were never a candidate on others' data) have NaN in those columns.
    """
    by = default_groups(jobs) if by is None else list(by)
    cr = correct_rank(
        jobs, [*by, "generator"], confidence=confidence, n_resamples=n_resamples, seed=seed
    ).rename(
        columns={
            "generator": "model",
            "n": "correct_n",
            "mean_rank": "correct_rank",
            "ci_low": "correct_ci_low",
            "ci_high": "correct_ci_high",
            "ci_method": "correct_ci_method",
        }
    )
    mrr = mean_reciprocal_rank(jobs, [*by, "generator"]).rename(columns={"generator": "model"})
    fr = false_rank(scores, by).rename(
        columns={
            "candidate": "model",
            "n": "false_n",
            "mean_rank": "false_rank",
            "sem": "false_sem",
        }
    )
    keys = [*by, "model"]
    out = cr.merge(mrr.drop(columns="n"), on=keys, how="left").merge(fr, on=keys, how="outer")
    return out.sort_values(keys, ignore_index=True)


# ----------------------------------------------------------------------------- wins
def win_share(
    jobs: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    candidates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """How often each candidate wins, against the fair share ``1 / n_candidates``.

    Parameters
    ----------
    jobs : the ``jobs`` table.
    by : grouping columns (default :func:`default_groups`).
    candidates : models to report (default: sorted union of generators and winners), so
        candidates that never win appear with zero wins.

    Returns
    -------
    ``by`` columns, ``candidate``, ``wins``, ``n_jobs``, ``share``, ``fair_share``
    (mean ``1 / n_candidates``), ``generator_share`` (share of the jobs it generated, the
    share under perfect recovery), ``ratio`` (``share / fair_share``) and ``p_excess``
    (exact one-sided binomial test of ``wins`` against ``fair_share``).
    """
    by = default_groups(jobs) if by is None else list(by)
    labels = (
        list(candidates)
        if candidates is not None
        else sorted(set(jobs["generator"]) | set(jobs["winner"]))
    )
    rows = []
    for key, sub in _groups(jobs, by):
        n = len(sub)
        fair = float(np.mean(np.sort(1.0 / sub["n_candidates"].to_numpy(dtype=float))))
        wins = sub["winner"].value_counts()
        gens = sub["generator"].value_counts()
        for cand in labels:
            w = int(wins.get(cand, 0))
            p = stats.binomtest(w, n, fair, alternative="greater").pvalue if n else float("nan")
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "candidate": cand,
                    "wins": w,
                    "n_jobs": n,
                    "share": w / n if n else float("nan"),
                    "fair_share": fair,
                    "generator_share": int(gens.get(cand, 0)) / n if n else float("nan"),
                    "ratio": (w / n) / fair if n else float("nan"),
                    "p_excess": float(p),
                }
            )
    cols = [
        *by,
        "candidate",
        "wins",
        "n_jobs",
        "share",
        "fair_share",
        "generator_share",
        "ratio",
        "p_excess",
    ]
    return pd.DataFrame(rows, columns=cols)
