"""Recovery by model group, systematic bias, and the geometry's shift towards humans.

The paper's groupings (Avitan & Golan 2025, Figures S4/S5): models are grouped by training
objective (supervised / self-supervised / image-text) and by architecture (CNN /
transformer).

- :func:`within_group_recovery`: recovery when only the generator's own group competes
  (each job's candidates restricted to the models of the generator's group, the winner
  the best-ranked of them in the job's ranking): "is the right model found among models
  trained like it?" (the paper: 73.7% within objective groups, 70.3% within architecture
  groups).
- :func:`group_confusion`: generator group x winner group over all candidates (how often
  the crown goes to another group).
- :func:`systematic_bias`: per model, how it fares on its own data (mean rank) and on the
  others' (mean rank, wins against the fair share): the study's models that "win too
  often" (OpenAI CLIP RN50 in the paper); the test is :func:`excess_wins` (the one the
  report's wins table and verdict use).
- :func:`human_shift`: per model, the distance of its RDM to the human reference before
  and after probing, the shift towards humans, and whether models that start farther
  move more (the paper: all models move towards VICE, farther ones more).

Pure functions on the results tables (``docs/reference/results-tables.md``); nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from modelrecovery.analysis.metrics import binomial_ci, default_groups

__all__ = [
    "group_confusion",
    "excess_wins",
    "group_labels",
    "human_shift",
    "systematic_bias",
    "within_group_recovery",
]


def group_labels(metadata: Mapping[str, Mapping[str, object]], key: str) -> dict[str, str]:
    """Model -> group from per-model metadata (e.g. ``key="objective"``); models without
    the key are left out."""
    return {
        str(model): str(meta[key])
        for model, meta in metadata.items()
        if isinstance(meta, Mapping) and meta.get(key) not in (None, "")
    }


def _by(jobs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    return default_groups(jobs) if by is None else list(by)


def within_group_recovery(
    scores: pd.DataFrame,
    groups: Mapping[str, str],
    by: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Recovery accuracy when each job's competition is the generator's group only.

    Parameters
    ----------
    scores : the ``scores`` table (``rank``: 1 = best under the job's tie rule).
    groups : model -> group; jobs whose generator has no group are skipped, and so are
        candidates without one.
    by : grouping columns besides ``group`` (default :func:`default_groups`, e.g.
        condition and ``n_train``).

    Returns
    -------
    ``by`` columns, ``group`` (the generator's; ``all groups`` pools them), ``n_models``
    (candidates in the group), ``n_jobs``, ``recovered``, ``recovery_accuracy``,
    ``ci_low``, ``ci_high`` (exact binomial), ``chance`` (1 / n_models). Within a group,
    the winner is the group's candidate with the best rank; equal ranks (average ranks,
    tie rule ``first``) go to the first in the job's candidate order.
    """
    by = _by(scores, by)
    s = scores[scores["candidate"].isin(groups) & scores["generator"].isin(groups)].copy()
    s["_order"] = np.arange(len(s))
    s["_cgroup"] = s["candidate"].map(groups)
    s["_ggroup"] = s["generator"].map(groups)
    s = s[s["_cgroup"] == s["_ggroup"]]
    best = s.sort_values(["job_id", "rank", "_order"]).drop_duplicates("job_id")
    best = best.assign(_recovered=best["candidate"] == best["generator"])
    sizes = pd.Series(groups).value_counts()
    rows = []
    keys = [*by, "_ggroup"]
    for key, sub in best.groupby(keys, sort=True, dropna=False):
        rows.append((dict(zip(keys, key, strict=True)), sub))
    pooled = best.groupby(by, sort=True, dropna=False) if by else [((), best)]
    for key, sub in pooled:
        key = key if isinstance(key, tuple) else (key,)
        rows.append(({**dict(zip(by, key, strict=True)), "_ggroup": "all groups"}, sub))
    out = []
    for labels, sub in rows:
        n, k = len(sub), int(sub["_recovered"].sum())
        low, high = binomial_ci(k, n, confidence)
        group = labels.pop("_ggroup")
        n_models = int(sizes.get(group, 0)) if group != "all groups" else np.nan
        chance = (
            1.0 / n_models
            if group != "all groups"
            else float(np.mean(1.0 / sub["_ggroup"].map(sizes).to_numpy(dtype=float)))
        )
        out.append(
            {
                **labels,
                "group": group,
                "n_models": n_models,
                "n_jobs": n,
                "recovered": k,
                "recovery_accuracy": k / n if n else np.nan,
                "ci_low": low,
                "ci_high": high,
                "chance": chance,
            }
        )
    return pd.DataFrame(out)


