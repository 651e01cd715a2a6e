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
from modelrecovery.analysis.metrics import (
    add_condition,
    condition_columns,
    confusion_matrix,
    correct_rank,
    mean_reciprocal_rank,
    rank_summary,
    recovery_accuracy,
    win_share,
)
from modelrecovery.analysis.regression import (
    DEFAULT_PROPERTIES,
    accuracy_difference_regression,
    model_properties,
)
from modelrecovery.analysis.tradeoff import tradeoff_table

__all__ = ["ReportConfig", "build_report", "table_fingerprint"]


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
    geometry_family : family whose transforms ``W`` are given (default: ``"full"`` when
        present, else the first family); the regression uses this family's scores.
    score_column : per-candidate score of the regression target.
    regression_properties : model properties in the regression (default: those of
        ``shift, ed_before, ed_after, feature_dim`` that are available).
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
    geometry_family: str | None = None
    score_column: str = "test_accuracy"
    regression_properties: tuple[str, ...] | None = None
    max_concepts: int | None = None
    dpi: int = 110
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    out = "".join(c if c.isalnum() else "_" for c in str(text).lower())
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "all"


class _Writer:
    """Collects HTML sections while writing figures and tables into ``out_dir``."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.tab_dir = out_dir / "tables"
        self.dpi = dpi
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figures: list[str] = []
        self.tables: list[str] = []

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
        self.figures.append(name)
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}" '
            f'data-figure="{_esc(name)}"><figcaption>{_esc(caption)} '
            f"(<code>figures/{_esc(name)}.png</code>, <code>.svg</code>)</figcaption></figure>"
        )

    def table(self, df: pd.DataFrame, name: str, *, index: bool = False, show: bool = True) -> None:
        F.save_table(df if index else df.reset_index(drop=True), self.tab_dir, name)
        self.tables.append(name)
        if show:
            self.parts.append(
                f"<p><small>Table <code>tables/{_esc(name)}.csv</code></small></p>"
                + _table_html(df, index=index)
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
) -> Path:
    """Run every analysis and write figures, CSV tables and ``out_dir/report.html``.

    Parameters
    ----------
    jobs, scores, models : results tables (``docs/results_tables.md``), possibly pooled from
        several runs; duplicate ``job_id`` rows (and duplicate ``(job_id, candidate)`` score
        rows) keep the last occurrence. ``models`` may be None (no trade-off).
    features : model name -> ``n x p`` features over all concepts (geometry, MDS,
        regression); optional.
    transforms : model name -> fitted ``W`` of ``config.geometry_family``; optional.
    human_embedding : ``n x d`` human embedding (distance to humans, MDS); optional.
    provenance : run ids, commits, data hashes, ... (rendered as given).
    out_dir : output folder (``figures/``, ``tables/`` and ``report.html`` inside).
    config : :class:`ReportConfig` (defaults when None).

    Returns
    -------
    Path of ``report.html``.
    """
    cfg = config or ReportConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = _Writer(out_dir, cfg.dpi)
    notes: list[str] = []

    n_jobs_in = len(jobs)
    jobs = jobs.drop_duplicates("job_id", keep="last")
    scores = scores.drop_duplicates(["job_id", "candidate"], keep="last")
    if len(jobs) < n_jobs_in:
        notes.append(f"{n_jobs_in - len(jobs)} duplicate job rows dropped (same job_id).")
    cond_cols = condition_columns(jobs)
    jobs = add_condition(jobs, cond_cols)
    scores = add_condition(scores, [c for c in cond_cols if c in scores.columns])
    by = ["condition", *cond_cols, "n_train"]
    conditions = sorted(jobs["condition"].unique())
    families = sorted(jobs["family"].dropna().unique()) if "family" in jobs else []

    # --- recovery --------------------------------------------------------------------
    w.section("Recovery accuracy")
    acc = recovery_accuracy(jobs, by, confidence=cfg.confidence)
    w.figure(
        F.plot_recovery_curves(acc, group="condition"),
        "recovery_accuracy",
        "Recovery accuracy per training-set size and probe family; bands and bars: exact "
        f"(Clopper-Pearson) {cfg.confidence:.0%} binomial CI; dotted: chance 1/n_candidates.",
    )
    w.table(acc, "recovery_accuracy")
    cr = correct_rank(
        jobs, by, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed
    )
    mrr = mean_reciprocal_rank(jobs, by)
    rank_by_n = cr.rename(
        columns={"mean_rank": "correct_rank", "ci_low": "rank_ci_low", "ci_high": "rank_ci_high"}
    ).merge(mrr.drop(columns="n"), on=by, how="left")
    w.heading("Rank of the generator on its own data, and mean reciprocal rank")
    w.table(rank_by_n, "ranks_by_n")

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
            single = cj.drop(columns=[c for c in cond_cols if c != "family"])
            counts = confusion_matrix(single, **kw)
            norm = confusion_matrix(single, normalize=True, **kw)
            name = f"confusion_{_slug(cond)}_n{int(n)}"
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
        slug = f"{_slug(cond)}_n{int(n)}"
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
                "CI) and false rank (a model's mean rank on other models' data, ± SEM).",
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

    # --- geometry --------------------------------------------------------------------
    w.section("Representational geometry")
    geometry = None
    geo_family = cfg.geometry_family or (
        "full" if "full" in families else (families[0] if families else None)
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
            f"RDM comparison: {cfg.rdm_method}; transforms of family {geo_family}; "
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
            cols = ["model", "human_distance_before", "human_distance_after"]
            w.table(geometry[cols], "human_distance", show=False)
        else:
            w.note("No human embedding given: distances to humans are not shown.")

    # --- regression ------------------------------------------------------------------
    w.section("What predicts the accuracy difference?")
    if geometry is None:
        w.note("Skipped: needs features (and ideally transforms) for the model properties.")
    else:
        reg_conds = sorted(
            jobs.loc[jobs["family"] == geo_family, "condition"].unique()
            if "family" in jobs
            else conditions
        )
        if not reg_conds:
            w.note(f"Skipped: no jobs of the geometry family {geo_family!r}.")
        for cond in reg_conds:
            cs = scores[scores["condition"] == cond]
            props = model_properties(models, geometry, family=geo_family)
            names = list(cfg.regression_properties or DEFAULT_PROPERTIES)
            used = sorted(set(cs["candidate"]) | set(cs["generator"]))
            sub = props.reindex(used)
            names = [
                p
                for p in names
                if p in sub.columns
                and pd.to_numeric(sub[p], errors="coerce").notna().any()
                and pd.to_numeric(sub[p], errors="coerce").nunique() > 1
            ]
            n_models = int(sub.dropna(how="all").shape[0])
            if not names or n_models < 3:
                w.note(
                    f"{cond}: regression skipped ({n_models} models with properties, "
                    f"usable properties {names})."
                )
                continue
            single = cs.drop(columns=[c for c in cond_cols if c != "family"])
            try:
                coefs = accuracy_difference_regression(
                    single,
                    models,
                    geometry,
                    properties=names,
                    family=geo_family,
                    score_column=cfg.score_column,
                    n_boot=cfg.n_boot,
                    seed=cfg.seed,
                    confidence=cfg.confidence,
                )
            except ValueError as err:
                w.note(f"{cond}: regression skipped ({err}).")
                continue
            if not np.isfinite(coefs["beta"]).any():
                w.note(f"{cond}: regression skipped (too few pairs for {len(names)} properties).")
                continue
            n_max = int(cs["n_train"].max())
            w.heading(f"{cond}, N = {F.format_count(n_max)}")
            w.figure(
                F.plot_regression(coefs, title=f"{cond}, N = {n_max:,}"),
                f"regression_{_slug(cond)}",
                f"Standardised OLS of the z-scored {cfg.score_column} difference (generator's "
                "own − candidate's, on the generator's data, mean over seeds) on z-scored "
                f"model properties; {cfg.n_boot:,} bootstrap resamples over models; "
                "Bonferroni-corrected p-values.",
            )
            w.table(coefs, f"regression_{_slug(cond)}")

    # --- trade-off -------------------------------------------------------------------
    w.section("Recovery vs. predictive accuracy")
    if models is None or "human_accuracy" not in models.columns or "family" not in jobs:
        w.note("Skipped: needs the models table with human_accuracy.")
    else:
        trade = tradeoff_table(jobs, models, by, confidence=cfg.confidence)
        w.figure(
            F.plot_tradeoff(trade, group="condition"),
            "tradeoff",
            "Recovery accuracy (exact CI) against the mean accuracy of the family's fitted "
            "models on held-out human triplets (± SEM over models), per family and N.",
        )
        w.table(trade, "tradeoff")

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
            "models": table_fingerprint(models, ["model", "family"]),
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
    return path
