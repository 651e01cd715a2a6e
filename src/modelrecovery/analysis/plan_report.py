"""The plan's page: per level the jobs' outcomes, the fitted recovery curve with its band,
N_target with its interval, and the tables (docs/science/method.md §7)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import beta  # noqa: E402

from modelrecovery.analysis.report import Block, Section, write_report  # noqa: E402
from modelrecovery.analysis.sample_size import (  # noqa: E402
    CurveFit,
    curve_band,
    recovery_probability,
)

__all__ = ["plan_figure", "plan_sentences", "section_plan", "write_plan_report"]


def _fmt(n: float) -> str:
    if math.isnan(n):
        return "n/a"
    if not math.isfinite(n):
        return "inf"
    return f"{n:,.0f}"


def plan_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per planned level: N_target with its interval and the triplets to
    collect, or why there is none."""
    lines = []
    for _, row in table.iterrows():
        head = f"{row['label']}: "
        if row["status"] == "too_few_sizes":
            lines.append(
                head + f"the budget ran out after {row['jobs']} jobs, before three sizes were "
                "tried: no curve; raise --budget-jobs"
            )
        elif row["status"] == "reached":
            lines.append(
                head + f"recovery reaches {row['target']:.0%} at N = {_fmt(row['n_target'])} "
                f"training triplets per fold (95% interval {_fmt(row['n_target_low'])} - "
                f"{_fmt(row['n_target_high'])}), about {_fmt(row['triplets_to_collect'])} "
                f"triplets to collect in total ({_fmt(row['triplets_to_collect_low'])} - "
                f"{_fmt(row['triplets_to_collect_high'])}); {row['jobs']} jobs"
            )
        elif row["status"] == "unreachable":
            asymptote = (
                f"the curve's upper asymptote is {row['asymptote']:.2f} (95% interval "
                f"{row['asymptote_low']:.2f} - {row['asymptote_high']:.2f})"
            )
            if row["asymptote_high"] < row["target"]:
                why = f"{asymptote}, below the target {row['target']:.0%}"
            else:
                why = (
                    f"N_target lies above it (95% interval from {_fmt(row['n_target_low'])}); "
                    f"{asymptote}"
                )
            lines.append(
                head + f"not reachable within N <= {_fmt(row['max_n'])}: {why}; {row['jobs']} jobs"
            )
        else:
            lines.append(
                head + f"undetermined after {row['jobs']} jobs (stopped: {row['stop']}): "
                f"N_target {_fmt(row['n_target'])}, 95% interval {_fmt(row['n_target_low'])} - "
                f"{_fmt(row['n_target_high'])}; asymptote {row['asymptote']:.2f} "
                f"[{row['asymptote_low']:.2f}, {row['asymptote_high']:.2f}]"
            )
    return lines


def plan_figure(
    jobs: pd.DataFrame, fits: dict[tuple[str, str], CurveFit], confidence: float = 0.95
):
    """One panel per planned level (and design): recovery per size tried (exact CI), the
    fitted curve with its band, the target, and N_target with its interval."""
    keys = list(fits)
    n = len(keys)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        level, selection = key
        fit = fits[key]
        part = jobs[(jobs["level"] == level) & (jobs["selection"] == selection)]
        agg = part.groupby("n_train")["recovered"].agg(["sum", "count"]).reset_index()
        k, m = agg["sum"].to_numpy(), agg["count"].to_numpy()
        alpha = 1 - confidence
        low = np.where(k > 0, beta.ppf(alpha / 2, k, m - k + 1), 0.0)
        high = np.where(k < m, beta.ppf(1 - alpha / 2, k + 1, m - k), 1.0)
        mean = k / m
        ax.errorbar(
            agg["n_train"],
            mean,
            yerr=[mean - low, high - mean],
            fmt="o",
            ms=4,
            color="k",
            capsize=2,
            label="jobs (recovery, exact CI)",
        )
        grid = np.geomspace(max(1.0, part["n_train"].min() / 2), fit.n_max * 2, 200)
        lo, hi = curve_band(fit, grid)
        ax.fill_between(grid, lo, hi, color="C0", alpha=0.2, label="curve band")
        ax.plot(grid, recovery_probability(grid, fit.params), color="C0", label="fitted curve")
        ax.axhline(fit.target, color="C3", ls="--", lw=1, label=f"target {fit.target:.0%}")
        ax.axhline(fit.params.floor, color="grey", ls=":", lw=1, label="chance")
        if math.isfinite(fit.n_target):
            ax.axvline(fit.n_target, color="C3", lw=1)
        lo_n = fit.n_target_low if fit.n_target_low > 0 else grid[0]
        hi_n = fit.n_target_high if math.isfinite(fit.n_target_high) else grid[-1]
        if math.isfinite(fit.n_target_low):
            ax.axvspan(lo_n, hi_n, color="C3", alpha=0.08)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        title = level if selection == "random" else f"{level} ({selection})"
        ax.set_title(f"{title}: {fit.status}", fontsize=10)
        ax.set_xlabel("training triplets per fold, N")
        ax.set_ylabel("recovery")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def section_plan(
    table: pd.DataFrame,
    generators: pd.DataFrame,
    jobs: pd.DataFrame,
    fits: dict[tuple[str, str], CurveFit],
) -> Section:
    """The plan as a report section: sentences, figure, the level table, per generator."""
    blocks = [Block("text", line) for line in plan_sentences(table)]
    figures = {}
    if fits:
        figures["plan_curves"] = plan_figure(jobs, fits)
        blocks.append(
            Block(
                "figure",
                "Recovery per size tried (exact 95% CI), the fitted curve (logistic in log N "
                "between chance and an upper asymptote, maximum likelihood) with its band "
                "(the pointwise range of the curves inside the parameters' 95% profile set), "
                "the target (dashed), and N_target with its profile-likelihood 95% interval "
                "(shaded).",
                "plan_curves",
            )
        )
    blocks.append(Block("heading", "Per level"))
    blocks.append(Block("table", name="plan"))
    blocks.append(Block("heading", "Per generator (hardest first)"))
    blocks.append(Block("table", name="plan_generators"))
    blocks.append(Block("table", name="plan_jobs", show=False))
    return Section(
        name="plan",
        title="How many triplets identify the generating model",
        tables={"plan": table, "plan_generators": generators, "plan_jobs": jobs},
        figures=figures,
        blocks=tuple(blocks),
    )


def write_plan_report(
    table: pd.DataFrame,
    generators: pd.DataFrame,
    jobs: pd.DataFrame,
    fits: dict[tuple[str, str], CurveFit],
    out_dir: str | Path,
    study: str,
) -> Path:
    """Write the plan's page (``out_dir/report.html``, tables and figure); returns it."""
    files = write_report(
        [section_plan(table, generators, jobs, fits)], out_dir, title=f"Plan: {study}"
    )
    return files.html