def group_confusion(
    jobs: pd.DataFrame, groups: Mapping[str, str], *, normalize: bool = False
) -> pd.DataFrame:
    """Generator group (rows) x winner group (columns) counts over ``jobs`` (one condition
    and N: filter first); ``normalize`` divides each row by its total."""
    j = jobs[jobs["generator"].isin(groups) & jobs["winner"].isin(groups)]
    names = sorted(set(groups.values()))
    table = pd.crosstab(
        pd.Categorical(j["generator"].map(groups), categories=names),
        pd.Categorical(j["winner"].map(groups), categories=names),
        dropna=False,
    )
    table.index.name, table.columns.name = "generator_group", "winner_group"
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
    return table


#: The columns of :func:`excess_wins`'s test that :func:`systematic_bias` carries.
_TEST_COLUMNS = (
    "n_other_errors",
    "error_share",
    "fair_error_share",
    "n_generators_won",
    "p_excess",
)


def _excess_rows(sub: pd.DataFrame, models: Sequence[str]) -> list[dict]:
    """The one test of systematic bias on one group's jobs (see :func:`excess_wins`)."""
    errors = sub[sub["winner"] != sub["generator"]]
    rows = []
    for model in models:
        other_jobs = sub[sub["generator"] != model]
        other_errors = errors[errors["generator"] != model]
        won = other_errors[other_errors["winner"] == model]
        wins, n = len(won), len(other_errors)
        fair = (
            float(np.mean(np.sort(1.0 / (other_errors["n_candidates"].to_numpy(float) - 1.0))))
            if n
            else np.nan
        )
        p = stats.binomtest(wins, n, fair, alternative="greater").pvalue if n else np.nan
        rows.append(
            {
                "model": model,
                "false_wins": wins,
                "n_other_jobs": len(other_jobs),
                "n_other_errors": n,
                "error_share": wins / n if n else np.nan,
                "fair_error_share": fair,
                "n_generators_won": int(won["generator"].nunique()),
                "p_excess": float(p),
            }
        )
    return rows


