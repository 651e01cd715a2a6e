"""Self-contained HTML report of a recovery grid: figures, CSV tables, provenance.

The report is built by sections: each analysis is a function ``section_<name>(inputs,
...) -> Section | None`` that computes its tables and figures and writes nothing
(:func:`section_verdict` first, then :func:`section_conditions`, :func:`section_recovery`,
:func:`section_selection`, :func:`section_confusion`, :func:`section_by_n`,
:func:`section_ranks`, :func:`section_groups`,
:func:`section_geometry`, :func:`section_regression`, :func:`section_tradeoff`,
:func:`section_provenance`; their inputs come from :func:`prepare_inputs`), and one
writer, :func:`write_report`, writes the CSVs, the figures and the HTML page.
:func:`build_report` runs them all.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    excess_wins,
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
from modelrecovery.analysis.verdict import Verdict, verdict
from modelrecovery.outputs import write_text, writing

__all__ = [
    "Block",
    "Report",
    "ReportConfig",
    "ReportFiles",
    "ReportInputs",
    "Section",
    "build_report",
    "geometry_level",
    "prepare_inputs",
    "section_by_n",
    "section_conditions",
    "section_confusion",
    "section_geometry",
    "section_groups",
    "section_provenance",
    "section_ranks",
    "section_recovery",
    "section_regression",
    "section_selection",
    "section_tradeoff",
    "section_verdict",
    "study_verdict",
    "table_fingerprint",
    "write_report",
]


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
    reference : ``"paper"``: show the paper's THINGS numbers (Avitan & Golan 2025) beside
        the trade-off table and figure; ``"none"`` (default): not (the study spec's
        top-level ``reference``).
    target : recovery the verdict asks for (0.8: "reaches 80% from N = ... on").
    bootstrap : resamples of the verdict's paired bootstrap over human test responses.
    train_fraction, eval_fraction, n_folds : the grid's (share of a fold's non-test
        concepts that train; validation and test triplets per training triplet; folds),
        for the triplets a lab has to collect per N.
    n_concepts : concepts of the study, for the exact count of triplets to collect
        (default: the rows of the features or human embedding given; else the large-n
        limit).
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
    reference: str = "none"
    target: float = 0.8
    bootstrap: int = 2000
    train_fraction: float = 0.7
    eval_fraction: float = 1 / 8
    n_folds: int = 3
    n_concepts: int | None = None
    dpi: int = 110
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reference not in ("none", "paper"):
            raise ValueError(f"reference must be 'none' or 'paper', got {self.reference!r}")
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"target must lie in (0, 1], got {self.target}")

    @property
    def paper_reference(self) -> bool:
        """Whether the paper's THINGS numbers are shown (``reference == "paper"``)."""
        return self.reference == "paper"


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
    verdict : the verdict as plain text lines (the first section's sentences;
        :func:`~modelrecovery.analysis.verdict.verdict_lines`), for the command line.
    """

    html: Path
    out_dir: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    paper_table: pd.DataFrame | None
    tradeoff: pd.DataFrame | None
    recovery: pd.DataFrame
    notes: tuple[str, ...] = ()
    verdict: tuple[str, ...] = ()

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
table.tbl th{background:#f3f3f3}.scroll{max-height:28rem;overflow:auto;max-width:100%}
.wide{overflow-x:auto;max-width:100%}
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
    return f'<div class="wide"><table class="tbl">{rows}</table></div>'


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


# ----------------------------------------------------------------------------- helpers
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


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Block:
    """One item of a section's page, in order.

    ``kind`` is ``"heading"``, ``"text"``, ``"note"`` (``text`` holds the words),
    ``"figure"`` (``name`` of a figure of the section, ``text`` its caption), ``"table"``
    (``name`` of a table of the section; ``show=False``: written but not shown) or
    ``"html"`` (``text`` is raw HTML).
    """

    kind: str
    text: str = ""
    name: str = ""
    show: bool = True


@dataclass(frozen=True)
class Section:
    """One analysis of the report, computed but not written (see :func:`write_report`).

    Attributes
    ----------
    name : short identifier (``"recovery"``, ``"confusion"``, ...).
    title : heading of the section in the page.
    tables : table name -> table, each written as ``tables/<name>.csv`` (names are unique
        over the whole report).
    figures : figure name -> matplotlib figure, written as ``figures/<name>.png`` and
        ``.svg`` (the writer clears each figure once saved).
    blocks : the page's items in order (headings, text, notes, figures, tables).
    notes : what the section skipped or dropped, and why (collected in ``Report.notes``).
    indexed : names of the tables written with their index (matrices, side-by-side).
    """

    name: str
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()
    notes: tuple[str, ...] = ()
    indexed: frozenset[str] = frozenset()

    @property
    def text(self) -> tuple[str, ...]:
        """The section's words in the page: headings, paragraphs and notes, in order."""
        return tuple(b.text for b in self.blocks if b.kind in ("heading", "text", "note"))


