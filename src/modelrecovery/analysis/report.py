"""Self-contained HTML report of a recovery grid: figures, CSV tables, provenance."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from modelrecovery.analysis import figures as F
from modelrecovery.analysis.geometry import (
    mds_coordinates,
    model_geometry,
    model_rdms,
    rdm_similarity,
)
from modelrecovery.analysis.groups import (
    group_confusion,
    human_shift,
    systematic_bias,
    within_group_recovery,
)
from modelrecovery.analysis.metrics import (
    add_condition,
    condition_columns,
    confusion_matrix,
    correct_rank,
    level_sort_key,
    mean_reciprocal_rank,
    rank_summary,
    recovery_accuracy,
    sort_conditions,
    win_share,
)
from modelrecovery.analysis.pooling import dedupe_jobs, ensure_models_level, follow_jobs
from modelrecovery.analysis.regression import (
    DEFAULT_PROPERTIES,
    accuracy_difference_regression,
)
from modelrecovery.analysis.tradeoff import PAPER_REFERENCE, paper_table, tradeoff_table

__all__ = ["Report", "ReportConfig", "build_report", "table_fingerprint"]


@dataclass(frozen=True)
class ReportConfig:
    """Settings of :func:`build_report` (all recorded in the report).

    Attributes
    ----------
    title : report title.
    confidence : level of every interval.
    n_resamples : bootstrap resamples of the BCa rank intervals.
    n_boot : bootstrap resamples over models in the regression.
    seed : seed of every random choice (bootstraps, MDS, concept subset).
    confusion_n : training-set sizes for confusion matrices (default: the largest per
        condition); sizes a condition lacks are skipped.
    rank_n : training-set size of the per-model rank and win-share figures (default: the
        largest per condition).
    rdm_method : RDM comparison, ``"corr_cov"`` (the study) or ``"corr"``.
    geometry_level : level whose transforms ``W`` are given (default: the most flexible
        level present, i.e. ``"full"`` when present); the regression uses this level's
        scores and ``models`` rows.
    geometry_family : older name of ``geometry_level`` (used when that is None).
    score_column : per-candidate score of the regression target.
    regression_properties : model properties in the regression (default: those of
        ``shift, ed_before, ed_after, feature_dim, n_parameters`` known for every model).
    paper_reference : show the paper's approximate numbers beside the trade-off table.
    max_concepts : use a seeded subset of concepts for RDMs (default: all).
    dpi : resolution of the PNG figures.
    """

    title: str = "Model recovery report"
    confidence: float = 0.95
    n_resamples: int = 9999
    n_boot: int = 10_000
    seed: int = 0
    confusion_n: tuple[int, ...] | None = None
    rank_n: int | None = None
    rdm_method: str = "corr_cov"
    geometry_level: str | None = None
    geometry_family: str | None = None
    score_column: str = "test_accuracy"
    regression_properties: tuple[str, ...] | None = None
    max_concepts: int | None = None
    paper_reference: bool = True
    dpi: int = 110
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote (``os.fspath(report)`` and ``str(report)`` give
    the HTML path, so it can stand where a path is expected).

    Attributes
    ----------
    html : ``out_dir/report.html``.
    out_dir : the report folder.
    tables : table name -> CSV path (``tables/<name>.csv``), e.g. ``tables["tradeoff"]``
        (the paper's table) and ``tables["tradeoff_by_n"]``.
    figures : figure name -> PNG path (an SVG lies beside each).
    paper_table : :func:`~modelrecovery.analysis.tradeoff.paper_table` (one row per level
        and condition: human-data accuracy ± SEM, recovery at the largest N with exact CI,
        the paper's numbers); None without a ``models`` table with ``human_accuracy``.
    tradeoff : :func:`~modelrecovery.analysis.tradeoff.tradeoff_table` (every N); or None.
    recovery : recovery accuracy per condition and N.
    notes : what was skipped or dropped, and why.
    """

    html: Path
    out_dir: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    paper_table: pd.DataFrame | None
    tradeoff: pd.DataFrame | None
    recovery: pd.DataFrame
    notes: tuple[str, ...] = ()

    def __fspath__(self) -> str:
        return str(self.html)

    def __str__(self) -> str:
        return str(self.html)


