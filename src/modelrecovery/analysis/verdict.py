"""The verdict of a recovery study, in the words a lab asks it: "if I crown the
best-fitting model with a flexible probe, would I pick the right one, and how sure can I
be?" (the report's first section, and the lines ``recover`` and ``analyze`` print).

Pure functions: results tables in, tables and sentences out; nothing here writes.

- :func:`recovery_intervals` / :func:`recovery_sentence`: per condition and N, the share
  of jobs whose crown went to the generating model, with an exact (Clopper-Pearson)
  interval; whether and from which N a target (e.g. 80%) is reached. Jobs where the
  generator tied at the top carry shared credit (``recovered`` = 1/k): the estimate is
  the mean credit (the recovery expected when ties are broken at random) and the
  interval runs from the Clopper-Pearson lower bound with every tie lost to the upper
  bound with every tie won, so it covers any way of breaking the ties (without ties it is
  the plain Clopper-Pearson interval).
- :func:`crown_trust`: P(the crowned model is the true one | it was crowned), from the
  confusion matrix under a uniform prior over the generators (Bayes).
- :func:`human_leaderboard` / :func:`models_leaderboard`: the models on the held-out human
  data, with paired bootstrap intervals of each model's accuracy gap to the top model.
- :func:`~modelrecovery.analysis.groups.excess_wins`: the one systematic-bias test
  (:func:`bias_sentence`).
- :func:`triplets_to_collect`: the per-fold N of the grid as uniformly sampled triplets a
  lab has to collect.
- :func:`verdict` (tables and lines) and :func:`verdict_lines` (the lines only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from modelrecovery.analysis.groups import excess_wins
from modelrecovery.analysis.metrics import add_condition, group_rng, level_sort_key

__all__ = [
    "Verdict",
    "bias_sentence",
    "clopper_pearson",
    "collection_plan",
    "crown_sentence",
    "crown_trust",
    "fold_concept_counts",
    "human_leaderboard",
    "leaderboard_sentence",
    "models_leaderboard",
    "recovery_by_model",
    "recovery_intervals",
    "recovery_sentence",
    "target_reached",
    "triplets_to_collect",
    "verdict",
    "verdict_lines",
]


# ----------------------------------------------------------------------------- recovery
def clopper_pearson(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of ``k`` successes in ``n`` trials:
    ``Beta(a/2; k, n-k+1)`` and ``Beta(1-a/2; k+1, n-k)`` quantiles (0 and 1 at the
    edges); ``(nan, nan)`` when ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    a = 1.0 - confidence
    low = 0.0 if k <= 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def _credit(jobs: pd.DataFrame) -> np.ndarray:
    """Recovery credit per job: ``recovered`` (1, 0, or 1/k shared with k tied), else
    ``winner == generator``."""
    if "recovered" in jobs.columns:
        return pd.to_numeric(jobs["recovered"], errors="coerce").fillna(0).to_numpy(float)
    return (jobs["winner"] == jobs["generator"]).to_numpy(float)


def _interval(credit: np.ndarray, confidence: float) -> dict[str, float]:
    n = len(credit)
    k_low = int(np.sum(credit >= 1.0))  # ties broken against the generator
    k_high = int(np.sum(credit > 0.0))  # ties broken in its favour
    low, _ = clopper_pearson(k_low, n, confidence)
    _, high = clopper_pearson(k_high, n, confidence)
    return {
        "n_jobs": n,
        "credit": float(np.sum(np.sort(credit))),
        "n_shared": k_high - k_low,
        "accuracy": float(np.mean(credit)) if n else float("nan"),
        "ci_low": low,
        "ci_high": high,
    }


def recovery_intervals(
    jobs: pd.DataFrame, by: Sequence[str] = ("condition", "n_train"), *, confidence: float = 0.95
) -> pd.DataFrame:
    """Recovery per group (default: condition and N) with tie-aware exact intervals.

    Returns
    -------
    ``by`` columns, ``n_jobs``, ``credit`` (sum of the jobs' credit), ``n_shared`` (jobs
    whose generator tied at the top with others: shared credit), ``accuracy`` (mean
    credit), ``ci_low`` (Clopper-Pearson with every shared job lost), ``ci_high`` (with
    every shared job won).
    """
    by = list(by)
    df = jobs.assign(_credit=_credit(jobs))
    rows = [
        {**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
         **_interval(sub["_credit"].to_numpy(), confidence)}
        for key, sub in df.groupby(by, sort=True, dropna=False)
    ]  # fmt: skip
    cols = [*by, "n_jobs", "credit", "n_shared", "accuracy", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols)


def recovery_by_model(
    jobs: pd.DataFrame, by: Sequence[str] = ("condition", "n_train"), *, confidence: float = 0.95
) -> pd.DataFrame:
    """:func:`recovery_intervals` per generating model (``by`` + ``generator``)."""
    return recovery_intervals(jobs, [*by, "generator"], confidence=confidence)


def target_reached(table: pd.DataFrame, target: float = 0.8) -> dict[str, int | None]:
    """Where recovery reaches ``target`` along N (``table``: one condition's
    :func:`recovery_intervals` rows).

    Returns
    -------
    ``first``: the smallest N whose estimate is at least ``target`` (None: none);
    ``from``: the smallest N from which the estimate stays at or above it at every larger
    N tried (None: it does not hold up to the largest N); ``ci_from``: the same for the
    interval's lower bound (recovery shown above the target with the interval's
    confidence).
    """
    t = table.sort_values("n_train")
    ns = t["n_train"].to_numpy()

    def stays(values: np.ndarray) -> int | None:
        ok = values >= target
        if not ok.size or not ok[-1]:
            return None
        i = len(ok) - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        return int(ns[i])

    acc, low = t["accuracy"].to_numpy(float), t["ci_low"].to_numpy(float)
    hits = np.flatnonzero(acc >= target)
    return {
        "first": int(ns[hits[0]]) if hits.size else None,
        "from": stays(acc),
        "ci_from": stays(low),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def _count(n: float) -> str:
    return f"{int(round(n)):,}"


def _label(condition: str, level: str | None) -> str:
    return (
        f"{condition} probes" if level is not None and str(condition) == str(level) else condition
    )


def recovery_sentence(
    label: str,
    table: pd.DataFrame,
    *,
    target: float = 0.8,
    confidence: float = 0.95,
    collect: dict[int, int] | None = None,
) -> str:
    """One sentence: recovery at the largest N with its interval, and where ``target`` is
    reached (``table``: one condition's :func:`recovery_intervals` rows; ``collect``: N ->
    uniformly sampled triplets to collect, shown beside N).

    E.g. ``"full probes: the generating model is recovered in 67% [35, 90] of 12 jobs at
    N = 5,000 per fold (≈ 78,125 uniformly sampled triplets to collect); below 80% at
    every N tried"``, or ``"...; reaches 80% from N = 1,000 on (≈ 15,625 triplets to
    collect); the 95% interval does not clear 80% at any N"``.
    """
    t = table.sort_values("n_train")
    top = t.iloc[-1]
    n = int(top["n_train"])

    def triplets(n_: int, words: str = "triplets") -> str:
        return f" (≈ {_count(collect[n_])} {words} to collect)" if collect and n_ in collect else ""

    text = (
        f"{label}: the generating model is recovered in {_pct(top['accuracy'])}% "
        f"[{_pct(top['ci_low'])}, {_pct(top['ci_high'])}] of {int(top['n_jobs'])} jobs at "
        f"N = {n:,} per fold{triplets(n, 'uniformly sampled triplets')}"
    )
    if int(top["n_shared"]):
        text += (
            f" ({int(top['n_shared'])} jobs tied the generator at the top and share their "
            "credit; the interval spans every way of breaking the ties)"
        )
    reached = target_reached(t, target)
    goal = f"{_pct(target)}%"
    if reached["first"] is None:
        text += f"; below {goal} at every N tried" if len(t) > 1 else f"; below {goal}"
    elif reached["from"] is not None:
        text += (
            f"; reaches {goal} from N = {reached['from']:,} on{triplets(reached['from'])}"
            if len(t) > 1
            else f"; reaches {goal}"
        )
        if reached["first"] != reached["from"]:
            dips = t[(t["n_train"] > reached["first"]) & (t["accuracy"] < target)]["n_train"]
            text += (
                f" (already at N = {reached['first']:,}, but below it at "
                + ", ".join(f"N = {int(x):,}" for x in dips)
                + ")"
            )
    else:
        later = t[(t["n_train"] > reached["first"]) & (t["accuracy"] < target)]["n_train"]
        text += (
            f"; reaches {goal} at N = {reached['first']:,}{triplets(reached['first'])} but "
            "falls below it again at "
            f"N = {int(later.iloc[0]):,}"
        )
    if reached["first"] is not None or reached["ci_from"] is not None:
        if reached["ci_from"] is None:
            text += f"; the {confidence:.0%} interval does not clear {goal} at any N"
        else:
            text += (
                f"; the {confidence:.0%} interval clears {goal} from N = {reached['ci_from']:,} on"
            )
    return text


# ----------------------------------------------------------------------------- triplets
def fold_concept_counts(
    n_concepts: int, train_fraction: float = 0.7, n_folds: int = 3
) -> list[tuple[int, int, int]]:
    """(train, validation, test) concept counts of the grid's concept-disjoint folds
    (:func:`modelrecovery.data.splits.concept_folds`): the test parts split the concepts
    into ``n_folds`` near-equal parts; of the others ``round(train_fraction * len)`` train,
    the rest validate. One tuple per distinct fold shape (test parts differ by at most
    one concept)."""
    out = []
    for test in sorted({n_concepts // n_folds, -(-n_concepts // n_folds)}):
        others = n_concepts - test
        train = int(round(train_fraction * others))
        out.append((train, others - train, test))
    return out


def largest_size(
    n_concepts: int,
    train_fraction: float,
    eval_fraction: float,
    n_folds: int,
    n_excluded: int = 0,
) -> int:
    """About the largest per-fold training size N the concepts allow: a fold's training
    part must hold N distinct triplets and its validation and test parts ``round(
    eval_fraction N)`` each, none of them one of the ``n_excluded`` human triplets (taken
    as spread evenly over the parts: an estimate, exact without exclusions)."""
    free = max(0.0, 1 - n_excluded / math.comb(n_concepts, 3))
    limit = math.inf
    for train, validation, test in fold_concept_counts(n_concepts, train_fraction, n_folds):
        evaluation = free * min(math.comb(validation, 3), math.comb(test, 3))
        limit = min(
            limit, math.floor(free * math.comb(train, 3)), math.floor(evaluation / eval_fraction)
        )
    return max(1, int(limit))


def collection_plan(
    n: int,
    train_fraction: float = 0.7,
    eval_fraction: float = 1 / 8,
    n_concepts: int | None = None,
    n_folds: int = 3,
) -> dict[str, float]:
    """How many uniformly sampled triplets give one fold N training triplets (and its
    ``max(1, round(eval_fraction * N))`` validation and test triplets), on average.

    A triplet of 3 distinct concepts drawn uniformly from ``n`` lies wholly in a part of
    ``c`` concepts with probability ``C(c, 3) / C(n, 3)`` (without ``n_concepts``: the
    large-n limit ``s^3`` of the part's share ``s``: ``train_fraction * (1 - 1/n_folds)``
    for training, ``(1 - train_fraction) * (1 - 1/n_folds)`` for validation,
    ``1 / n_folds`` for test). The three parts are disjoint, so one pool of ``M`` uniform
    triplets feeds them all at once (triplets that straddle parts serve none): a fold needs
    ``M = max(N / p_train, n_eval / p_validation, n_eval / p_test)``; every fold draws on
    the same pool, so ``M`` serves all folds (the fold shape needing most is used).

    Returns
    -------
    ``p_train``, ``p_validation``, ``p_test`` (of the fold shape needing most),
    ``n_eval``, ``for_train``, ``for_validation``, ``for_test`` (triplets each role alone
    needs), ``total`` (their maximum, rounded up) and ``binding`` (the role that sets it:
    0 train, 1 validation, 2 test).
    """
    n_eval = max(1, round(n * eval_fraction))
    if n_concepts is None:
        outer = 1.0 - 1.0 / n_folds
        shapes = [(train_fraction * outer) ** 3, ((1 - train_fraction) * outer) ** 3,
                  (1.0 / n_folds) ** 3]  # fmt: skip
        probs = [tuple(shapes)]
    else:
        total = math.comb(int(n_concepts), 3)
        probs = [
            tuple(math.comb(c, 3) / total for c in counts)
            for counts in fold_concept_counts(int(n_concepts), train_fraction, n_folds)
        ]
    best: dict[str, float] | None = None
    for p in probs:
        need = [n / p[0] if p[0] else math.inf, n_eval / p[1] if p[1] else math.inf,
                n_eval / p[2] if p[2] else math.inf]  # fmt: skip
        plan = {
            "p_train": p[0],
            "p_validation": p[1],
            "p_test": p[2],
            "n_eval": float(n_eval),
            "for_train": need[0],
            "for_validation": need[1],
            "for_test": need[2],
            "total": float(math.ceil(max(need))) if math.isfinite(max(need)) else math.inf,
            "binding": float(int(np.argmax(need))),
        }
        if best is None or plan["total"] > best["total"]:
            best = plan
    assert best is not None
    return best


def triplets_to_collect(
    n: int,
    train_fraction: float = 0.7,
    eval_fraction: float = 1 / 8,
    n_concepts: int | None = None,
    n_folds: int = 3,
) -> int:
    """Uniformly sampled triplets (3 distinct concepts, uniform) a lab collects so that a
    fold of the grid holds about ``n`` training triplets and its validation and test
    share: :func:`collection_plan`'s ``total``. Exact for concept-disjoint folds of
    ``n_concepts`` (``C(c, 3) / C(n_concepts, 3)`` per part of ``c`` concepts); the
    large-n limit without it. Raises ValueError when a part has fewer than 3 concepts.

    ``train_fraction`` is the grid's: the share of a fold's *non-test* concepts that train
    (the test part is ``1 / n_folds`` of the concepts), so the training concepts are
    ``train_fraction * (1 - 1/n_folds)`` of all (THINGS: 865 of 1,854), and with the
    default 1/8 evaluation share the validation part (the smallest) usually sets the total.
    """
    plan = collection_plan(n, train_fraction, eval_fraction, n_concepts, n_folds)
    if not math.isfinite(plan["total"]):
        raise ValueError(
            f"a fold part of {n_concepts} concepts has fewer than 3 concepts: no triplet fits"
        )
    return int(plan["total"])


# ----------------------------------------------------------------------------- crowns
def crown_trust(
    jobs: pd.DataFrame,
    *,
    candidates: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_draws: int = 4000,
    seed: int = 0,
    prior: float | None = None,
) -> pd.DataFrame:
    """P(true model = w | w is crowned), per N and model, for one condition's jobs.

    Each generator's row ``P(winner | generator g)`` is estimated from its jobs at that N
    (row shares of the confusion matrix); with a uniform prior over the generators with
    jobs, Bayes gives ``P(g = w | winner = w) = P(w | w) / sum_g P(w | g)``. The interval
    samples every row from its Dirichlet(``prior`` + counts) posterior over the K candidates
    (``prior`` default 1/K, a prior worth one job in all: Dirichlet(1) would weigh K jobs,
    and with the default world's 2 jobs per generator and 10 candidates it pulled a crown
    that the data make certain (every job recovered) down to a median of 24%)
    (``n_draws`` draws, seeded by ``seed`` and the condition, N and model; only column
    ``w`` enters, whose marginal is ``Beta(prior + c_gw, prior * (K - 1) + n_g - c_gw)``)
    and takes the central ``confidence`` quantiles of the ratio. Models never crowned at
    that N have no such probability (NaN, not 0); a crowned model that generated no jobs
    is never the true one (0).

    Returns
    -------
    ``n_train``, ``model``, ``wins``, ``n_jobs``, ``n_generators``, ``p_true``,
    ``ci_low``, ``ci_high`` (one row per candidate and N).
    """
    rows = []
    cond = str(jobs["condition"].iloc[0]) if "condition" in jobs.columns and len(jobs) else ""
    for n, sub in jobs.groupby("n_train", sort=True):
        cols = sorted(set(candidates or ()) | set(sub["winner"]) | set(sub["generator"]))
        gens = sorted(set(sub["generator"]))
        counts = (
            pd.crosstab(sub["generator"], sub["winner"])
            .reindex(index=gens, columns=cols, fill_value=0)
            .to_numpy(float)
        )
        n_g = counts.sum(axis=1)
        shares = counts / n_g[:, None]
        k = len(cols)
        alpha = 1.0 / k if prior is None else float(prior)
        for j, w in enumerate(cols):
            wins = int(counts[:, j].sum())
            row = {"n_train": int(n), "model": w, "wins": wins, "n_jobs": len(sub),
                   "n_generators": len(gens)}  # fmt: skip
            if wins == 0:
                nan = {"p_true": np.nan, "p_median": np.nan, "ci_low": np.nan, "ci_high": np.nan}
                rows.append(row | nan)
                continue
            if w not in gens:
                rows.append(row | {"p_true": 0.0, "p_median": 0.0, "ci_low": 0.0, "ci_high": 0.0})
                continue
            gi = gens.index(w)
            point = shares[gi, j] / shares[:, j].sum()
            rng = group_rng(seed, (cond, int(n), w))
            a = alpha + counts[:, j]
            b = alpha * (k - 1) + n_g - counts[:, j]
            draws = rng.beta(a[:, None], b[:, None], size=(len(gens), n_draws))
            ratio = draws[gi] / draws.sum(axis=0)
            lo, mid, hi = np.quantile(ratio, [(1 - confidence) / 2, 0.5, (1 + confidence) / 2])
            rows.append(
                row
                | {
                    "p_true": float(point),
                    "p_median": float(mid),
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                }
            )
    cols_out = ["n_train", "model", "wins", "n_jobs", "n_generators", "p_true", "p_median",
                "ci_low", "ci_high"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols_out)


def crown_sentence(label: str, trust: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """Sentences for the most-crowned model(s) at the largest N of one condition's
    :func:`crown_trust` table."""
    t = trust[trust["n_train"] == trust["n_train"].max()]
    if not len(t) or t["wins"].max() <= 0:
        return []
    top = t[t["wins"] == t["wins"].max()].sort_values("model")
    out = []
    for _, r in top.iterrows():
        n = int(r["n_train"])
        out.append(
            f"if your study crowns {r['model']} with {label} at N = {n:,}, the crowned model "
            f"is the true one in {_pct(r['p_median'])}% [{_pct(r['ci_low'])}, "
            f"{_pct(r['ci_high'])}] of simulated studies (it won {int(r['wins'])} of "
            f"{int(r['n_jobs'])} jobs; the confusion matrix's estimate "
            f"{_pct(r['p_true'])}%; posterior median and {confidence:.0%} interval, "
            "Dirichlet rows, uniform prior over the "
            f"{int(r['n_generators'])} generators)"
        )
    return out


# ----------------------------------------------------------------------------- bias
def bias_sentence(label: str, excess: pd.DataFrame, *, alpha: float = 0.05) -> str:
    """One sentence of :func:`~modelrecovery.analysis.groups.excess_wins` at one condition
    and N: the models whose ``p_excess < alpha``, or that none is."""
    n = int(excess["n_train"].iloc[0]) if "n_train" in excess.columns else None
    where = f"{label}" + (f", N = {n:,}" if n is not None else "")
    tested = excess[excess["p_excess"].notna()]
    if not len(tested):
        return f"{where}: no wrong crowns, so no model can be said to win others' data too often"
    flagged = tested[tested["p_excess"] < alpha].sort_values(["p_excess", "model"])
    if not len(flagged):
        best = tested.sort_values(["p_excess", "model"]).iloc[0]
        return (
            f"{where}: no model wins other generators' jobs more than its fair share of the "
            f"wrong crowns (smallest p = {best['p_excess']:.2g}, {best['model']}; exact "
            "one-sided binomial test)"
        )
    parts = [
        f"{r['model']} ({int(r['false_wins'])} of {int(r['n_other_errors'])} wrong crowns "
        f"of other generators' jobs, fair share {r['fair_error_share']:.2g}, "
        f"from {int(r['n_generators_won'])} generator(s); p = {r['p_excess']:.2g})"
        for _, r in flagged.iterrows()
    ]
    return (
        f"{where}: wins other generators' jobs more than its fair share of the wrong "
        f"crowns (exact one-sided binomial test, p < {alpha:g}, uncorrected for "
        f"{len(tested)} models): " + "; ".join(parts)
    )


# ----------------------------------------------------------------------------- human data
def human_leaderboard(
    human_scores: pd.DataFrame,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per level, each model on the held-out human responses, against the top model.

    ``human_scores`` has ``model``, ``level``, ``response`` (the row of the held-out test
    set), ``correct`` (accuracy credit, ties shared) and ``nll``. Within a level only the
    responses every model was scored on are used (the same test responses for all). The
    top model has the highest accuracy (then the lowest NLL, then the name). The paired
    bootstrap resamples the responses with replacement (``n_resamples`` times, seeded by
    ``seed`` and the level) and takes the percentile interval of each model's mean
    difference to the top model on the same resampled responses.

    Returns
    -------
    ``level``, ``model``, ``rank``, ``n_responses``, ``accuracy``, ``nll``,
    ``accuracy_gap`` (top - model), ``gap_ci_low``, ``gap_ci_high``, ``separated`` (the
    gap's interval excludes 0; NaN for the top), ``nll_gap`` (model - top),
    ``nll_gap_ci_low``, ``nll_gap_ci_high``.
    """
    a = 1.0 - confidence
    out = []
    for level, sub in human_scores.groupby("level", sort=False):
        acc = sub.pivot_table(index="response", columns="model", values="correct", aggfunc="mean")
        nll = sub.pivot_table(index="response", columns="model", values="nll", aggfunc="mean")
        keep = acc.notna().all(axis=1) & nll.notna().all(axis=1)
        acc, nll = acc[keep].sort_index(), nll[keep].sort_index()
        models = sorted(acc.columns)
        acc, nll = acc[models].to_numpy(float), nll[models].to_numpy(float)
        n = len(acc)
        m_acc, m_nll = acc.mean(axis=0), nll.mean(axis=0)
        order = sorted(range(len(models)), key=lambda i: (-m_acc[i], m_nll[i], models[i]))
        top = order[0]
        diffs = np.hstack([acc[:, [top]] - acc, nll - nll[:, [top]]])  # n x 2M
        rng = group_rng(seed, (str(level),))
        chunk = max(1, min(256, 4_000_000 // max(n, 1)))
        boot = np.empty((n_resamples, diffs.shape[1]))
        done = 0
        while done < n_resamples and n:
            b = min(chunk, n_resamples - done)
            idx = rng.integers(0, n, size=(b, n))
            weights = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)
            boot[done : done + b] = weights @ diffs / n
            done += b
        if n:
            lo, hi = np.quantile(boot, [a / 2, 1 - a / 2], axis=0)
        else:
            lo = hi = np.full(diffs.shape[1], np.nan)
        k = len(models)
        for rank, i in enumerate(order, start=1):
            is_top = i == top
            out.append(
                {
                    "level": level,
                    "model": models[i],
                    "rank": rank,
                    "n_responses": n,
                    "accuracy": float(m_acc[i]),
                    "nll": float(m_nll[i]),
                    "accuracy_gap": float(m_acc[top] - m_acc[i]),
                    "gap_ci_low": np.nan if is_top else float(lo[i]),
                    "gap_ci_high": np.nan if is_top else float(hi[i]),
                    "separated": np.nan if is_top else bool(lo[i] > 0 or hi[i] < 0),
                    "nll_gap": float(m_nll[i] - m_nll[top]),
                    "nll_gap_ci_low": np.nan if is_top else float(lo[k + i]),
                    "nll_gap_ci_high": np.nan if is_top else float(hi[k + i]),
                }
            )
    table = pd.DataFrame(out)
    if len(table):
        table = _level_order(table)
    return table


def models_leaderboard(models: pd.DataFrame) -> pd.DataFrame:
    """Per level, the models ranked by ``human_accuracy`` (then ``human_nll``) from the
    ``models`` table alone: no per-response scores, so no intervals (NaN columns)."""
    m = models.copy()
    if "level" not in m.columns:
        m["level"] = m.get("family", "all")
    if "human_nll" not in m.columns:
        m["human_nll"] = np.nan
    m = m.dropna(subset=["human_accuracy"])
    out = []
    for level, sub in m.groupby("level", sort=False):
        sub = sub.assign(_a=-sub["human_accuracy"].astype(float), _n=sub["human_nll"].astype(float))
        sub = sub.sort_values(["_a", "_n", "model"]).reset_index(drop=True)
        top = sub.iloc[0]
        for rank, r in enumerate(sub.itertuples(), start=1):
            out.append(
                {
                    "level": level,
                    "model": r.model,
                    "rank": rank,
                    "n_responses": np.nan,
                    "accuracy": float(r.human_accuracy),
                    "nll": float(r.human_nll),
                    "accuracy_gap": float(top["human_accuracy"] - r.human_accuracy),
                    "gap_ci_low": np.nan,
                    "gap_ci_high": np.nan,
                    "separated": np.nan,
                    "nll_gap": float(r.human_nll - top["human_nll"]),
                    "nll_gap_ci_low": np.nan,
                    "nll_gap_ci_high": np.nan,
                }
            )
    table = pd.DataFrame(out)
    return _level_order(table) if len(table) else table


def _level_order(table: pd.DataFrame) -> pd.DataFrame:
    keys = [
        (level_sort_key(lv), int(r)) for lv, r in zip(table["level"], table["rank"], strict=True)
    ]
    order = sorted(range(len(table)), key=keys.__getitem__)
    return table.iloc[order].reset_index(drop=True)


def leaderboard_sentence(label: str, board: pd.DataFrame, *, confidence: float = 0.95) -> str:
    """One sentence of one level's leaderboard: the top model, and whether it is
    separated from every other (paired bootstrap interval of the gap excludes 0)."""
    b = board.sort_values("rank")
    top = b.iloc[0]
    nll = f", NLL {top['nll']:.3f}" if np.isfinite(top["nll"]) else ""
    if np.isfinite(top["n_responses"]):
        head = (
            f"{label} on the human data: top {top['model']} (accuracy {top['accuracy']:.3f}"
            f"{nll} on {int(top['n_responses']):,} held-out responses)"
        )
    else:
        head = (
            f"{label} on the human data: top {top['model']} (accuracy {top['accuracy']:.3f}{nll})"
        )
    rest = b.iloc[1:]
    if not len(rest):
        return head + "; the only model"
    if not np.isfinite(top["n_responses"]):
        return head + (
            f"; runner-up {rest.iloc[0]['model']} {100 * rest.iloc[0]['accuracy_gap']:.1f} "
            "points behind; no per-response human scores given, so no intervals on the gaps"
        )
    close = rest[~rest["separated"].astype(bool)]
    if not len(close):
        return head + (
            f"; separated from every other model (paired bootstrap {confidence:.0%} interval "
            "of the accuracy gap excludes 0)"
        )
    names = [
        f"{r['model']} ({100 * r['accuracy_gap']:+.1f} points [{100 * r['gap_ci_low']:+.1f}, "
        f"{100 * r['gap_ci_high']:+.1f}])"
        for _, r in close.head(3).iterrows()
    ]
    more = f" and {len(close) - 3} more" if len(close) > 3 else ""
    return head + (
        f"; not separated from {', '.join(names)}{more} (paired bootstrap {confidence:.0%} "
        "interval of the accuracy gap includes 0)"
    )


# ----------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict:
    """The verdict's tables and lines (see :func:`verdict`).

    Attributes
    ----------
    lines : the verdict as plain text, one sentence a line, grouped by level.
    recovery : :func:`recovery_intervals` per condition and N, with ``level`` and
        ``triplets_to_collect``.
    recovery_by_model : :func:`recovery_by_model` per condition, N and generator.
    trust : :func:`crown_trust` per condition, N and model.
    bias : :func:`~modelrecovery.analysis.groups.excess_wins` at each condition's largest N.
    leaderboard : :func:`human_leaderboard` (or :func:`models_leaderboard`).
    left_out : models flagged ``uninformative`` per level, the reason, and whether they
        ran jobs.
    notes : what was missing.
    """

    lines: list[str]
    recovery: pd.DataFrame
    recovery_by_model: pd.DataFrame
    trust: pd.DataFrame
    bias: pd.DataFrame
    leaderboard: pd.DataFrame
    left_out: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _prepared(jobs: pd.DataFrame) -> pd.DataFrame:
    if "condition" in jobs.columns:
        return jobs
    from modelrecovery.analysis.pooling import dedupe_jobs

    return add_condition(dedupe_jobs(jobs))


def _left_out(models: pd.DataFrame | None, jobs: pd.DataFrame) -> pd.DataFrame:
    cols = ["level", "model", "reason", "has_jobs"]
    if models is None or "uninformative" not in models.columns:
        return pd.DataFrame(columns=cols)
    m = models[models["uninformative"].notna() & (models["uninformative"].astype(str) != "")]
    ran = (
        set(zip(jobs["level"].astype(str), jobs["generator"], strict=True))
        if "level" in jobs
        else set()
    )
    rows = [
        {"level": str(r["level"]) if "level" in m.columns else "", "model": r["model"],
         "reason": str(r["uninformative"]),
         "has_jobs": (str(r.get("level", "")), r["model"]) in ran}
        for _, r in m.iterrows()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def verdict(
    jobs: pd.DataFrame,
    models: pd.DataFrame | None = None,
    human_scores: pd.DataFrame | None = None,
    *,
    target: float = 0.8,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    train_fraction: float = 0.7,
    eval_fraction: float = 1 / 8,
    n_concepts: int | None = None,
    n_folds: int = 3,
    n_draws: int = 4000,
) -> Verdict:
    """The verdict of a study: per level, recovery at the largest N and where ``target``
    is reached, trust in the most frequent crown, the systematic-bias statement, the
    leaderboard on the human data and the models left out.

    Parameters
    ----------
    jobs : the jobs table (with ``condition``, as the report prepares it; derived when
        missing). ``models`` : the models table (``human_accuracy``, ``human_nll``,
        ``uninformative``), optional. ``human_scores`` : per-response human scores (see
        :func:`human_leaderboard`), optional: without it the leaderboard has no intervals.
    target : recovery the lab wants (0.8: 80%). confidence : of every interval; the bias
        test flags ``p < 1 - confidence``. n_resamples, seed : of the paired bootstrap (and
        the seed of the Dirichlet draws). train_fraction, eval_fraction, n_concepts,
        n_folds : the grid's, for :func:`triplets_to_collect`.
    """
    jobs = _prepared(jobs)
    notes: list[str] = []
    if "level" not in jobs.columns:
        jobs = jobs.assign(level=jobs.get("family", "all"))
    jobs = jobs.assign(level=jobs["level"].astype(str))
    rec = recovery_intervals(jobs, ["condition", "n_train"], confidence=confidence)
    level_of = jobs.groupby("condition")["level"].first()
    rec.insert(1, "level", rec["condition"].map(level_of))
    collect: dict[int, int] = {}
    for n in sorted(rec["n_train"].unique()):
        try:
            collect[int(n)] = triplets_to_collect(
                int(n), train_fraction, eval_fraction, n_concepts, n_folds
            )
        except ValueError as err:
            notes.append(f"triplets to collect at N = {int(n):,}: {err}")
    rec["triplets_to_collect"] = rec["n_train"].map(lambda n: collect.get(int(n), np.nan))

    def training_only(n: int) -> float:
        need = collection_plan(int(n), train_fraction, eval_fraction, n_concepts, n_folds)
        return float(math.ceil(need["for_train"])) if math.isfinite(need["for_train"]) else np.nan

    rec["triplets_for_training_only"] = rec["n_train"].map(training_only)
    by_model = recovery_by_model(jobs, ["condition", "n_train"], confidence=confidence)
    trust_parts, bias_parts = [], []
    lines_by_level: dict[str, list[str]] = {}
    conditions = sorted(jobs["condition"].astype(str).unique(), key=level_sort_key)
    for cond in conditions:
        cj = jobs[jobs["condition"] == cond]
        level = str(cj["level"].iloc[0])
        label = _label(cond, level)
        lines = lines_by_level.setdefault(level, [])
        lines.append(
            recovery_sentence(
                label, rec[rec["condition"] == cond], target=target, confidence=confidence,
                collect=collect,
            )
        )  # fmt: skip
        trust = crown_trust(cj, confidence=confidence, n_draws=n_draws, seed=seed)
        trust_parts.append(trust.assign(condition=cond))
        lines += crown_sentence(label, trust, confidence=confidence)
        n_max = cj["n_train"].max()
        excess = excess_wins(cj[cj["n_train"] == n_max], ["condition", "n_train"])
        bias_parts.append(excess)
        lines.append(bias_sentence(label, excess, alpha=1 - confidence))
    trust_all = pd.concat(trust_parts, ignore_index=True) if trust_parts else pd.DataFrame()
    if len(trust_all):
        trust_all = trust_all[["condition", *[c for c in trust_all.columns if c != "condition"]]]
    bias_all = pd.concat(bias_parts, ignore_index=True) if bias_parts else pd.DataFrame()
    if human_scores is not None and len(human_scores):
        board = human_leaderboard(human_scores, n_resamples=n_resamples, seed=seed,
                                  confidence=confidence)  # fmt: skip
    elif models is not None and "human_accuracy" in models.columns:
        board = models_leaderboard(models)
        notes.append("no per-response human scores: the leaderboard has no intervals")
    else:
        board = pd.DataFrame()
        notes.append("no human scores and no models table: no leaderboard")
    left = _left_out(models, jobs)
    levels = sorted(
        set(lines_by_level) | set(board["level"].astype(str) if len(board) else ())
        | set(left["level"]),
        key=level_sort_key,
    )  # fmt: skip
    lines: list[str] = []
    for level in levels:
        lines += lines_by_level.get(level, [])
        label = f"{level} probes"
        if len(board):
            part = board[board["level"].astype(str) == level]
            if len(part):
                lines.append(leaderboard_sentence(label, part, confidence=confidence))
        out = left[(left["level"] == level) & ~left["has_jobs"]]
        if len(out):
            lines.append(
                f"{label}: left out as generators (no jobs): "
                + "; ".join(f"{r['model']} ({r['reason']})" for _, r in out.iterrows())
            )
        kept = left[(left["level"] == level) & left["has_jobs"]]
        if len(kept):
            lines.append(
                f"{label}: flagged but run as generators: "
                + "; ".join(f"{r['model']} ({r['reason']})" for _, r in kept.iterrows())
            )
    return Verdict(
        lines=lines,
        recovery=rec,
        recovery_by_model=by_model,
        trust=trust_all,
        bias=bias_all,
        leaderboard=board,
        left_out=left,
        notes=notes,
    )


def verdict_lines(
    jobs: pd.DataFrame,
    models: pd.DataFrame | None = None,
    human_scores: pd.DataFrame | None = None,
    **settings: object,
) -> list[str]:
    """The verdict as plain text lines (:func:`verdict`'s ``lines``; ``settings`` are its
    keyword arguments), for the command line to print."""
    return verdict(jobs, models, human_scores, **settings).lines  # type: ignore[arg-type]
