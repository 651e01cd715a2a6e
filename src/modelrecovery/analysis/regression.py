"""What makes a wrong candidate beat the generator? (docs/science/method.md §5, regression).

For ordered pairs (generator g, candidate c ≠ g) at the largest N of one condition (one
level), the target is the accuracy difference ``score(g on g's data) - score(c on g's
data)`` averaged over seeds; the predictors are properties of both models (``candidate_<p>``
and ``generator_<p>``), taken from the ``models`` rows of that level (matched by
``(model, level)``) and from the geometry of that level's transforms. A property missing
(or constant) for any model of the pairs is dropped with a note, not imputed. Target and
predictors are z-scored over the pairs (``ddof=0``) and fitted by ordinary least squares
with an intercept (``numpy.linalg.lstsq``). Uncertainty comes from a bootstrap over
*models*: resample the models with replacement, keep every ordered pair of distinct drawn
models (a model drawn twice contributes its pairs twice), z-score again and refit.
Percentile CIs; two-sided bootstrap p-values
``min(1, 2 · min((1 + #{β* ≤ 0}), (1 + #{β* ≥ 0})) / (B + 1))``; Bonferroni over the
reported predictors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from modelrecovery.analysis.metrics import _key_text, _single_condition
from modelrecovery.analysis.pooling import ensure_level

__all__ = [
    "DEFAULT_PROPERTIES",
    "accuracy_difference_regression",
    "model_properties",
    "pair_design",
    "pair_differences",
    "predictor_names",
    "standardized_ols",
    "usable_properties",
]

DEFAULT_PROPERTIES: tuple[str, ...] = (
    "shift",
    "ed_before",
    "ed_after",
    "feature_dim",
    "n_parameters",
)


def pair_differences(
    scores: pd.DataFrame, *, n_train: int | None = None, score_column: str = "test_accuracy"
) -> pd.DataFrame:
    """Seed-averaged ``score(g on g's data) - score(c on g's data)`` for every pair c ≠ g.

    Parameters
    ----------
    scores : the ``scores`` table of one condition.
    n_train : training-set size (default: the largest in ``scores``).
    score_column : ``test_accuracy`` (default), ``score``, or another per-candidate column.

    Returns
    -------
    ``generator``, ``candidate``, ``n_train``, ``n_jobs``, ``difference``.
    """
    _single_condition(scores, "pair_differences")
    n = int(scores["n_train"].max()) if n_train is None else int(n_train)
    sub = scores[scores["n_train"] == n]
    own = (
        sub[sub["candidate"] == sub["generator"]]
        .drop_duplicates("job_id", keep="last")
        .set_index("job_id")[score_column]
    )
    others = sub[sub["candidate"] != sub["generator"]]
    others = others[others["job_id"].isin(own.index)]
    diff = own.reindex(others["job_id"]).to_numpy(dtype=float) - others[score_column].to_numpy(
        dtype=float
    )
    per_job = pd.DataFrame(
        {
            "generator": others["generator"].to_numpy(),
            "candidate": others["candidate"].to_numpy(),
            "difference": diff,
        }
    )
    per_job = per_job.sort_values(["generator", "candidate", "difference"], kind="mergesort")
    out = (
        per_job.groupby(["generator", "candidate"], sort=True)["difference"]
        .agg(n_jobs="size", difference="mean")
        .reset_index()
    )
    out.insert(2, "n_train", n)
    return out[["generator", "candidate", "n_train", "n_jobs", "difference"]]


def model_properties(
    models: pd.DataFrame | None,
    geometry: pd.DataFrame | None = None,
    *,
    level: str | None = None,
    family: str | None = None,
) -> pd.DataFrame:
    """One row per model (index ``model``): ``models`` rows joined with ``geometry``.

    ``models`` is filtered to the rows of ``level`` (matched by ``(model, level)``); old
    tables without a ``level`` column are filtered by ``family`` (when given, else by the
    level derived from their ``family``). Where both tables have a column (e.g.
    ``feature_dim``), ``geometry`` wins for the models it covers.
    """
    parts = []
    if models is not None and len(models):
        m = models
        if level is not None and "level" in m.columns:
            m = m[m["level"].map(_key_text) == _key_text(level)]
        elif family is not None and "family" in m.columns:
            m = m[m["family"] == family]
        elif level is not None and "family" in m.columns:
            m = ensure_level(m)
            m = m[m["level"].map(_key_text) == _key_text(level)]
        parts.append(m.drop_duplicates("model", keep="last").set_index("model"))
    if geometry is not None and len(geometry):
        parts.append(geometry.drop_duplicates("model", keep="last").set_index("model"))
    if not parts:
        return pd.DataFrame(index=pd.Index([], name="model"))
    out = parts[0]
    for extra in parts[1:]:
        out = extra.combine_first(out) if len(out) else extra
    out.index.name = "model"
    return out.sort_index()


def usable_properties(
    properties: pd.DataFrame, names: Sequence[str], model_names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Split ``names`` into properties known and varying for every model, and notes.

    A property is dropped (with a note) when it is not a column of ``properties``, when it
    is missing (NA) for any of ``model_names``, or when it takes one value only.
    """
    keep, notes = [], []
    models = sorted(set(model_names))
    for p in names:
        if p not in properties.columns:
            notes.append(f"{p}: dropped (not in the models table or geometry)")
            continue
        values = pd.to_numeric(properties[p], errors="coerce").reindex(models)
        missing = [m for m, v in values.items() if not np.isfinite(v)]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            notes.append(f"{p}: dropped (missing for {len(missing)} of {len(models)}: {shown})")
        elif values.nunique() < 2:
            notes.append(f"{p}: dropped (the same for every model)")
        else:
            keep.append(p)
    return keep, notes


