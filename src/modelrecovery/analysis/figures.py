"""Figures of the recovery analysis (matplotlib, Agg canvas, Okabe-Ito colours).

Every ``plot_*`` function takes the tidy table it draws and returns a
``matplotlib.figure.Figure`` bound to an Agg canvas (pyplot and the global backend are not
touched). :func:`save_figure` writes PNG and SVG, :func:`save_table` the CSV of what was
plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from modelrecovery.analysis.metrics import sort_conditions
from modelrecovery.outputs import atomic_path

__all__ = [
    "OKABE_ITO",
    "format_count",
    "palette",
    "plot_confusion",
    "plot_human_distance",
    "plot_mds",
    "plot_ranks",
    "plot_recovery_curves",
    "plot_regression",
    "plot_tradeoff",
    "plot_win_share",
    "save_figure",
    "save_table",
]

#: Okabe & Ito (2008) colour-blind-safe palette, ordered for lines on white.
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def palette(n: int) -> list[str]:
    """``n`` Okabe-Ito colours (cycled beyond eight)."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]


def _style(i: int) -> dict:
    return {
        "color": OKABE_ITO[i % len(OKABE_ITO)],
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINESTYLES[(i // len(OKABE_ITO)) % len(_LINESTYLES)],
    }


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def format_count(value: float, _pos: object = None) -> str:
    """Compact count label: 50, 400, 25.6k, 1.6M."""
    v = float(value)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return f"{s}{suffix}"
    return f"{v:g}"


def _group_order(values: Sequence[str]) -> list[str]:
    """Labels in level order: zero_shot, diagonal, rectangular (by k), full, others."""
    return sort_conditions(values)


def _group_column(df: pd.DataFrame, group: str | None) -> pd.Series:
    if group is not None and group in df.columns:
        return df[group].astype(str)
    for col in ("condition", "family"):
        if col in df.columns:
            return df[col].astype(str)
    return pd.Series("all", index=df.index)


def _err(length: np.ndarray | pd.Series) -> np.ndarray:
    """Error-bar lengths: NaN -> 0, negative (interval excludes the estimate) -> 0."""
    return np.clip(np.nan_to_num(np.asarray(length, dtype=float), nan=0.0), 0.0, None)


def _predictor_label(name: str) -> str:
    words = str(name).replace("_", " ").split()
    abbrev = {"ed": "ED", "dim": "dim.", "n": "number of"}
    return " ".join(abbrev.get(w, w) for w in words)


def _tick_fontsize(n: int) -> float:
    return 9.0 if n <= 12 else 8.0 if n <= 20 else 6.5 if n <= 35 else 5.0


# ----------------------------------------------------------------------------- saving
def save_figure(fig: Figure, out_dir: str | Path, name: str, *, dpi: int = 150) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` into ``out_dir``; returns ``{"png": .., "svg": ..}``."""
    out_dir = Path(out_dir)
    paths = {"png": out_dir / f"{name}.png", "svg": out_dir / f"{name}.svg"}
    with mpl.rc_context({"svg.hashsalt": "modelrecovery", "svg.fonttype": "none"}):
        with atomic_path(paths["png"]) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
        with atomic_path(paths["svg"]) as tmp:
            fig.savefig(tmp, format="svg", metadata={"Date": None})
    return paths


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str) -> Path:
    """Write ``name.csv`` into ``out_dir`` (index kept when it is named)."""
    out_dir = Path(out_dir)
    path = out_dir / f"{name}.csv"
    keep_index = table.index.name is not None or any(n is not None for n in table.index.names)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=keep_index)
    return path


# ----------------------------------------------------------------------------- recovery
def plot_recovery_curves(
    accuracy: pd.DataFrame, *, group: str | None = "condition", title: str | None = None
) -> Figure:
    """Recovery accuracy against N (log axis) per condition, CI bands, chance line(s).

    ``accuracy`` is :func:`~modelrecovery.analysis.metrics.recovery_accuracy` output
    (``n_train``, ``accuracy``, ``ci_low``, ``ci_high``, ``chance``).
    """
    fig, (ax,) = _new_figure(7.5, 4.6)
    labels = _group_column(accuracy, group)
    chances = accuracy["chance"].dropna().unique() if "chance" in accuracy else np.array([])
    for i, lab in enumerate(_group_order(labels)):
        sub = accuracy[labels == lab].sort_values("n_train")
        n = sub["n_train"].to_numpy(dtype=float)
        style = _style(i)
        ax.fill_between(
            n, sub["ci_low"], sub["ci_high"], color=style["color"], alpha=0.18, linewidth=0
        )
        ax.errorbar(
            n,
            sub["accuracy"],
            yerr=[_err(sub["accuracy"] - sub["ci_low"]), _err(sub["ci_high"] - sub["accuracy"])],
            label=lab,
            capsize=2.5 if len(n) == 1 else 0,
            elinewidth=1 if len(n) == 1 else 0,
            markersize=5,
            **style,
        )
        if len(chances) > 1:
            ax.plot(n, sub["chance"], color=style["color"], linestyle=":", linewidth=1)
    if len(chances) == 1:
        c = float(chances[0])
        ax.axhline(c, color="0.35", linestyle=":", linewidth=1.2, label=f"chance (1/{1 / c:.0f})")
    ax.set_xscale("log")
    ns = np.sort(accuracy["n_train"].unique().astype(float))
    if 0 < len(ns) <= 8:
        ax.set_xticks(ns)
        ax.minorticks_off()
    ax.xaxis.set_major_formatter(FuncFormatter(format_count))
    if len(ns) == 1:
        ax.set_xlim(ns[0] / 2, ns[0] * 2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Training triplets per fold, N (log scale)")
    ax.set_ylabel("Recovery accuracy (share of jobs)")
    ax.set_title(title or "Model recovery vs. training-set size (95% exact binomial CI)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="Condition", fontsize=8, title_fontsize=8, loc="best")
    return fig


def plot_confusion(
    counts: pd.DataFrame, normalized: pd.DataFrame | None = None, *, title: str = ""
) -> Figure:
    """Generator x winner heat maps: counts, and row shares when ``normalized`` is given."""
    panels = [("Counts", counts)] + (
        [("Share of generator's jobs", normalized)] if normalized is not None else []
    )
    n_rows, n_cols = counts.shape
    side = max(4.0, 0.32 * max(n_rows, n_cols) + 2.5)
    fig, axes = _new_figure(side * len(panels) + 0.6, side, ncols=len(panels))
    fs = _tick_fontsize(max(n_rows, n_cols))
    for ax, (name, mat) in zip(axes, panels, strict=True):
        values = mat.to_numpy(dtype=float)
        vmax = 1.0 if mat is normalized else max(1.0, np.nanmax(values) if values.size else 1.0)
        im = ax.imshow(values, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        ax.set_xticks(range(n_cols), [str(c) for c in mat.columns], rotation=90, fontsize=fs)
        ax.set_yticks(range(n_rows), [str(r) for r in mat.index], fontsize=fs)
        ax.set_xlabel("Winning candidate")
        ax.set_ylabel("Data-generating model")
        ax.set_title(name, fontsize=10)
        if max(n_rows, n_cols) <= 25:
            for (r, c), v in np.ndenumerate(values):
                if np.isnan(v) or v == 0:
                    continue
                text = f"{v:.0f}" if mat is counts else f"{v:.2f}".lstrip("0")
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=fs - 1.5,
                    color="black" if v > 0.6 * vmax else "white",
                )
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title or "Confusion matrix", fontsize=11)
    return fig


def plot_ranks(ranks: pd.DataFrame, *, title: str = "") -> Figure:
    """Correct rank (BCa CI) and false rank (SEM) per model, from ``rank_summary`` output."""
    df = ranks.sort_values(["correct_rank", "model"], na_position="last").reset_index(drop=True)
    n = len(df)
    fig, (ax,) = _new_figure(7.0, max(3.0, 0.3 * n + 1.5))
    y = np.arange(n)
    cr = df["correct_rank"].to_numpy(dtype=float)
    lo = _err(cr - df["correct_ci_low"].to_numpy(dtype=float))
    hi = _err(df["correct_ci_high"].to_numpy(dtype=float) - cr)
    ax.errorbar(
        cr,
        y - 0.12,
        xerr=[lo, hi],
        fmt="o",
        color=OKABE_ITO[0],
        capsize=2.5,
        label="correct rank: on its own data (95% BCa CI)",
    )
    fr = df["false_rank"].to_numpy(dtype=float)
    sem = _err(df["false_sem"])
    ax.errorbar(
        fr,
        y + 0.12,
        xerr=sem,
        fmt="s",
        color=OKABE_ITO[1],
        capsize=2.5,
        label="false rank: on other models' data (± SEM)",
    )
    ax.set_yticks(y, df["model"].astype(str), fontsize=_tick_fontsize(n))
    ax.invert_yaxis()
    ax.set_xlabel("Rank among candidates (1 = best)")
    ax.set_ylabel("Model")
    ax.set_xlim(left=0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Correct vs. false rank", fontsize=10)
    return fig


def plot_win_share(shares: pd.DataFrame, *, title: str = "", alpha: float = 0.05) -> Figure:
    """Share of jobs won by each candidate against the fair share (``win_share`` output)."""
    df = shares.sort_values(["share", "candidate"], ascending=[False, True]).reset_index(drop=True)
    n = len(df)
    fig, (ax,) = _new_figure(7.0, max(3.0, 0.28 * n + 1.5))
    excess = df["p_excess"].to_numpy(dtype=float) < alpha
    colors = [OKABE_ITO[1] if e else OKABE_ITO[0] for e in excess]
    y = np.arange(n)
    ax.barh(y, df["share"], color=colors)
    fair = float(df["fair_share"].mean()) if n else float("nan")
    ax.axvline(
        fair, color="0.2", linestyle="--", linewidth=1.2, label=f"fair share 1/{1 / fair:.0f}"
    )
    ax.set_yticks(y, df["candidate"].astype(str), fontsize=_tick_fontsize(n))
    ax.invert_yaxis()
    ax.set_xlabel("Share of jobs won")
    ax.set_ylabel("Candidate model")
    handles = [
        Patch(color=OKABE_ITO[1], label=f"wins more than fair (p < {alpha:g})"),
        Patch(color=OKABE_ITO[0], label="not significantly more"),
    ]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], fontsize=8, loc="best")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or "Who wins?", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- geometry
def plot_mds(coords: pd.DataFrame, *, title: str = "") -> Figure:
    """MDS of RDM dissimilarities: raw (circles) -> probed (triangles), humans as a star."""
    fig, (ax,) = _new_figure(7.5, 6.5)
    raw = coords[coords["state"] == "raw"].set_index("model")
    trans = coords[coords["state"] == "transformed"].set_index("model")
    human = coords[coords["state"] == "human"]
    for model in trans.index.intersection(raw.index):
        (x0, y0), (x1, y1) = raw.loc[model, ["x", "y"]], trans.loc[model, ["x", "y"]]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "0.55", "linewidth": 0.8},
        )
    ax.scatter(
        raw["x"],
        raw["y"],
        s=40,
        facecolors="white",
        edgecolors=OKABE_ITO[0],
        linewidths=1.5,
        label="raw features",
        zorder=3,
    )
    if len(trans):
        ax.scatter(
            trans["x"],
            trans["y"],
            s=45,
            marker="^",
            color=OKABE_ITO[1],
            label="after probing (X W)",
            zorder=3,
        )
    if len(human):
        ax.scatter(
            human["x"],
            human["y"],
            s=220,
            marker="*",
            color="black",
            label="human embedding",
            zorder=4,
        )
    fs = _tick_fontsize(len(raw))
    for model, row in raw.iterrows():
        ax.annotate(
            str(model),
            (row["x"], row["y"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=fs - 1,
            color=OKABE_ITO[0],
        )
    ax.set_xlabel("MDS dimension 1")
    ax.set_ylabel("MDS dimension 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Model RDMs (MDS of 1 − RDM similarity)", fontsize=10)
    return fig


def plot_human_distance(geometry: pd.DataFrame, *, title: str = "") -> Figure:
    """Distance of each model's RDM to the human RDM before and after probing."""
    df = geometry.sort_values(["human_distance_before", "model"]).reset_index(drop=True)
    n = len(df)
    fig, (ax,) = _new_figure(7.0, max(3.0, 0.3 * n + 1.5))
    y = np.arange(n)
    before = df["human_distance_before"].to_numpy(dtype=float)
    after = df["human_distance_after"].to_numpy(dtype=float)
    for yi, b, a in zip(y, before, after, strict=True):
        if np.isfinite(a):
            ax.plot([b, a], [yi, yi], color="0.7", linewidth=1, zorder=1)
    ax.scatter(before, y, color=OKABE_ITO[0], label="raw features", zorder=2)
    if np.isfinite(after).any():
        ax.scatter(after, y, marker="^", color=OKABE_ITO[1], label="after probing", zorder=2)
    ax.set_yticks(y, df["model"].astype(str), fontsize=_tick_fontsize(n))
    ax.invert_yaxis()
    ax.set_xlabel("Distance to the human RDM (1 − RDM similarity)")
    ax.set_ylabel("Model")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Do models move toward the human representation?", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- trade-off
def plot_tradeoff(
    table: pd.DataFrame,
    *,
    group: str | None = "condition",
    paper: pd.DataFrame | None = None,
    through_n: bool = True,
    title: str | None = None,
) -> Figure:
    """Recovery accuracy (y, exact CI) against mean human-data accuracy (x, ± SEM).

    Parameters
    ----------
    table : :func:`~modelrecovery.analysis.tradeoff.tradeoff_table` output (one row per
        condition and N: ``n_train``, ``accuracy``, ``ci_low``, ``ci_high``,
        ``human_mean``, ``human_sem``).
    group : column naming the condition (one point per condition at its largest N,
        drawn large with error bars).
    paper : reference points drawn in grey, labelled as the paper's: columns ``label``,
        ``human_accuracy``, ``recovery`` and optionally ``upper_bound`` (drawn as ``v``).
    through_n : also draw the smaller N as small markers joined by a thin line.
    """
    fig, (ax,) = _new_figure(7.0, 5.0)
    labels = _group_column(table, group)
    for i, lab in enumerate(_group_order(labels)):
        sub = table[labels == lab].sort_values("n_train")
        sub = sub[np.isfinite(sub["human_mean"].to_numpy(dtype=float))]
        if sub.empty:
            continue
        style = _style(i)
        last = sub.iloc[[-1]]
        if through_n and len(sub) > 1:
            ax.plot(
                sub["human_mean"],
                sub["accuracy"],
                color=style["color"],
                marker=style["marker"],
                markersize=3,
                linewidth=0.8,
                alpha=0.5,
            )
            first = sub.iloc[0]
            ax.annotate(
                f"N={format_count(first['n_train'])}",
                (first["human_mean"], first["accuracy"]),
                textcoords="offset points",
                xytext=(5, -3),
                fontsize=7,
                color=style["color"],
            )
        ax.errorbar(
            last["human_mean"],
            last["accuracy"],
            xerr=_err(last["human_sem"]),
            yerr=[
                _err(last["accuracy"] - last["ci_low"]),
                _err(last["ci_high"] - last["accuracy"]),
            ],
            label=f"{lab} (N={format_count(last['n_train'].iloc[0])})",
            capsize=3,
            markersize=8,
            **{**style, "linestyle": "none"},
        )
    labelled: list[tuple[str, float, float]] = []  # the paper's points, labelled last
    if paper is not None and len(paper):
        bound = (
            paper["upper_bound"].astype(bool)
            if "upper_bound" in paper.columns
            else pd.Series(False, index=paper.index)
        )
        for marker, rows, text in (("D", paper[~bound], ""), ("v", paper[bound], " (upper bound)")):
            if rows.empty:
                continue
            ax.scatter(
                rows["human_accuracy"],
                rows["recovery"],
                marker=marker,
                s=45,
                facecolors="none",
                edgecolors="0.45",
                label=f"paper (Avitan & Golan 2025), approx.{text}",
                zorder=2,
            )
            for _, row in rows.iterrows():
                labelled.append((str(row["label"]), row["human_accuracy"], row["recovery"]))
    if not ax.has_data():
        ax.text(0.5, 0.5, "no human-data accuracy available", ha="center", transform=ax.transAxes)
    ax.margins(x=0.12)
    low, high = ax.get_xlim()
    for text, x, y in labelled:  # toward the middle: a label never leaves the figure
        right = x < (low + high) / 2
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(4 if right else -4, 6),
            ha="left" if right else "right",
            fontsize=7,
            color="0.45",
        )
    ax.set_xlabel("Mean prediction accuracy on held-out human triplets (± SEM over models)")
    ax.set_ylabel("Recovery accuracy (exact 95% CI)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="Condition, largest N", fontsize=7, title_fontsize=8, loc="best")
    ax.set_title(title or "Recovery vs. predictive accuracy, one point per level", fontsize=10)
    return fig


def plot_regression(coefs: pd.DataFrame, *, title: str = "", alpha: float = 0.05) -> Figure:
    """Standardised coefficients with bootstrap CIs; filled = Bonferroni-significant."""
    df = coefs.reset_index(drop=True)
    n = len(df)
    fig, (ax,) = _new_figure(6.5, max(2.5, 0.38 * n + 1.3))
    y = np.arange(n)
    beta = df["beta"].to_numpy(dtype=float)
    lo = _err(beta - df["ci_low"].to_numpy(dtype=float))
    hi = _err(df["ci_high"].to_numpy(dtype=float) - beta)
    sig = df["p_bonferroni"].to_numpy(dtype=float) < alpha
    ax.errorbar(beta, y, xerr=[lo, hi], fmt="none", ecolor="0.4", capsize=2.5)
    ax.scatter(beta[sig], y[sig], color=OKABE_ITO[1], zorder=3, label=f"p_Bonf < {alpha:g}")
    ax.scatter(
        beta[~sig],
        y[~sig],
        facecolors="white",
        edgecolors=OKABE_ITO[0],
        zorder=3,
        label="not significant",
    )
    ax.axvline(0, color="0.3", linewidth=1)
    ax.set_yticks(y, [_predictor_label(p) for p in df["predictor"]], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("Standardised β (95% bootstrap CI over models)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Accuracy difference (generator − candidate) regression", fontsize=10)
    return fig