class _Builder:
    """Collects one section's tables, figures and page items (writes nothing)."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.tables: dict[str, pd.DataFrame] = {}
        self.figures: dict[str, Figure] = {}
        self.blocks: list[Block] = []
        self.notes: list[str] = []
        self.indexed: set[str] = set()

    def heading(self, text: str) -> None:
        self.blocks.append(Block("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def note(self, text: str) -> None:
        """A note in the page."""
        self.blocks.append(Block("note", text))

    def skipped(self, text: str) -> None:
        """A note for ``Report.notes`` (what was skipped or dropped)."""
        self.notes.append(text)

    def html(self, text: str) -> None:
        self.blocks.append(Block("html", text))

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        self.figures[name] = fig
        self.blocks.append(Block("figure", caption, name))

    def table(self, df: pd.DataFrame, name: str, *, index: bool = False, show: bool = True) -> None:
        self.tables[name] = df
        if index:
            self.indexed.add(name)
        self.blocks.append(Block("table", name=name, show=show))

    def build(self) -> Section:
        return Section(
            name=self.name,
            title=self.title,
            tables=dict(self.tables),
            figures=dict(self.figures),
            blocks=tuple(self.blocks),
            notes=tuple(self.notes),
            indexed=frozenset(self.indexed),
        )


@dataclass(frozen=True)
class ReportInputs:
    """The results tables as every section reads them (see :func:`prepare_inputs`).

    Attributes
    ----------
    jobs : one row per job kept, with ``condition`` (its label).
    scores : the score rows of the jobs kept, with their job's condition columns.
    models : the models table with ``level`` (or None).
    cond_cols : the columns that separate conditions (:func:`condition_columns`).
    conditions : condition labels in level order.
    slugs : condition label -> file-name slug.
    levels : levels present, least to most flexible.
    notes : rows dropped while preparing, and why.
    """

    jobs: pd.DataFrame
    scores: pd.DataFrame
    models: pd.DataFrame | None
    cond_cols: tuple[str, ...]
    conditions: tuple[str, ...]
    slugs: dict[str, str]
    levels: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def by(self) -> list[str]:
        """Grouping of the per-condition tables: condition, its columns, ``n_train``."""
        return ["condition", *self.cond_cols, "n_train"]


def prepare_inputs(
    jobs: pd.DataFrame, scores: pd.DataFrame, models: pd.DataFrame | None = None
) -> ReportInputs:
    """Deduplicate the jobs, label their conditions and make the scores follow them.

    Jobs keep one row per ``(condition_key, generator, n_train, seed)`` and per
    ``job_id`` (the last occurrence winning); scores keep the rows of the jobs kept and
    take their job's condition columns; ``models`` gains ``level`` where missing.
    """
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
    conditions = sort_conditions(jobs["condition"])
    return ReportInputs(
        jobs=jobs,
        scores=scores,
        models=models,
        cond_cols=tuple(cond_cols),
        conditions=tuple(conditions),
        slugs=_condition_slugs(conditions),
        levels=tuple(sorted(jobs["level"].dropna().astype(str).unique(), key=level_sort_key)),
        notes=tuple(notes),
    )


def geometry_level(data: ReportInputs, config: ReportConfig | None = None) -> str | None:
    """The level whose transforms the geometry and the regression use: the config's
    ``geometry_level`` (or ``geometry_family``), else the most flexible level present."""
    cfg = config or ReportConfig()
    return cfg.geometry_level or cfg.geometry_family or (data.levels[-1] if data.levels else None)


def study_verdict(
    data: ReportInputs,
    config: ReportConfig | None = None,
    *,
    human_scores: pd.DataFrame | None = None,
    n_concepts: int | None = None,
) -> Verdict:
    """The study's :class:`~modelrecovery.analysis.verdict.Verdict` with the config's
    settings (``n_concepts``: when the config gives none)."""
    cfg = config or ReportConfig()
    return verdict(
        data.jobs,
        data.models,
        human_scores,
        target=cfg.target,
        confidence=cfg.confidence,
        n_resamples=cfg.bootstrap,
        seed=cfg.seed,
        train_fraction=cfg.train_fraction,
        eval_fraction=cfg.eval_fraction,
        n_concepts=cfg.n_concepts or n_concepts,
        n_folds=cfg.n_folds,
    )


def section_verdict(
    data: ReportInputs,
    config: ReportConfig | None = None,
    *,
    human_scores: pd.DataFrame | None = None,
    n_concepts: int | None = None,
    result: Verdict | None = None,
) -> Section:
    """The verdict (the page's first section): per level, recovery at the largest N and
    where the target is reached, trust in the most frequent crown, the systematic-bias
    statement, the leaderboard on the human data and the models left out; tables
    ``verdict_recovery``, ``crown_trust``, ``verdict_bias``, ``leaderboard`` and
    ``left_out`` (``result``: a precomputed :func:`study_verdict`)."""
    cfg = config or ReportConfig()
    v = result or study_verdict(data, cfg, human_scores=human_scores, n_concepts=n_concepts)
    s = _Builder("verdict", "Verdict")
    s.text(
        "If a lab crowns the best-fitting model with these probes, would it pick the model "
        "that generated the data, and how sure can it be? Recovery: the share of simulated "
        f"jobs crowning the generating model, with exact (Clopper-Pearson) {cfg.confidence:.0%} "
        "intervals; jobs where the generator tied at the top share their credit, and the "
        "interval then spans every way of breaking the ties. Trust in a crown: "
        "P(true model = w | w crowned) under a uniform prior over the generators, from the "
        "confusion matrix (interval: Dirichlet(1 + counts) posterior of each generator's "
        "row). N is per fold; the triplets to collect are the uniformly sampled triplets "
        "that give one fold N training triplets and its validation and test share "
        f"(train_fraction {cfg.train_fraction:g} of the non-test concepts, "
        f"eval_fraction {cfg.eval_fraction:g}, {cfg.n_folds} concept-disjoint folds"
        + (
            f", {cfg.n_concepts or n_concepts:,} concepts"
            if (cfg.n_concepts or n_concepts)
            else ", large-concept-set limit"
        )
        + ")."
    )
    s.html("<ul>" + "".join(f"<li>{_esc(line)}</li>" for line in v.lines) + "</ul>")
    for note in v.notes:
        s.note(note[0].upper() + note[1:] + ".")
    s.heading("Recovery per N")
    s.table(v.recovery, "verdict_recovery")
    if len(v.trust):
        s.heading("Trust in a crown")
        s.table(v.trust, "crown_trust")
    if len(v.bias):
        s.heading("Systematic bias at the largest N")
        s.text(
            "The one test of the report (also the wins table's and the systematic-bias "
            "table's p_excess): a model's wins among the wrong crowns of the other "
            "generators' jobs against its fair share 1 / (n_candidates - 1), exact one-sided "
            "binomial test."
        )
        s.table(v.bias, "verdict_bias")
    if len(v.leaderboard):
        s.heading("Leaderboard on the human data")
        s.text(
            "Held-out human accuracy and NLL per model and level; accuracy_gap is the top "
            "model's accuracy minus the model's on the same test responses, with a paired "
            f"bootstrap {cfg.confidence:.0%} interval ({cfg.bootstrap:,} resamples of the "
            "responses, seed "
            f"{cfg.seed}); separated: the interval excludes 0."
            if human_scores is not None
            else "Held-out human accuracy and NLL per model and level from the models table; "
            "no per-response human scores were given, so no intervals."
        )
        s.table(v.leaderboard, "leaderboard")
    if len(v.left_out):
        s.heading("Models left out")
        s.table(v.left_out, "left_out")
    return s.build()


def section_conditions(data: ReportInputs) -> Section:
    """One row per condition: its columns, key(s), jobs, sizes, seeds, generators."""
    s = _Builder("conditions", "Conditions")
    s.text(
        "Each condition is analysed on its own; jobs are pooled only within a condition "
        "(one result per condition, generator, N and seed)."
    )
    s.table(_conditions_table(data.jobs, data.cond_cols), "conditions")
    return s.build()


#: the models table's calibration columns (per generator; docs/reference/results-tables.md)
CALIBRATION_COLUMNS = (
    "temperature",
    "calibration",
    "expected_accuracy",
    "expected_loo_ceiling",
    "human_loo_ceiling",
)


def section_calibration(data: ReportInputs) -> Section | None:
    """Per generator (model and level): its temperature, the calibration rule that set it
    and, at that T on the repeated set, its expected accuracy, its expected LOO noise
    ceiling and the humans' LOO ceiling (table ``calibration``); None without those
    columns in the models table (tables of before)."""
    models = data.models
    if models is None or not set(CALIBRATION_COLUMNS) <= set(models.columns):
        return None
    s = _Builder("calibration", "Calibration of the generators")
    s.text(
        "Each generator's temperature T makes it as noisy as the humans: under the rule "
        "study its expected accuracy (mean largest choice probability over the repeated "
        "responses), under loo_matched its own expected leave-one-out noise ceiling (exact, "
        "over the multinomial response counts of each repeated triplet), equals the human "
        "ceiling. Both statistics are shown at the chosen T; study leaves the expected LOO "
        "ceiling below the humans' (its data are noisier than theirs)."
    )
    table = models[["model", "level", *CALIBRATION_COLUMNS]].copy()
    table["loo_gap"] = table["expected_loo_ceiling"] - table["human_loo_ceiling"]
    order = table["level"].astype(str).map(level_sort_key)
    table = table.assign(_order=order).sort_values(["_order", "model"]).drop(columns="_order")
    s.table(table.reset_index(drop=True), "calibration")
    return s.build()


def section_recovery(data: ReportInputs, config: ReportConfig | None = None) -> Section:
    """Recovery accuracy per condition and N (exact CIs; table ``recovery_accuracy``),
    the conditions side by side, and the generator's rank with the mean reciprocal rank
    (``ranks_by_n``)."""
    cfg = config or ReportConfig()
    jobs, by = data.jobs, data.by
    s = _Builder("recovery", "Recovery accuracy")
    acc = recovery_accuracy(jobs, by, confidence=cfg.confidence)
    s.figure(
        F.plot_recovery_curves(acc, group="condition"),
        "recovery_accuracy",
        "Recovery accuracy per training-set size and condition; bands and bars: exact "
        f"(Clopper-Pearson) {cfg.confidence:.0%} binomial CI; dotted: chance 1/n_candidates.",
    )
    s.table(acc, "recovery_accuracy")
    if len(data.conditions) > 1:
        s.heading("Conditions side by side")
        s.table(_side_by_side(acc, data.conditions), "recovery_side_by_side", index=True)
    cr = correct_rank(
        jobs, by, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed
    )
    mrr = mean_reciprocal_rank(jobs, by)
    rank_by_n = cr.rename(
        columns={"mean_rank": "correct_rank", "ci_low": "rank_ci_low", "ci_high": "rank_ci_high"}
    ).merge(mrr.drop(columns="n"), on=by, how="left")
    s.heading("Rank of the generator on its own data, and mean reciprocal rank")
    s.table(rank_by_n, "ranks_by_n")
    return s.build()


def section_selection(data: ReportInputs, config: ReportConfig | None = None) -> Section | None:
    """Recovery per triplet selection and crowning rule, and the budget to 80% recovery;
    None for grids without designs (no ``triplet_selection`` / ``selection_criterion``)."""
    cfg = config or ReportConfig()
    jobs = data.jobs
    design_cols = [c for c in ("triplet_selection", "selection_criterion") if c in jobs.columns]
    if not design_cols or not jobs[design_cols].notna().any().any():
        return None
    from modelrecovery.analysis.design_and_crowning import (
        budget_to_reach,
        plot_selection,
        selection_table,
    )

    s = _Builder("selection", "Triplet selection and crowning")
    sel = selection_table(jobs, data.scores, confidence=cfg.confidence)
    human = "generator_human_accuracy" in sel and sel["generator_human_accuracy"].notna().any()
    held_out = (
        "the human held-out test triplets (the noise-ceiling set; grid.human_heldout)"
        if human
        else "held-out uniformly sampled test triplets"
    )
    s.figure(
        plot_selection(sel),
        "selection",
        "Left: recovery accuracy per triplet selection (random: uniform, the study; "
        "discriminating: one-shot design; sequential: batches under refitted probes) "
        f"with exact {cfg.confidence:.0%} binomial CI bands; undecided jobs (crowning "
        "rule paired) count as not recovered, their share dotted. Right: the generator's "
        f"own refit on {held_out} (mean ± SEM over jobs).",
    )
    s.table(sel, "selection")
    s.heading("Training triplets needed for 80% recovery")
    s.table(budget_to_reach(sel, 0.8), "selection_budget")
    return s.build()


def section_confusion(data: ReportInputs, config: ReportConfig | None = None) -> Section:
    """Generator x winner counts and shares per condition at ``config.confusion_n`` (default:
    the condition's largest N); tables ``confusion_<condition>_n<N>`` (long),
    ``..._counts`` and ``..._normalized``."""
    cfg = config or ReportConfig()
    s = _Builder("confusion", "Confusion matrices")
    for cond in data.conditions:
        cj = data.jobs[data.jobs["condition"] == cond]
        cs = data.scores[data.scores["condition"] == cond]
        ns = sorted(cj["n_train"].unique())
        chosen = [n for n in (cfg.confusion_n or (ns[-1],)) if n in set(ns)]
        if not chosen:
            s.skipped(f"{cond}: none of confusion_n={cfg.confusion_n} present; skipped.")
        cands = sorted(set(cs["candidate"]) | set(cj["winner"])) if len(cs) else None
        gens = sorted(set(cj["generator"]))
        for n in chosen:
            kw = {"n_train": int(n), "generators": gens, "candidates": cands}
            counts = confusion_matrix(cj, **kw)
            norm = confusion_matrix(cj, normalize=True, **kw)
            name = f"confusion_{data.slugs[cond]}_n{int(n)}"
            s.heading(f"{cond}, N = {F.format_count(n)}")
            s.figure(
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
            s.table(long, name, show=False)
            s.table(counts, f"{name}_counts", index=True, show=False)
            s.table(norm, f"{name}_normalized", index=True)
    return s.build()


def section_by_n(data: ReportInputs, config: ReportConfig | None = None) -> Section:
    """Per condition, at every N: recovery per generating model (table and heat map
    ``recovery_by_model_<condition>``) and the confusion matrix (long table and one panel
    per N, ``winners_by_n_<condition>``)."""
    from modelrecovery.analysis.verdict import recovery_by_model

    cfg = config or ReportConfig()
    s = _Builder("by_n", "Per-model recovery and confusion at every N")
    s.text(
        "Recovery per generating model (share of its jobs crowning it, tie credit shared, "
        f"with tie-aware exact {cfg.confidence:.0%} intervals) and the generator × winner "
        "matrix at every N (row shares)."
    )
    for cond in data.conditions:
        cj = data.jobs[data.jobs["condition"] == cond]
        cs = data.scores[data.scores["condition"] == cond]
        slug = data.slugs[cond]
        per_model = recovery_by_model(cj, ["n_train"], confidence=cfg.confidence)
        s.heading(cond)
        s.figure(
            _plot_by_model(per_model, title=f"{cond}: recovery per generating model"),
            f"recovery_by_model_{slug}",
            "Recovery per generating model (rows) and N per fold (columns).",
        )
        s.table(per_model, f"recovery_by_model_{slug}", show=False)
        cands = sorted(set(cs["candidate"]) | set(cj["winner"])) if len(cs) else None
        gens = sorted(set(cj["generator"]))
        mats, parts = {}, []
        for n in sorted(cj["n_train"].unique()):
            kw = {"n_train": int(n), "generators": gens, "candidates": cands}
            counts = confusion_matrix(cj, **kw)
            norm = confusion_matrix(cj, normalize=True, **kw)
            mats[int(n)] = norm
            parts.append(
                counts.stack().rename("count").to_frame().join(norm.stack().rename("share"))
                .reset_index().assign(n_train=int(n))
            )  # fmt: skip
        long = pd.concat(parts, ignore_index=True)[["n_train", "generator", "winner", "count",
                                                     "share"]]  # fmt: skip
        s.figure(
            _plot_confusion_by_n(mats, title=f"{cond}: generator × winner at every N"),
            f"winners_by_n_{slug}",
            "Share of each generator's jobs (rows) won by each candidate (columns), one panel "
            "per N per fold.",
        )
        s.table(long, f"winners_by_n_{slug}", show=False)
    return s.build()


def _plot_by_model(table: pd.DataFrame, *, title: str) -> Figure:
    wide = table.pivot(index="generator", columns="n_train", values="accuracy")
    n_rows, n_cols = wide.shape
    fig, (ax,) = F._new_figure(max(4.0, 0.8 * n_cols + 3.0), max(3.0, 0.3 * n_rows + 1.5))
    im = ax.imshow(wide.to_numpy(float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_cols), [F.format_count(n) for n in wide.columns])
    fs = F._tick_fontsize(n_rows)
    ax.set_yticks(range(n_rows), [str(g) for g in wide.index], fontsize=fs)
    ax.set_xlabel("N per fold")
    ax.set_ylabel("Data-generating model")
    if n_rows <= 30:
        for (r, c), v in np.ndenumerate(wide.to_numpy(float)):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=fs - 1,
                        color="black" if v > 0.6 else "white")  # fmt: skip
    fig.colorbar(im, ax=ax, shrink=0.8, label="recovery")
    ax.set_title(title, fontsize=10)
    return fig


def _plot_confusion_by_n(mats: Mapping[int, pd.DataFrame], *, title: str) -> Figure:
    ns = list(mats)
    first = mats[ns[0]]
    side = max(3.0, 0.25 * max(first.shape) + 2.0)
    ncols = min(3, len(ns))
    nrows = -(-len(ns) // ncols)
    fig = Figure(figsize=(side * ncols, side * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fs = F._tick_fontsize(max(first.shape))
    for ax, n in zip(axes, ns, strict=False):
        mat = mats[n]
        im = ax.imshow(mat.to_numpy(float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(mat.shape[1]), [str(c) for c in mat.columns], rotation=90,
                      fontsize=fs)  # fmt: skip
        ax.set_yticks(range(mat.shape[0]), [str(r) for r in mat.index], fontsize=fs)
        ax.set_title(f"N = {n:,}", fontsize=10)
    for ax in axes[len(ns) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes[: len(ns)].tolist(), shrink=0.8, label="share of jobs")
    fig.suptitle(title, fontsize=11)
    return fig


def section_ranks(data: ReportInputs, config: ReportConfig | None = None) -> Section:
    """Per condition at ``config.rank_n`` (default: the largest N): each model's correct
    and false rank (``ranks_<condition>_n<N>``) and share of jobs won (``wins_...``)."""
    cfg = config or ReportConfig()
    s = _Builder("ranks", "Correct and false ranks, wins")
    for cond in data.conditions:
        cj = data.jobs[data.jobs["condition"] == cond]
        cs = data.scores[data.scores["condition"] == cond]
        ns = sorted(cj["n_train"].unique())
        n = cfg.rank_n if cfg.rank_n in set(ns) else ns[-1]
        jn, sn = cj[cj["n_train"] == n], cs[cs["n_train"] == n]
        slug = f"{data.slugs[cond]}_n{int(n)}"
        s.heading(f"{cond}, N = {F.format_count(n)}")
        if len(sn):
            ranks = rank_summary(
                jn,
                sn,
                ["condition", "n_train"],
                confidence=cfg.confidence,
                n_resamples=cfg.n_resamples,
                seed=cfg.seed,
            )
            s.figure(
                F.plot_ranks(ranks, title=f"{cond}, N = {n:,}"),
                f"ranks_{slug}",
                "Correct rank (the generator's rank on its own data, mean with BCa bootstrap "
                "CI) and false rank (a model's mean rank on other models' data, ± SEM); tied "
                "candidates share the rank their condition's tie rule gives them.",
            )
            s.table(ranks, f"ranks_{slug}")
        else:
            s.skipped(f"{cond}: no scores rows at N = {n}; per-model ranks skipped.")
        cands = sorted(set(cs["candidate"]) | set(cj["winner"])) if len(cs) else None
        shares = _wins_table(jn, cands)
        s.figure(
            F.plot_win_share(shares, title=f"{cond}, N = {n:,}", alpha=1 - cfg.confidence),
            f"wins_{slug}",
            "Share of jobs won by each candidate; dashed: the fair share 1/n_candidates; "
            "vermillion: wins other generators' jobs more than its fair share of their wrong "
            f"crowns (p_excess < {1 - cfg.confidence:g}: the report's one systematic-bias "
            "test, as in the verdict and the systematic-bias table).",
        )
        s.table(shares, f"wins_{slug}")
    return s.build()


def _wins_table(jobs: pd.DataFrame, candidates: Sequence[str] | None) -> pd.DataFrame:
    """:func:`win_share` with its ``p_excess`` (all wins, own data included) replaced by
    the report's one systematic-bias test (:func:`excess_wins`), so the wins table, the
    systematic-bias table and the verdict agree."""
    by = ["condition", "n_train"]
    shares = win_share(jobs, by, candidates=candidates).drop(columns="p_excess")
    labels = shares["candidate"].drop_duplicates().tolist()
    excess = excess_wins(jobs, by, candidates=labels).rename(columns={"model": "candidate"})
    keep = ["false_wins", "n_other_errors", "error_share", "fair_error_share", "p_excess"]
    return shares.merge(excess[[*by, "candidate", *keep]], on=[*by, "candidate"], how="left")


def section_groups(
    data: ReportInputs,
    groups: Mapping[str, Mapping[str, str]] | None = None,
    config: ReportConfig | None = None,
) -> Section:
    """Systematic bias per model (always), and for each grouping (name -> model -> group)
    recovery within the groups and the confusion between them at the largest N."""
    cfg = config or ReportConfig()
    jobs, scores = data.jobs, data.scores
    s = _Builder("groups", "Model groups and systematic bias")
    by = ["condition", "n_train"]
    bias = systematic_bias(jobs, scores, by)
    s.text(
        "Systematic bias: per model, its mean rank on its own data, its mean rank on the "
        "other generators' data and how often it takes their wrong crowns against its fair "
        "share 1 / (n_candidates - 1) (p_excess: exact one-sided binomial test, the same "
        "test as the wins table and the verdict). Models with a small others_mean_rank and "
        "a small p_excess win too often."
    )
    s.table(bias, "systematic_bias", show=False)
    for cond in data.conditions:
        part = bias[bias["condition"] == cond]
        if len(part):
            top = part[part["n_train"] == part["n_train"].max()]
            s.heading(f"{cond}, N = {F.format_count(top['n_train'].iloc[0])}")
            s.table(top.drop(columns=["condition"]), f"systematic_bias_{data.slugs[cond]}")
    for name, mapping in (groups or {}).items():
        if not mapping or len(set(mapping.values())) < 2:
            s.note(f"Grouping {name!r}: fewer than two groups; skipped.")
            continue
        s.heading(f"Recovery within {name} groups")
        within = within_group_recovery(scores, mapping, by, confidence=cfg.confidence)
        s.text(
            f"Each job's candidates restricted to the generator's {name} group; "
            f"recovery with exact {cfg.confidence:.0%} binomial CIs, chance 1/group size."
        )
        s.table(within, f"within_{name}")
        for cond in data.conditions:
            cj = jobs[jobs["condition"] == cond]
            n = int(cj["n_train"].max())
            counts = group_confusion(cj[cj["n_train"] == n], mapping)
            norm = group_confusion(cj[cj["n_train"] == n], mapping, normalize=True)
            slug = data.slugs[cond]
            s.heading(f"{cond}, N = {F.format_count(n)}: generator {name} × winner {name}")
            s.table(counts, f"group_confusion_{name}_{slug}_counts", index=True, show=False)
            s.table(norm, f"group_confusion_{name}_{slug}", index=True)
    return s.build()


def section_geometry(
    data: ReportInputs,
    features: Mapping[str, np.ndarray] | None = None,
    transforms: Mapping[str, np.ndarray] | None = None,
    human_embedding: np.ndarray | None = None,
    config: ReportConfig | None = None,
) -> Section:
    """Model RDMs before and after probing (table ``geometry``, the regression's model
    properties), their similarity and MDS, the distance to the human RDM; notes only
    without features."""
    cfg = config or ReportConfig()
    s = _Builder("geometry", "Representational geometry")
    if not features:
        s.note("No features given: geometry, MDS and the regression are skipped.")
        s.skipped("geometry and regression skipped (no features).")
        return s.build()
    if not transforms:
        s.note("No transforms W given: only raw-feature geometry is shown.")
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
    s.text(
        f"RDM comparison: {cfg.rdm_method}; transforms of level {geometry_level(data, cfg)}; "
        f"{int(geometry['n_concepts'].iloc[0])} concepts."
    )
    s.table(geometry, "geometry")
    sim = rdm_similarity(rdms, cfg.rdm_method)
    s.table(sim, "rdm_similarity", index=True, show=False)
    if len(sim) >= 2:
        coords = mds_coordinates(sim, seed=cfg.seed, labels=sorted(rdms))
        s.figure(
            F.plot_mds(coords),
            "mds",
            f"Metric MDS of 1 − RDM similarity ({cfg.rdm_method}) of raw and probed "
            "model RDMs, with the human embedding's RDM.",
        )
        s.table(coords, "mds", show=False)
    if human_embedding is not None:
        s.figure(
            F.plot_human_distance(geometry),
            "human_distance",
            "Distance of each model's RDM to the human RDM before and after probing.",
        )
        shift, shift_summary = human_shift(geometry)
        s.text(
            f"Shift towards the human reference (distance before − after probing): "
            f"{int(shift_summary['n_moved_towards'])} of {int(shift_summary['n_models'])} "
            f"models move towards it (mean shift {shift_summary['mean_shift']:.3f}); "
            f"Spearman ρ between the distance before and the shift = "
            f"{shift_summary['spearman_rho']:.2f} (p = {shift_summary['spearman_p']:.2g}; "
            "> 0: models that start farther move more)."
        )
        s.table(shift, "human_distance")
    else:
        s.note("No human embedding given: distances to humans are not shown.")
    return s.build()


def section_regression(
    data: ReportInputs, geometry: pd.DataFrame | None, config: ReportConfig | None = None
) -> Section:
    """Per condition of the geometry level: standardised OLS of the accuracy difference on
    model properties (``geometry`` is :func:`section_geometry`'s table of that name;
    None: skipped), table ``regression_<condition>``."""
    cfg = config or ReportConfig()
    jobs, scores = data.jobs, data.scores
    s = _Builder("regression", "What predicts the accuracy difference?")
    if geometry is None:
        s.note("Skipped: needs features (and ideally transforms) for the model properties.")
        return s.build()
    geo_level = geometry_level(data, cfg)
    reg_conds = sort_conditions(jobs.loc[jobs["level"].astype(str) == str(geo_level), "condition"])
    if not reg_conds:
        s.note(f"Skipped: no jobs of the geometry level {geo_level!r}.")
    names = list(cfg.regression_properties or DEFAULT_PROPERTIES)
    for cond in reg_conds:
        cs = scores[scores["condition"] == cond]
        try:
            coefs = accuracy_difference_regression(
                cs,
                data.models,
                geometry,
                properties=names,
                level=geo_level,
                score_column=cfg.score_column,
                n_boot=cfg.n_boot,
                seed=cfg.seed,
                confidence=cfg.confidence,
            )
        except ValueError as err:
            s.note(f"{cond}: regression skipped ({err}).")
            s.skipped(f"{cond}: regression skipped ({err}).")
            continue
        for note in coefs.attrs.get("notes", []):
            s.note(f"{cond}: {note}.")
            s.skipped(f"{cond}: regression property {note}.")
        n_models = int(coefs["n_models"].iloc[0]) if len(coefs) else 0
        if n_models < 3 or not np.isfinite(coefs["beta"]).any():
            used = coefs.attrs.get("properties", [])
            s.note(
                f"{cond}: regression skipped ({n_models} models, too few pairs for "
                f"{len(used)} properties)."
            )
            continue
        n_max = int(cs["n_train"].max())
        s.heading(f"{cond}, N = {F.format_count(n_max)}")
        s.figure(
            F.plot_regression(coefs, title=f"{cond}, N = {n_max:,}"),
            f"regression_{data.slugs[cond]}",
            f"Standardised OLS of the z-scored {cfg.score_column} difference (generator's "
            "own − candidate's, on the generator's data, mean over seeds) on z-scored "
            f"model properties of level {geo_level}; {cfg.n_boot:,} bootstrap resamples "
            "over models; Bonferroni-corrected p-values.",
        )
        s.table(coefs, f"regression_{data.slugs[cond]}")
    return s.build()


def section_tradeoff(data: ReportInputs, config: ReportConfig | None = None) -> Section:
    """The paper's table (``tradeoff``: human-data accuracy ± SEM against recovery at each
    condition's largest N) and the trade-off at every N (``tradeoff_by_n``); a note only
    without a models table with ``human_accuracy``."""
    cfg = config or ReportConfig()
    jobs, models = data.jobs, data.models
    s = _Builder("tradeoff", "Recovery vs. predictive accuracy")
    if models is None or "human_accuracy" not in models.columns:
        s.note("Skipped: needs the models table with human_accuracy.")
        return s.build()
    trade = tradeoff_table(jobs, models, data.by, confidence=cfg.confidence)
    paper = paper_table(
        jobs, models, data.by, confidence=cfg.confidence, reference=cfg.paper_reference,
        table=trade,
    )  # fmt: skip
    s.text(
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
    s.table(paper, "tradeoff")
    if paper["n_train"].nunique() > 1:
        s.note(
            "The largest N differs between conditions "
            f"({', '.join(F.format_count(n) for n in sorted(paper['n_train'].unique()))}): "
            "compare recovery at a common N in the table below."
        )
    short = paper[paper["n_models"] < paper["n_generators"]]
    for _, row in short.iterrows():
        s.skipped(
            f"{row['condition']}: human accuracy known for {row['n_models']} of "
            f"{row['n_generators']} generators at this level."
        )
    s.figure(
        F.plot_tradeoff(
            trade,
            group="condition",
            paper=_paper_points(data.levels) if cfg.paper_reference else None,
        ),
        "tradeoff",
        "Recovery accuracy (exact CI) at each condition's largest N against the mean "
        "accuracy of that level's generators on held-out human triplets (± SEM over "
        "models); small markers: smaller N"
        + ("; grey: the paper's approximate numbers." if cfg.paper_reference else "."),
    )
    s.heading("At every N")
    s.table(trade, "tradeoff_by_n")
    return s.build()


def section_provenance(
    data: ReportInputs,
    config: ReportConfig | None = None,
    *,
    features: Mapping[str, np.ndarray] | None = None,
    transforms: Mapping[str, np.ndarray] | None = None,
    human_embedding: np.ndarray | None = None,
    provenance: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Section:
    """The configuration, a summary of the data (with the tables' fingerprints), the
    provenance as given and the ``notes`` (what the other sections skipped)."""
    cfg = config or ReportConfig()
    jobs, conditions = data.jobs, list(data.conditions)
    s = _Builder("provenance", "Configuration and provenance")
    summary = {
        "conditions": conditions,
        "n_jobs": len(jobs),
        "n_score_rows": len(data.scores),
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
            "scores": table_fingerprint(data.scores, ["job_id", "candidate"]),
            "models": table_fingerprint(data.models, ["model", "level"]),
        },
    }
    s.heading("Configuration")
    s.html(_dict_html(dataclasses.asdict(cfg)))
    s.heading("Data")
    s.html(_dict_html(summary))
    s.heading("Provenance")
    s.html(_dict_html(dict(provenance or {})))
    if notes:
        s.heading("Notes")
        s.html("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    return s.build()


# ----------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the page, and name -> path of every CSV and PNG."""

    html: Path
    tables: dict[str, Path]
    figures: dict[str, Path]


def _link(path: str, label: str | None = None) -> str:
    return f'<a href="{_esc(path)}"><code>{_esc(label or path)}</code></a>'


def write_report(
    sections: Iterable[Section | None],
    out_dir: str | Path,
    *,
    title: str = "Model recovery report",
    dpi: int = 110,
) -> ReportFiles:
    """Write the sections' tables (``tables/<name>.csv``), figures (``figures/<name>.png``
    and ``.svg``) and one self-contained page ``report.html`` (figures embedded, every CSV
    and figure file linked); None sections are left out. ``sections`` may be a generator:
    each section is written (and its figures cleared) before the next is asked for."""
    out_dir = Path(out_dir)
    fig_dir, tab_dir = out_dir / "figures", out_dir / "tables"
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    parts: list[str] = []
    toc: list[tuple[str, str]] = []
    tables: dict[str, Path] = {}
    figures: dict[str, Path] = {}
    for sec in sections:
        if sec is None:
            continue
        for name, df in sec.tables.items():
            indexed = name in sec.indexed
            tables[name] = F.save_table(df if indexed else df.reset_index(drop=True), tab_dir, name)
        embedded: dict[str, str] = {}
        for name, fig in sec.figures.items():
            figures[name] = F.save_figure(fig, fig_dir, name, dpi=dpi)["png"]
            fig.clear()
            embedded[name] = base64.b64encode(figures[name].read_bytes()).decode("ascii")
        anchor = _slug(sec.title)
        toc.append((anchor, sec.title))
        parts.append(f'<h2 id="{anchor}">{_esc(sec.title)}</h2>')
        shown_tables, shown_figures = set(), set()
        for b in sec.blocks:
            if b.kind == "heading":
                parts.append(f"<h3>{_esc(b.text)}</h3>")
            elif b.kind == "text":
                parts.append(f"<p>{_esc(b.text)}</p>")
            elif b.kind == "note":
                parts.append(f'<div class="note">{_esc(b.text)}</div>')
            elif b.kind == "html":
                parts.append(b.text)
            elif b.kind == "figure" and b.name in embedded:
                parts.append(_figure_html(b.name, b.text, embedded[b.name]))
                shown_figures.add(b.name)
            elif b.kind == "table" and b.show and b.name in sec.tables:
                parts.append(
                    f"<p><small>Table {_link(f'tables/{b.name}.csv')}</small></p>"
                    + _table_html(sec.tables[b.name], index=b.name in sec.indexed)
                )
                shown_tables.add(b.name)
        for name in sec.figures:  # figures no block placed: at the section's end
            if name not in shown_figures:
                parts.append(_figure_html(name, name, embedded[name]))
        unshown = [name for name in sec.tables if name not in shown_tables]
        if unshown:
            links = ", ".join(_link(f"tables/{name}.csv") for name in unshown)
            parts.append(f"<p><small>Also written: {links}</small></p>")
    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in toc)
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><nav>{nav}</nav>" + "\n".join(parts) + "</body></html>\n"
    )
    path = write_text(out_dir / "report.html", doc)  # last, whole or not at all
    return ReportFiles(html=path, tables=tables, figures=figures)


def _figure_html(name: str, caption: str, data: str) -> str:
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}" '
        f'data-figure="{_esc(name)}"><figcaption>{_esc(caption)} '
        f"({_link(f'figures/{name}.png')}, {_link(f'figures/{name}.svg', '.svg')})"
        "</figcaption></figure>"
    )