def pair_design(
    pairs: pd.DataFrame, properties: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """``pairs`` with ``candidate_<p>`` and ``generator_<p>`` columns for each ``p`` in names.

    Pairs whose models lack a property (missing model or NaN) are dropped.
    """
    props = properties[list(names)].apply(pd.to_numeric, errors="coerce")
    out = pairs.copy()
    for p in names:
        out[f"candidate_{p}"] = props[p].reindex(out["candidate"]).to_numpy(dtype=float)
        out[f"generator_{p}"] = props[p].reindex(out["generator"]).to_numpy(dtype=float)
    cols = predictor_names(names)
    keep = np.isfinite(out[cols].to_numpy(dtype=float)).all(axis=1) & np.isfinite(
        out["difference"].to_numpy(dtype=float)
    )
    return out[keep].reset_index(drop=True)


def predictor_names(names: Sequence[str]) -> list[str]:
    """``candidate_<p>``, ``generator_<p>`` for each property, in that order."""
    return [f"{role}_{p}" for p in names for role in ("candidate", "generator")]


def _zscore(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    mu = a.mean(axis=0)
    sd = a.std(axis=0)
    sd = np.where(sd > 0, sd, np.inf)  # constant columns become 0
    return (a - mu) / sd


def standardized_ols(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Coefficients (intercept dropped) of OLS of z-scored ``y`` on z-scored columns of ``x``.

    NaN when there are fewer rows than coefficients; minimum-norm solution when rank
    deficient.
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or y.shape[0] != x.shape[0] or x.shape[0] < x.shape[1] + 1:
        return np.full(x.shape[1] if x.ndim == 2 else 0, np.nan)
    design = np.column_stack([np.ones(len(y)), _zscore(x)])
    beta, *_ = np.linalg.lstsq(design, _zscore(y[:, None])[:, 0], rcond=None)
    return beta[1:]


def accuracy_difference_regression(
    scores: pd.DataFrame,
    models: pd.DataFrame | None = None,
    geometry: pd.DataFrame | None = None,
    *,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    n_train: int | None = None,
    level: str | None = None,
    family: str | None = None,
    score_column: str = "test_accuracy",
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    missing: str = "drop",
) -> pd.DataFrame:
    """Standardised regression of the accuracy difference on properties of both models.

    Parameters
    ----------
    scores : ``scores`` table of one condition (one level).
    models : ``models`` table (``feature_dim``, ``n_parameters``, ...), optional.
    geometry : :func:`~modelrecovery.analysis.geometry.model_geometry` output of this
        level's transforms, optional.
    properties : model properties to use, each for the candidate and the generator.
    n_train : training-set size (default: the largest).
    level : level whose rows of ``models`` to use (default: the level of ``scores``).
    family : for old tables without ``level``: family whose rows of ``models`` to use
        (default: the family of ``scores``).
    score_column : per-candidate score column of ``scores``.
    n_boot : bootstrap resamples over models.
    seed : seed of the bootstrap generator.
    confidence : level of the percentile intervals.
    missing : ``"drop"`` (default): a property that is absent, missing (e.g. ``NA``
        ``n_parameters``) or constant for any model of the pairs is dropped and named in
        ``attrs["notes"]``; ``"raise"``: ``ValueError`` instead. Pairs with a model that
        has no property at all (no ``models`` row at the level, no geometry) are left out
        either way (also noted).

    Returns
    -------
    ``predictor``, ``beta``, ``ci_low``, ``ci_high``, ``p``, ``p_bonferroni``, and
    ``n_pairs``, ``n_models``, ``n_boot_valid`` (resamples where the fit was defined).
    ``attrs["notes"]`` lists dropped properties and why, ``attrs["properties"]`` the
    properties used. Raises ``ValueError`` when no property is usable.
    """
    if level is None and "level" in scores.columns and scores["level"].nunique() == 1:
        level = str(scores["level"].iloc[0])
    if family is None and "family" in scores.columns and scores["family"].nunique() == 1:
        family = str(scores["family"].iloc[0])
    props = model_properties(models, geometry, level=level, family=family)
    diffs = pair_differences(scores, n_train=n_train, score_column=score_column)
    notes = []
    unknown = sorted((set(diffs["generator"]) | set(diffs["candidate"])) - set(props.index))
    if unknown:
        diffs = diffs[~diffs["generator"].isin(unknown) & ~diffs["candidate"].isin(unknown)]
        notes.append(f"pairs of {len(unknown)} models without any property left out: {unknown}")
    if diffs.empty:
        raise ValueError("no pair of models with properties")
    used = sorted(set(diffs["generator"]) | set(diffs["candidate"]))
    properties, dropped = usable_properties(props, properties, used)
    notes += dropped
    if dropped and missing == "raise":
        raise ValueError("; ".join(dropped))
    if not properties:
        raise ValueError("no usable model property: " + "; ".join(notes))
    pairs = pair_design(diffs, props, properties)
    cols = predictor_names(properties)
    y = pairs["difference"].to_numpy(dtype=float)
    x = pairs[cols].to_numpy(dtype=float)
    beta = standardized_ols(y, x)

    # bootstrap over models: index arrays on the sorted model list
    model_list = sorted(set(pairs["generator"]) | set(pairs["candidate"]))
    m = len(model_list)
    pos = {name: i for i, name in enumerate(model_list)}
    target = np.full((m, m), np.nan)
    gi = pairs["generator"].map(pos).to_numpy()
    ci = pairs["candidate"].map(pos).to_numpy()
    target[gi, ci] = y
    q = len(properties)
    pm = np.full((m, q), np.nan)
    for j, p in enumerate(properties):
        values = pd.to_numeric(props[p], errors="coerce").reindex(model_list)
        pm[:, j] = values.to_numpy(dtype=float)
    a_idx, b_idx = np.nonzero(~np.eye(m, dtype=bool))  # ordered position pairs
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, len(cols)), np.nan)
    for b in range(n_boot):
        draw = rng.integers(0, m, size=m)
        g, c = draw[a_idx], draw[b_idx]
        yy = target[g, c]
        keep = (g != c) & np.isfinite(yy)
        if keep.sum() < len(cols) + 2:
            continue
        g, c = g[keep], c[keep]
        xx = np.empty((len(g), len(cols)))
        xx[:, 0::2] = pm[c]
        xx[:, 1::2] = pm[g]
        boot[b] = standardized_ols(yy[keep], xx)

    valid = np.isfinite(boot).all(axis=1)
    bv = boot[valid]
    n_valid = int(valid.sum())
    alpha = (1 - confidence) / 2
    rows = []
    for j, name in enumerate(cols):
        if n_valid:
            low, high = np.quantile(bv[:, j], [alpha, 1 - alpha])
            le = (1 + np.sum(bv[:, j] <= 0)) / (n_valid + 1)
            ge = (1 + np.sum(bv[:, j] >= 0)) / (n_valid + 1)
            p = min(1.0, 2 * min(le, ge))
        else:
            low = high = p = float("nan")
        rows.append(
            {
                "predictor": name,
                "beta": float(beta[j]),
                "ci_low": float(low),
                "ci_high": float(high),
                "p": float(p),
            }
        )
    out = pd.DataFrame(rows, columns=["predictor", "beta", "ci_low", "ci_high", "p"])
    out["p_bonferroni"] = np.minimum(1.0, out["p"] * len(cols))
    out["n_pairs"] = len(pairs)
    out["n_models"] = m
    out["n_boot_valid"] = n_valid
    out.attrs["notes"] = notes
    out.attrs["properties"] = list(properties)
    return out
