"""Triplet selection and crowning rules compared (``grid.triplet_selection``,
``grid.selection_criterion``; see :mod:`modelrecovery.recovery.triplet_design`).

:func:`selection_table` gives, per level, selection strategy, crowning rule and N: recovery
accuracy with its exact binomial CI, the undecided jobs counted apart (``paired``), the
recovery the study's crowning (test accuracy) gives on the same fits, and how well the
refitted models (the generator's refit and the winner) predict held-out triplets, i.e.
whether selection trades prediction for identifiability: the job's uniformly sampled
synthetic test triplets always, and the human held-out test triplets (the noise-ceiling
set) when the grid scored them (``grid.human_heldout``; jobs without them give NaN).
:func:`budget_to_reach` reads off the N each strategy needs for a target recovery, and
:func:`plot_selection` draws both panels (prediction of the human held-out triplets when
present, else of the uniform test triplets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from modelrecovery.analysis.figures import _new_figure, _style, format_count
from modelrecovery.analysis.metrics import binomial_ci, level_sort_key

__all__ = ["STRATEGIES", "budget_to_reach", "plot_selection", "selection_table"]

STRATEGIES = ("random", "discriminating", "sequential")
KEYS = ("level", "triplet_selection", "selection_criterion", "n_train")


def _with_defaults(jobs: pd.DataFrame) -> pd.DataFrame:
    out = jobs.copy()
    for col, default in (("triplet_selection", "random"), ("selection_criterion", "accuracy")):
        if col not in out.columns:
            out[col] = default
        out[col] = out[col].fillna(default).astype(str)
    return out


def selection_table(
    jobs: pd.DataFrame, scores: pd.DataFrame | None = None, *, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (level, triplet_selection, selection_criterion, N).

    Columns: ``n_jobs``, ``n_recovered``, ``accuracy`` (recovered share of all jobs, an
    undecided job counting as not recovered), ``ci_low``, ``ci_high`` (exact binomial);
    ``n_undecided``, ``undecided_share`` and ``accuracy_decided`` (recovered share of the
    decided jobs) when jobs carry ``decided``; ``accuracy_by_test_accuracy`` (the study's
    crowning on the same fits) when they carry ``accuracy_recovered``; with ``scores``,
    ``generator_test_accuracy`` (mean, and ``_sem``: the generator's own refit on
    held-out uniform test triplets) and ``winner_test_accuracy``, and when the scores
    carry ``human_accuracy`` (``grid.human_heldout``) ``generator_human_accuracy`` and
    ``winner_human_accuracy`` (+ ``_sem``) on the human held-out test triplets, over the
    jobs that have them (NaN where none has).
    """
    jobs = _with_defaults(jobs)
    per_job = None
    if scores is not None and len(scores):
        sets = ["test"] + (["human"] if "human_accuracy" in scores.columns else [])
        s = scores[["job_id", "candidate", *(f"{name}_accuracy" for name in sets)]]
        gen = jobs[["job_id", "generator", "winner"]].merge(s, on="job_id")
        own = gen[gen["candidate"] == gen["generator"]].set_index("job_id")
        won = gen[gen["candidate"] == gen["winner"]].set_index("job_id")
        per_job = pd.DataFrame(
            {
                f"{who}_{name}_accuracy": part[f"{name}_accuracy"]
                for name in sets
                for who, part in (("generator", own), ("winner", won))
            }
        )
    rows = []
    keys = [k for k in KEYS if k in jobs.columns]
    for key, sub in jobs.groupby(keys, sort=False):
        n = len(sub)
        k = int(sub["recovered"].astype(bool).sum())
        low, high = binomial_ci(k, n, confidence)
        row = {
            **dict(zip(keys, key, strict=True)),
            "n_jobs": n,
            "n_recovered": k,
            "accuracy": k / n,
            "ci_low": low,
            "ci_high": high,
        }
        if "decided" in sub.columns and sub["decided"].notna().any():
            decided = sub["decided"].fillna(True).astype(bool)
            row["n_undecided"] = int((~decided).sum())
            row["undecided_share"] = float((~decided).mean())
            row["accuracy_decided"] = (
                float(sub.loc[decided, "recovered"].astype(bool).mean())
                if decided.any()
                else np.nan
            )
        if "accuracy_recovered" in sub.columns and sub["accuracy_recovered"].notna().any():
            row["accuracy_by_test_accuracy"] = float(sub["accuracy_recovered"].astype(bool).mean())
        if per_job is not None:
            part = per_job.reindex(sub["job_id"])
            for col in part.columns:
                values = part[col].dropna().to_numpy(dtype=float)
                row[col] = float(values.mean()) if len(values) else np.nan
                row[f"{col}_sem"] = (
                    float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else np.nan
                )
        for col in ("select_seconds_per_batch", "refit_seconds", "seconds"):
            if col in sub.columns and sub[col].notna().any():
                row[f"mean_{col}"] = float(sub[col].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    if not len(table):
        return table
    order = {name: i for i, name in enumerate(STRATEGIES)}
    table["_level"] = table["level"].map(level_sort_key) if "level" in table else 0
    table["_strategy"] = table["triplet_selection"].map(lambda v: order.get(v, len(order)))
    sort = ["_level", "_strategy", "selection_criterion", "n_train"]
    return table.sort_values(sort).drop(columns=["_level", "_strategy"]).reset_index(drop=True)


def budget_to_reach(table: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Per (level, strategy, criterion): the smallest measured N whose recovery reaches
    ``target`` (``n_measured``; NaN when none does) and the N where the curve crosses it,
    linear in log N between the two measured sizes around the crossing (``n_interpolated``).
    """
    rows = []
    keys = [k for k in KEYS if k != "n_train" and k in table.columns]
    for key, sub in table.groupby(keys, sort=False):
        sub = sub.sort_values("n_train")
        n = sub["n_train"].to_numpy(dtype=float)
        acc = sub["accuracy"].to_numpy(dtype=float)
        hit = np.flatnonzero(acc >= target)
        measured = float(n[hit[0]]) if len(hit) else np.nan
        crossing = np.nan
        if len(hit):
            i = hit[0]
            if i == 0:
                crossing = n[0]
            else:
                a0, a1 = acc[i - 1], acc[i]
                t = (target - a0) / (a1 - a0) if a1 != a0 else 1.0
                crossing = float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1]))))
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                "target": target,
                "n_measured": measured,
                "n_interpolated": crossing,
                "largest_n": float(n[-1]),
                "accuracy_at_largest_n": float(acc[-1]),
            }
        )
    return pd.DataFrame(rows)


def plot_selection(table: pd.DataFrame, *, title: str | None = None, groups: Sequence[str] = ()):
    """Two panels against N (log axis), one line per strategy (and crowning rule):
    recovery accuracy with exact binomial CI bands, and the refitted generator's accuracy
    (mean ± SEM over jobs) on the human held-out test triplets when the table has them
    (``generator_human_accuracy``), else on the held-out uniform test triplets."""
    fig, axes = _new_figure(11.0, 4.4, ncols=2)
    human = (
        "generator_human_accuracy" in table.columns
        and table["generator_human_accuracy"].notna().any()
    )
    pred = "generator_human_accuracy" if human else "generator_test_accuracy"
    ax_rec, ax_pred = axes[0], axes[1]
    label_cols = list(groups) or [
        c for c in ("level", "triplet_selection", "selection_criterion") if c in table.columns
    ]
    varying = [c for c in label_cols if table[c].nunique() > 1] or label_cols[-1:]
    labels = table[varying].astype(str).agg(", ".join, axis=1)
    for i, lab in enumerate(dict.fromkeys(labels)):
        sub = table[labels == lab].sort_values("n_train")
        n = sub["n_train"].to_numpy(dtype=float)
        style = _style(i)
        ax_rec.fill_between(
            n, sub["ci_low"], sub["ci_high"], color=style["color"], alpha=0.15, linewidth=0
        )
        ax_rec.plot(n, sub["accuracy"], label=lab, markersize=5, **style)
        if "undecided_share" in sub.columns and sub["undecided_share"].notna().any():
            ax_rec.plot(n, sub["undecided_share"], color=style["color"], linestyle=":", linewidth=1)
        if pred in sub.columns:
            ax_pred.errorbar(
                n,
                sub[pred],
                yerr=sub[f"{pred}_sem"].fillna(0.0).to_numpy(),
                label=lab,
                capsize=2,
                markersize=5,
                **style,
            )
    for ax in (ax_rec, ax_pred):
        ax.set_xscale("log")
        ns = np.sort(table["n_train"].unique().astype(float))
        if 0 < len(ns) <= 8:
            ax.set_xticks(ns)
            ax.minorticks_off()
        ax.xaxis.set_major_formatter(FuncFormatter(format_count))
        ax.set_xlabel("Training triplets per fold, N (log scale)")
        ax.grid(True, which="major", alpha=0.3)
    ax_rec.set_ylim(0, 1.02)
    ax_rec.set_ylabel("Recovery accuracy (dotted: undecided share)")
    ax_rec.set_title(title or "Recovery by triplet selection (95% exact binomial CI)")
    ax_rec.legend(fontsize=8, loc="best")
    if human:
        ax_pred.set_ylabel("Generator refit: accuracy on held-out human triplets")
        ax_pred.set_title("Prediction of held-out human triplets (± SEM)")
    else:
        ax_pred.set_ylabel("Generator refit: held-out test accuracy")
        ax_pred.set_title("Prediction of held-out uniform triplets (± SEM)")
    return fig