# ----------------------------------------------------------------------------- report
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
    human_scores: pd.DataFrame | None = None,
) -> Report:
    """Run every analysis and write figures, CSV tables and ``out_dir/report.html``.

    Each analysis is a ``section_*`` function (tables and figures, no files);
    :func:`write_report` writes them all.

    Parameters
    ----------
    jobs, scores, models : results tables (``docs/reference/results-tables.md``), possibly
        pooled from
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
    human_scores : per-response scores of the models on the held-out human test set
        (``model``, ``level``, ``response``, ``correct``, ``nll``): the verdict's
        leaderboard with paired bootstrap intervals; optional (without: no intervals).

    Returns
    -------
    :class:`Report`: ``report.html`` path, every CSV and figure written, and the paper's
    table (``report.paper_table``, also ``report.tables["tradeoff"]``).
    """
    cfg = config or ReportConfig()
    data = prepare_inputs(jobs, scores, models)
    notes = list(data.notes)
    n_concepts = _n_concepts(features, human_embedding)
    judged = study_verdict(data, cfg, human_scores=human_scores, n_concepts=n_concepts)
    kept: dict[str, Section] = {}

    def sections() -> Iterator[Section]:
        steps: list[tuple[str, Callable[[], Section | None]]] = [
            (
                "verdict",
                lambda: section_verdict(
                    data, cfg, human_scores=human_scores, n_concepts=n_concepts, result=judged
                ),
            ),
            ("conditions", lambda: section_conditions(data)),
            ("calibration", lambda: section_calibration(data)),
            ("recovery", lambda: section_recovery(data, cfg)),
            ("selection", lambda: section_selection(data, cfg)),
            ("confusion", lambda: section_confusion(data, cfg)),
            ("by_n", lambda: section_by_n(data, cfg)),
            ("ranks", lambda: section_ranks(data, cfg)),
            ("groups", lambda: section_groups(data, groups, cfg)),
            (
                "geometry",
                lambda: section_geometry(data, features, transforms, human_embedding, cfg),
            ),
            (
                "regression",
                lambda: section_regression(data, kept["geometry"].tables.get("geometry"), cfg),
            ),
            ("tradeoff", lambda: section_tradeoff(data, cfg)),
        ]
        for name, make in steps:
            sec = make()
            if sec is None:
                continue
            notes.extend(sec.notes)
            kept[name] = dataclasses.replace(sec, figures={})  # its tables, for the Report
            yield sec
        yield section_provenance(
            data, cfg, features=features, transforms=transforms,
            human_embedding=human_embedding, provenance=provenance, notes=notes,
        )  # fmt: skip

    files = write_report(sections(), out_dir, title=cfg.title, dpi=cfg.dpi)
    trade = kept["tradeoff"].tables
    return Report(
        html=files.html,
        out_dir=Path(out_dir),
        tables=files.tables,
        figures=files.figures,
        paper_table=trade.get("tradeoff"),
        tradeoff=trade.get("tradeoff_by_n"),
        recovery=kept["recovery"].tables["recovery_accuracy"],
        notes=tuple(notes),
        verdict=tuple(judged.lines),
    )


def _n_concepts(
    features: Mapping[str, np.ndarray] | None, human_embedding: np.ndarray | None
) -> int | None:
    """The study's number of concepts: the rows of the features or human embedding."""
    for array in [*(features or {}).values(), human_embedding]:
        if array is not None and np.ndim(array) == 2:
            return int(np.shape(array)[0])
    return None