def table_fingerprint(table: pd.DataFrame | None, keys: Sequence[str] = ()) -> str | None:
    """SHA-256 of a table's content, independent of row and column order (None if absent).

    Rows are sorted by ``keys`` (then by all columns) and hashed with
    ``pandas.util.hash_pandas_object``; the column names are part of the digest.
    """
    if table is None:
        return None
    t = table.reindex(columns=sorted(table.columns, key=str))
    sort_by = [k for k in keys if k in t.columns] + [c for c in t.columns if c not in keys]
    try:
        t = t.sort_values(sort_by, kind="mergesort").reset_index(drop=True)
    except TypeError:  # unorderable mixed columns: fall back to the keys only
        t = t.sort_values([k for k in keys if k in t.columns], kind="mergesort")
        t = t.reset_index(drop=True)
    digest = hashlib.sha256("\x1f".join(map(str, t.columns)).encode())
    digest.update(pd.util.hash_pandas_object(t, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- HTML pieces
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1.05rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
table.tbl{border-collapse:collapse;font-size:.8rem;margin:.5rem 0 1rem}
table.tbl th,table.tbl td{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.tbl th{background:#f3f3f3}.scroll{max-height:28rem;overflow:auto}
.note{background:#fff8e1;border-left:4px solid #E69F00;padding:.4rem .8rem;margin:.6rem 0}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:.8rem}
nav a{margin-right:1rem}
"""


def _esc(x: object) -> str:
    return html.escape(str(x))


def _fmt(x: object) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if np.isnan(x) else f"{x:.4g}"
    return str(x)


def _table_html(df: pd.DataFrame, *, index: bool = False) -> str:
    body = df.to_html(
        index=index, classes="tbl", border=0, na_rep="", float_format=_fmt, escape=True
    )
    return f'<div class="scroll">{body}</div>'


def _json_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _dict_html(d: Mapping[str, Any]) -> str:
    if not d:
        return "<p><em>none given</em></p>"
    rows = "".join(
        f"<tr><th style='text-align:left'>{_esc(k)}</th>"
        f"<td style='text-align:left'><pre>{_esc(_json_value(v))}</pre></td></tr>"
        for k, v in d.items()
    )
    return f'<table class="tbl">{rows}</table>'


def _slug(text: str) -> str:
    out = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(text).lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "all"


def _condition_slugs(conditions: Sequence[str]) -> dict[str, str]:
    """A distinct file-name slug per condition label (long or clashing ones get a suffix)."""
    out: dict[str, str] = {}
    for cond in conditions:
        slug = _slug(cond)
        if len(slug) > 48:
            slug = f"{slug[:40]}_{hashlib.sha256(cond.encode()).hexdigest()[:6]}"
        base, i = slug, 2
        while slug in out.values():
            slug, i = f"{base}_{i}", i + 1
        out[cond] = slug
    return out


class _Writer:
    """Collects HTML sections while writing figures and tables into ``out_dir``."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.tab_dir = out_dir / "tables"
        self.dpi = dpi
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figures: dict[str, Path] = {}
        self.tables: dict[str, Path] = {}

    def section(self, title: str) -> None:
        anchor = _slug(title)
        self.toc.append((anchor, title))
        self.parts.append(f'<h2 id="{anchor}">{_esc(title)}</h2>')

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{_esc(text)}</h3>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{_esc(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<div class="note">{_esc(text)}</div>')

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        paths = F.save_figure(fig, self.fig_dir, name, dpi=self.dpi)
        fig.clear()
        data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
        self.figures[name] = paths["png"]
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}" '
            f'data-figure="{_esc(name)}"><figcaption>{_esc(caption)} '
            f"(<code>figures/{_esc(name)}.png</code>, <code>.svg</code>)</figcaption></figure>"
        )

    def table(self, df: pd.DataFrame, name: str, *, index: bool = False, show: bool = True) -> None:
        path = F.save_table(df if index else df.reset_index(drop=True), self.tab_dir, name)
        self.tables[name] = path
        if show:
            self.parts.append(
                f"<p><small>Table <code>tables/{_esc(name)}.csv</code></small></p>"
                + _table_html(df, index=index)
            )


# ----------------------------------------------------------------------------- report
def _side_by_side(acc: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """Recovery per N (rows) and condition (columns): ``accuracy [ci_low, ci_high] (n)``."""
    cells = acc.assign(
        cell=[
            f"{a:.3f} [{lo:.3f}, {hi:.3f}] (n={n})"
            for a, lo, hi, n in zip(
                acc["accuracy"], acc["ci_low"], acc["ci_high"], acc["n_jobs"], strict=True
            )
        ]
    )
    wide = cells.pivot(index="n_train", columns="condition", values="cell")
    wide = wide.reindex(columns=[c for c in conditions if c in wide.columns]).fillna("")
    wide.index.name, wide.columns.name = "n_train", None
    return wide


def _conditions_table(jobs: pd.DataFrame, cond_cols: Sequence[str]) -> pd.DataFrame:
    """One row per condition: its columns, key(s), jobs, sizes, seeds and generators."""
    rows = []
    show = [
        c
        for c in ("level", "regulariser", "criterion", "tie_rule", "stopping", "warm_start",
                  "sampling", "lams", "candidate_set")
        if c in jobs.columns
    ]  # fmt: skip
    for cond in sort_conditions(jobs["condition"]):
        sub = jobs[jobs["condition"] == cond]
        row: dict[str, Any] = {"condition": cond}
        for c in show:
            values = sub[c].dropna().astype(str).unique()
            row[c] = ", ".join(sorted(values))
        if "condition_key" in sub.columns:
            row["condition_key"] = ", ".join(sorted(sub["condition_key"].astype(str).unique()))
        row |= {
            "n_jobs": len(sub),
            "sizes": ", ".join(F.format_count(n) for n in sorted(sub["n_train"].unique())),
            "seeds": int(sub["seed"].nunique()) if "seed" in sub.columns else np.nan,
            "generators": int(sub["generator"].nunique()),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _paper_points(levels: Sequence[str]) -> pd.DataFrame:
    """The paper's reference points for the levels (families) present."""
    rows = []
    for name, ref in PAPER_REFERENCE.items():
        if any(str(lev).startswith(name) for lev in levels):
            rows.append(
                {
                    "label": f"paper: {name}",
                    "human_accuracy": ref["human_accuracy"],
                    "recovery": ref["recovery"],
                    "upper_bound": ref["recovery_bound"] == "<",
                }
            )
    return pd.DataFrame(rows, columns=["label", "human_accuracy", "recovery", "upper_bound"])


def _groups_section(
    w: _Writer,
    jobs: pd.DataFrame,
    scores: pd.DataFrame,
    groups: Mapping[str, Mapping[str, str]] | None,
    conditions: Sequence[str],
    slugs: Mapping[str, str],
    cfg: ReportConfig,
) -> None:
    """Recovery within model groups, the confusion between groups, systematic bias."""
    w.section("Model groups and systematic bias")
    by = ["condition", "n_train"]
    bias = systematic_bias(jobs, scores, by)
    w.text(
        "Systematic bias: per model, its mean rank on its own data, its mean rank on the "
        "other generators' data and how often it wins their jobs against the fair share "
        "(exact one-sided binomial test). Models with a small others_mean_rank and a "
        "small p_excess win too often."
    )
    w.table(bias, "systematic_bias", show=False)
    for cond in conditions:
        part = bias[bias["condition"] == cond]
        if len(part):
            top = part[part["n_train"] == part["n_train"].max()]
            w.heading(f"{cond}, N = {F.format_count(top['n_train'].iloc[0])}")
            w.table(top.drop(columns=["condition"]), f"systematic_bias_{slugs[cond]}")
    for name, mapping in (groups or {}).items():
        if not mapping or len(set(mapping.values())) < 2:
            w.note(f"Grouping {name!r}: fewer than two groups; skipped.")
            continue
        w.heading(f"Recovery within {name} groups")
        within = within_group_recovery(scores, mapping, by, confidence=cfg.confidence)
        w.text(
            f"Each job's candidates restricted to the generator's {name} group; "
            f"recovery with exact {cfg.confidence:.0%} binomial CIs, chance 1/group size."
        )
        w.table(within, f"within_{name}")
        for cond in conditions:
            cj = jobs[jobs["condition"] == cond]
            n = int(cj["n_train"].max())
            counts = group_confusion(cj[cj["n_train"] == n], mapping)
            norm = group_confusion(cj[cj["n_train"] == n], mapping, normalize=True)
            w.heading(f"{cond}, N = {F.format_count(n)}: generator {name} × winner {name}")
            w.table(counts, f"group_confusion_{name}_{slugs[cond]}_counts", index=True, show=False)
            w.table(norm, f"group_confusion_{name}_{slugs[cond]}", index=True)


def build_report(
    jobs: pd.DataFrame,
    scores: pd.DataFrame,
    models: pd.DataFrame | None,
    *,
    features: Mapping[str, np.ndarray] | None = None,
    transforms: Mapping[str, np.ndarray] | None = None,
    human_embedding: np.ndarray | None = None,
    provenance: Mapping[str, Any],
    out_dir: str | Path,
    config: ReportConfig | None = None,
    groups: Mapping[str, Mapping[str, str]] | None = None,
) -> Report:
    """Run every analysis and write figures, CSV tables and ``out_dir/report.html``.

    Parameters
    ----------
    jobs, scores, models : results tables (``docs/results_tables.md``), possibly pooled from
        several runs. Jobs keep one row per ``(condition_key, generator, n_train, seed)``
        (the key derived from the condition columns where missing) and per ``job_id``, the
        last occurrence winning; scores follow the jobs kept (same ``job_id``) and take
        their condition columns. ``models`` (one row per model and level) may be None (no
        trade-off).
    features : model name -> ``n x p`` features over all concepts (geometry, MDS,
        regression); optional.
    transforms : model name -> fitted ``W`` of ``config.geometry_level``; optional.
    human_embedding : ``n x d`` human embedding (distance to humans, MDS); optional.
    provenance : run ids, commits, data hashes, ... (rendered as given).
    out_dir : output folder (``figures/``, ``tables/`` and ``report.html`` inside).
    config : :class:`ReportConfig` (defaults when None).
    groups : grouping name -> (model -> group), e.g. ``{"objective": {"ResNet50":
        "supervised", ...}, "architecture": {...}}``: recovery within groups and the
        confusion between groups (:mod:`modelrecovery.analysis.groups`); optional. The
        systematic-bias table is written in any case.

    Returns
    -------
    :class:`Report`: ``report.html`` path, every CSV and figure written, and the paper's
    table (``report.paper_table``, also ``report.tables["tradeoff"]``).
    """
    cfg = config or ReportConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = _Writer(out_dir, cfg.dpi)
    notes: list[str] = []

    n_jobs_in = len(jobs)
    jobs = dedupe_jobs(jobs)
    if len(jobs) < n_jobs_in:
        notes.append(
            f"{n_jobs_in - len(jobs)} duplicate job rows dropped "
            "(same condition, generator, N and seed, or same job_id)."
        )
    cond_cols = condition_columns(jobs)
    jobs = add_condition(jobs, cond_cols)
    n_scores_in = len(scores)
    scores = follow_jobs(scores, jobs[["job_id", "condition", *cond_cols]], ["job_id", "candidate"])
    for col in ("condition", *cond_cols):  # the job's condition, whatever scores carried
        scores[col] = jobs.set_index("job_id")[col].reindex(scores["job_id"]).to_numpy()
    if len(scores) < n_scores_in:
        notes.append(
            f"{n_scores_in - len(scores)} score rows dropped (duplicates, or of jobs not kept)."
        )
    if models is not None:
        models = ensure_models_level(models, jobs)
    by = ["condition", *cond_cols, "n_train"]
    conditions = sort_conditions(jobs["condition"])
    slugs = _condition_slugs(conditions)
    levels = sorted(jobs["level"].dropna().astype(str).unique(), key=level_sort_key)

    # --- conditions ------------------------------------------------------------------
    w.section("Conditions")
    w.text(
        "Each condition is analysed on its own; jobs are pooled only within a condition "
        "(one result per condition, generator, N and seed)."
    )
    w.table(_conditions_table(jobs, cond_cols), "conditions")

    # --- recovery --------------------------------------------------------------------
    w.section("Recovery accuracy")
    acc = recovery_accuracy(jobs, by, confidence=cfg.confidence)
    w.figure(
        F.plot_recovery_curves(acc, group="condition"),
        "recovery_accuracy",
        "Recovery accuracy per training-set size and condition; bands and bars: exact "
        f"(Clopper-Pearson) {cfg.confidence:.0%} binomial CI; dotted: chance 1/n_candidates.",
    )
    w.table(acc, "recovery_accuracy")
    if len(conditions) > 1:
        w.heading("Conditions side by side")
        w.table(_side_by_side(acc, conditions), "recovery_side_by_side", index=True)
    cr = correct_rank(
        jobs, by, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed
    )
    mrr = mean_reciprocal_rank(jobs, by)
    rank_by_n = cr.rename(
        columns={"mean_rank": "correct_rank", "ci_low": "rank_ci_low", "ci_high": "rank_ci_high"}
    ).merge(mrr.drop(columns="n"), on=by, how="left")
    w.heading("Rank of the generator on its own data, and mean reciprocal rank")
    w.table(rank_by_n, "ranks_by_n")

    # --- triplet selection (grids with designs or another crowning rule) ---------------
    design_cols = [c for c in ("triplet_selection", "selection_criterion") if c in jobs.columns]
    if design_cols and jobs[design_cols].notna().any().any():
        from modelrecovery.analysis.selection import (
            budget_to_reach,
            plot_selection,
            selection_table,
        )

        w.section("Triplet selection and crowning")
        sel = selection_table(jobs, scores, confidence=cfg.confidence)
        human = "generator_human_accuracy" in sel and sel["generator_human_accuracy"].notna().any()
        held_out = (
            "the human held-out test triplets (the noise-ceiling set; grid.human_heldout)"
            if human
            else "held-out uniformly sampled test triplets"
        )
        w.figure(
            plot_selection(sel),
            "selection",
            "Left: recovery accuracy per triplet selection (random: uniform, the study; "
            "discriminating: one-shot design; sequential: batches under refitted probes) "
            f"with exact {cfg.confidence:.0%} binomial CI bands; undecided jobs (crowning "
            "rule paired) count as not recovered, their share dotted. Right: the generator's "
            f"own refit on {held_out} (mean ± SEM over jobs).",
        )
        w.table(sel, "selection")
        w.heading("Training triplets needed for 80% recovery")
        w.table(budget_to_reach(sel, 0.8), "selection_budget")

    # --- confusion -------------------------------------------------------------------
    w.section("Confusion matrices")
    for cond in conditions:
        cj = jobs[jobs["condition"] == cond]
        cs = scores[scores["condition"] == cond]
        ns = sorted(cj["n_train"].unique())
        chosen = [n for n in (cfg.confusion_n or (ns[-1],)) if n in set(ns)]
        if not chosen:
            notes.append(f"{cond}: none of confusion_n={cfg.confusion_n} present; skipped.")
        cands = sorted(set(cs["candidate"]) | set(cj["winner"])) if len(cs) else None
        gens = sorted(set(cj["generator"]))
        for n in chosen:
            kw = {"n_train": int(n), "generators": gens, "candidates": cands}
            counts = confusion_matrix(cj, **kw)
            norm = confusion_matrix(cj, normalize=True, **kw)
            name = f"confusion_{slugs[cond]}_n{int(n)}"
            w.heading(f"{cond}, N = {F.format_count(n)}")
            w.figure(
                F.plot_confusion(counts, norm, title=f"{cond}: generator × winner, N = {n:,}"),
                name,
                f"Confusion matrix ({cond}, N = {n:,}): rows generators, columns winners.",
            )
            long = (
                counts.stack()
                .rename("count")
                .to_frame()
                .join(norm.stack().rename("share"))
                .reset_index()
            )
            w.table(long, name, show=False)
            w.table(counts, f"{name}_counts", index=True, show=False)
            w.table(norm, f"{name}_normalized", index=True)

    # --- ranks and wins --------------------------------------------------------------
    w.section("Correct and false ranks, wins")
    for cond in conditions:
        cj = jobs[jobs["condition"] == cond]
        cs = scores[scores["condition"] == cond]
        ns = sorted(cj["n_train"].unique())
        n = cfg.rank_n if cfg.rank_n in set(ns) else ns[-1]
        jn, sn = cj[cj["n_train"] == n], cs[cs["n_train"] == n]
        slug = f"{slugs[cond]}_n{int(n)}"
        w.heading(f"{cond}, N = {F.format_count(n)}")
        if len(sn):
            ranks = rank_summary(
                jn,
                sn,
                ["condition", "n_train"],
                confidence=cfg.confidence,
                n_resamples=cfg.n_resamples,
                seed=cfg.seed,
            )
            w.figure(
                F.plot_ranks(ranks, title=f"{cond}, N = {n:,}"),
                f"ranks_{slug}",
                "Correct rank (the generator's rank on its own data, mean with BCa bootstrap "
                "CI) and false rank (a model's mean rank on other models' data, ± SEM); tied "
                "candidates share the rank their condition's tie rule gives them.",
            )
            w.table(ranks, f"ranks_{slug}")
        else:
            notes.append(f"{cond}: no scores rows at N = {n}; per-model ranks skipped.")
        cands = sorted(set(cs["candidate"]) | set(cj["winner"])) if len(cs) else None
        shares = win_share(jn, ["condition", "n_train"], candidates=cands)
        w.figure(
            F.plot_win_share(shares, title=f"{cond}, N = {n:,}"),
            f"wins_{slug}",
            "Share of jobs won by each candidate; dashed: the fair share 1/n_candidates; "
            "vermillion: significantly more than fair (exact one-sided binomial test).",
        )
        w.table(shares, f"wins_{slug}")

    # --- groups and systematic bias --------------------------------------------------
    _groups_section(w, jobs, scores, groups, conditions, slugs, cfg)

    # --- geometry --------------------------------------------------------------------
    w.section("Representational geometry")
    geometry = None
    geo_level = (
        cfg.geometry_level
        or cfg.geometry_family
        or (levels[-1] if levels else None)  # the most flexible level
    )
    if not features:
        w.note("No features given: geometry, MDS and the regression are skipped.")
        notes.append("geometry and regression skipped (no features).")
    else:
        if not transforms:
            w.note("No transforms W given: only raw-feature geometry is shown.")
        rdms = model_rdms(
            features, transforms, human_embedding, max_concepts=cfg.max_concepts, seed=cfg.seed
        )
        geometry = model_geometry(
            features,
            transforms,
            human_embedding,
            method=cfg.rdm_method,
            rdms=rdms,
            max_concepts=cfg.max_concepts,
            seed=cfg.seed,
        )
        w.text(
            f"RDM comparison: {cfg.rdm_method}; transforms of level {geo_level}; "
            f"{int(geometry['n_concepts'].iloc[0])} concepts."
        )
        w.table(geometry, "geometry")
        sim = rdm_similarity(rdms, cfg.rdm_method)
        w.table(sim, "rdm_similarity", index=True, show=False)
        if len(sim) >= 2:
            coords = mds_coordinates(sim, seed=cfg.seed, labels=sorted(rdms))
            w.figure(
                F.plot_mds(coords),
                "mds",
                f"Metric MDS of 1 − RDM similarity ({cfg.rdm_method}) of raw and probed "
                "model RDMs, with the human embedding's RDM.",
            )
            w.table(coords, "mds", show=False)
        if human_embedding is not None:
            w.figure(
                F.plot_human_distance(geometry),
                "human_distance",
                "Distance of each model's RDM to the human RDM before and after probing.",
            )
            shift, shift_summary = human_shift(geometry)
            w.text(
                f"Shift towards the human reference (distance before − after probing): "
                f"{int(shift_summary['n_moved_towards'])} of {int(shift_summary['n_models'])} "
                f"models move towards it (mean shift {shift_summary['mean_shift']:.3f}); "
                f"Spearman ρ between the distance before and the shift = "
                f"{shift_summary['spearman_rho']:.2f} (p = {shift_summary['spearman_p']:.2g}; "
                "> 0: models that start farther move more)."
            )
            w.table(shift, "human_distance")
        else:
            w.note("No human embedding given: distances to humans are not shown.")

    # --- regression ------------------------------------------------------------------
    w.section("What predicts the accuracy difference?")
    if geometry is None:
        w.note("Skipped: needs features (and ideally transforms) for the model properties.")
    else:
        reg_conds = sort_conditions(
            jobs.loc[jobs["level"].astype(str) == str(geo_level), "condition"]
        )
        if not reg_conds:
            w.note(f"Skipped: no jobs of the geometry level {geo_level!r}.")
        names = list(cfg.regression_properties or DEFAULT_PROPERTIES)
        for cond in reg_conds:
            cs = scores[scores["condition"] == cond]
            try:
                coefs = accuracy_difference_regression(
                    cs,
                    models,
                    geometry,
                    properties=names,
                    level=geo_level,
                    score_column=cfg.score_column,
                    n_boot=cfg.n_boot,
                    seed=cfg.seed,
                    confidence=cfg.confidence,
                )
            except ValueError as err:
                w.note(f"{cond}: regression skipped ({err}).")
                notes.append(f"{cond}: regression skipped ({err}).")
                continue
            for note in coefs.attrs.get("notes", []):
                w.note(f"{cond}: {note}.")
                notes.append(f"{cond}: regression property {note}.")
            n_models = int(coefs["n_models"].iloc[0]) if len(coefs) else 0
            if n_models < 3 or not np.isfinite(coefs["beta"]).any():
                used = coefs.attrs.get("properties", [])
                w.note(
                    f"{cond}: regression skipped ({n_models} models, too few pairs for "
                    f"{len(used)} properties)."
                )
                continue
            n_max = int(cs["n_train"].max())
            w.heading(f"{cond}, N = {F.format_count(n_max)}")
            w.figure(
                F.plot_regression(coefs, title=f"{cond}, N = {n_max:,}"),
                f"regression_{slugs[cond]}",
                f"Standardised OLS of the z-scored {cfg.score_column} difference (generator's "
                "own − candidate's, on the generator's data, mean over seeds) on z-scored "
                f"model properties of level {geo_level}; {cfg.n_boot:,} bootstrap resamples "
                "over models; Bonferroni-corrected p-values.",
            )
            w.table(coefs, f"regression_{slugs[cond]}")

    # --- trade-off -------------------------------------------------------------------
    w.section("Recovery vs. predictive accuracy")
    trade = paper = None
    if models is None or "human_accuracy" not in models.columns:
        w.note("Skipped: needs the models table with human_accuracy.")
    else:
        trade = tradeoff_table(jobs, models, by, confidence=cfg.confidence)
        paper = paper_table(
            jobs, models, by, confidence=cfg.confidence, reference=cfg.paper_reference,
            table=trade,
        )  # fmt: skip
        w.text(
            "Per condition: mean prediction accuracy on held-out human triplets of that "
            "level's generators (their rows of the models table at that level; ± SEM over "
            f"models) and recovery accuracy with its exact {cfg.confidence:.0%} binomial CI "
            "at the condition's largest N."
            + (
                " The paper_* columns are the paper's approximate numbers (Avitan & Golan, "
                "NeurIPS 2025: 20 models, its largest N), shown for reference only."
                if cfg.paper_reference
                else ""
            )
        )
        w.table(paper, "tradeoff")
        if paper["n_train"].nunique() > 1:
            w.note(
                "The largest N differs between conditions "
                f"({', '.join(F.format_count(n) for n in sorted(paper['n_train'].unique()))}): "
                "compare recovery at a common N in the table below."
            )
        short = paper[paper["n_models"] < paper["n_generators"]]
        for _, row in short.iterrows():
            notes.append(
                f"{row['condition']}: human accuracy known for {row['n_models']} of "
                f"{row['n_generators']} generators at this level."
            )
        w.figure(
            F.plot_tradeoff(
                trade,
                group="condition",
                paper=_paper_points(levels) if cfg.paper_reference else None,
            ),
            "tradeoff",
            "Recovery accuracy (exact CI) at each condition's largest N against the mean "
            "accuracy of that level's generators on held-out human triplets (± SEM over "
            "models); small markers: smaller N; grey: the paper's approximate numbers.",
        )
        w.heading("At every N")
        w.table(trade, "tradeoff_by_n")

    # --- configuration and provenance ------------------------------------------------
    w.section("Configuration and provenance")
    cfg_dict = dataclasses.asdict(cfg)
    summary = {
        "conditions": conditions,
        "n_jobs": len(jobs),
        "n_score_rows": len(scores),
        "training sizes": sorted(int(n) for n in jobs["n_train"].unique()),
        "seeds per condition": {
            c: int(jobs.loc[jobs["condition"] == c, "seed"].nunique()) for c in conditions
        },
        "generators": sorted(jobs["generator"].unique()),
        "features given for": sorted(features) if features else [],
        "transforms given for": sorted(transforms) if transforms else [],
        "human embedding": (
            list(np.asarray(human_embedding).shape) if human_embedding is not None else None
        ),
        "table fingerprints (sha256)": {
            "jobs": table_fingerprint(jobs, ["job_id"]),
            "scores": table_fingerprint(scores, ["job_id", "candidate"]),
            "models": table_fingerprint(models, ["model", "level"]),
        },
    }
    w.heading("Configuration")
    w.parts.append(_dict_html(cfg_dict))
    w.heading("Data")
    w.parts.append(_dict_html(summary))
    w.heading("Provenance")
    w.parts.append(_dict_html(dict(provenance)))
    if notes:
        w.heading("Notes")
        w.parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")

    toc = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in w.toc)
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(cfg.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(cfg.title)}</h1><nav>{toc}</nav>" + "\n".join(w.parts) + "</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return Report(
        html=path,
        out_dir=out_dir,
        tables=dict(w.tables),
        figures=dict(w.figures),
        paper_table=paper,
        tradeoff=trade,
        recovery=acc,
        notes=tuple(notes),
    )