def excess_wins(
    jobs: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    candidates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The report's one test of systematic bias: does a model win other generators' jobs
    more often than its fair share of the wrong crowns?

    Of the jobs of the *other* generators that were crowned wrongly (winner != generator),
    a model without bias takes its even share: each wrong crown goes to one of the
    ``n_candidates - 1`` candidates other than the job's generator, so its fair share is
    ``1 / (n_candidates - 1)`` (the mean over those jobs). ``p_excess`` is the exact
    one-sided binomial test of its ``false_wins`` among the ``n_other_errors`` wrong crowns
    against that share (conditional on the number of wrong crowns, so it neither credits
    a model for winning its own data nor depends on how often recovery succeeds); NaN
    where the other generators' jobs hold no wrong crown. The wins table of the report,
    :func:`systematic_bias` and the verdict all use this test; it is uncorrected for the
    number of models tested. A model that takes the crowns of one close neighbour only
    (``n_generators_won`` = 1) is confused with that neighbour rather than favoured across
    the board.

    Returns
    -------
    ``by`` columns, ``model``, ``false_wins`` (jobs of other generators it won),
    ``n_other_jobs``, ``n_other_errors`` (wrong crowns among those jobs), ``error_share``
    (``false_wins / n_other_errors``), ``fair_error_share``, ``n_generators_won`` (distinct
    generators whose jobs it won), ``p_excess``. ``candidates`` (default: sorted union of
    generators and winners per group) lists the models reported.
    """
    by = _by(jobs, by)
    out = []
    grouped = jobs.groupby(by, sort=True, dropna=False) if by else [((), jobs)]
    for key, sub in grouped:
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(by, key, strict=True))
        models = (
            list(candidates)
            if candidates is not None
            else sorted(set(sub["generator"]) | set(sub["winner"]))
        )
        out += [{**labels, **row} for row in _excess_rows(sub, models)]
    cols = [*by, "model", "false_wins", "n_other_jobs", "n_other_errors", "error_share",
            "fair_error_share", "n_generators_won", "p_excess"]  # fmt: skip
    return pd.DataFrame(out, columns=cols)


def systematic_bias(
    jobs: pd.DataFrame, scores: pd.DataFrame, by: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per model: mean rank on its own data, mean rank and wins on the others' data.

    Returns
    -------
    ``by`` columns, ``model``, ``own_mean_rank`` (the generator's rank on its own data),
    ``others_mean_rank`` (as a candidate on data of the other generators), ``false_wins``
    (jobs of other generators it won), ``n_other_jobs``, ``false_win_share``
    (``false_wins / n_other_jobs``), ``fair_share`` (1 / n_candidates), and the test of
    :func:`excess_wins`: ``n_other_errors``, ``error_share``, ``fair_error_share``,
    ``n_generators_won`` and ``p_excess`` (its false wins among the other generators'
    wrong crowns against ``1 / (n_candidates - 1)``); sorted by ``others_mean_rank`` (the
    most favoured first within each group).
    """
    by = _by(jobs, by)
    rows = []
    grouped = jobs.groupby(by, sort=True, dropna=False) if by else [((), jobs)]
    for key, sub in grouped:
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(by, key, strict=True))
        ssub = scores
        for col, value in labels.items():
            ssub = ssub[ssub[col] == value]
        models = sorted(set(sub["generator"]) | set(ssub["candidate"]))
        fair = float(np.mean(1.0 / sub["n_candidates"].to_numpy(dtype=float)))
        for model, excess in zip(models, _excess_rows(sub, models), strict=True):
            own = sub.loc[sub["generator"] == model, "generator_rank"].to_numpy(dtype=float)
            others = ssub[(ssub["candidate"] == model) & (ssub["generator"] != model)]
            n = excess["n_other_jobs"]
            rows.append(
                {
                    **labels,
                    "model": model,
                    "own_mean_rank": float(np.mean(own)) if len(own) else np.nan,
                    "others_mean_rank": (
                        float(np.mean(others["rank"].to_numpy(dtype=float)))
                        if len(others)
                        else np.nan
                    ),
                    "false_wins": excess["false_wins"],
                    "n_other_jobs": n,
                    "false_win_share": excess["false_wins"] / n if n else np.nan,
                    "fair_share": fair,
                    **{k: excess[k] for k in _TEST_COLUMNS},
                }
            )
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values([*by, "others_mean_rank"], ignore_index=True)
    return out


def human_shift(geometry: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """The shift of each model towards the human reference, from
    :func:`~modelrecovery.analysis.geometry.model_geometry`'s table.

    Returns
    -------
    (table, summary): the table has ``model``, ``human_distance_before``,
    ``human_distance_after``, ``shift_towards_human`` (before − after; > 0: probing moved
    the model towards humans); the summary ``n_models``, ``n_moved_towards`` (models with
    a positive shift), ``mean_shift``, and ``spearman_rho`` / ``spearman_p`` between the
    distance before and the shift (> 0: models that start farther move more).
    """
    cols = ["model", "human_distance_before", "human_distance_after"]
    table = geometry[cols].dropna().copy()
    table["shift_towards_human"] = table["human_distance_before"] - table["human_distance_after"]
    n = len(table)
    summary: dict[str, float] = {
        "n_models": float(n),
        "n_moved_towards": float((table["shift_towards_human"] > 0).sum()),
        "mean_shift": float(table["shift_towards_human"].mean()) if n else np.nan,
        "spearman_rho": np.nan,
        "spearman_p": np.nan,
    }
    if n >= 3 and table["human_distance_before"].nunique() > 1:
        rho, p = stats.spearmanr(table["human_distance_before"], table["shift_towards_human"])
        summary["spearman_rho"], summary["spearman_p"] = float(rho), float(p)
    return table.reset_index(drop=True), summary
