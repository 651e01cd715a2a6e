"""How many triplets identify the generating model (docs/science/method.md §7).

Recovery (the generator crowned, 0/1 per job) against the per-fold training size N is
modelled as a logistic curve in log N between chance and an upper asymptote that may stay
below 1 (flexible probes can plateau):

    p(N) = g + (a - g) * sigmoid(s * (log N - m)),   g = 1 / K (K candidates), g < a <= 1,

fitted by maximum likelihood on the jobs' outcomes. ``N_target``, the size at which the
curve reaches a target (0.8), is ``exp(m + logit(q) / s)`` with ``q = (target - g) / (a -
g)``, defined when ``a > target``. Its 95% interval is the profile-likelihood set
``{x : 2 (l_max - max_{theta: x_target(theta) = x} l(theta)) <= chi2_1(0.95)}``, scanned over
log N up to twice the largest size considered; the interval's upper end is unbounded
(``inf``) when the set reaches the scan's top or holds curves that never reach the target.
The asymptote's interval is its own profile-likelihood set. The sizes a plan runs next are
chosen greedily where they shrink the delta-method variance of ``log N_target`` most (the
Fisher information of Bernoulli outcomes; of the asymptote while the curve's estimate does
not reach the target).

Pure NumPy / SciPy: no tracking, no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import chi2
from threadpoolctl import threadpool_limits

__all__ = [
    "CurveFit",
    "CurveParams",
    "choose_sizes",
    "curve_band",
    "fit_curve",
    "plan_step",
    "recovery_probability",
    "size_ladder",
    "target_size",
]

#: half the 95% quantile of chi-square with one degree of freedom: the profile drop
PROFILE_DROP = float(chi2.ppf(0.95, 1)) / 2
#: the slope s (per unit of log N) stays within these bounds (flat .. almost a step)
SLOPE_BOUNDS = (0.05, 40.0)
#: outcomes' probabilities are kept inside (EPS, 1 - EPS) in the likelihood
EPS = 1e-9


@dataclass(frozen=True)
class CurveParams:
    """The curve's parameters: upper asymptote ``a``, midpoint ``m`` (log N), slope ``s``
    (per unit of log N) and the chance floor ``g``."""

    asymptote: float
    midpoint: float
    slope: float
    floor: float


def recovery_probability(n: np.ndarray | float, params: CurveParams) -> np.ndarray:
    """The curve's recovery probability at training size(s) ``n``."""
    x = np.log(np.asarray(n, dtype=float))
    z = params.slope * (x - params.midpoint)
    return params.floor + (params.asymptote - params.floor) * expit(z)


def target_size(params: CurveParams, target: float) -> float:
    """The size at which the curve reaches ``target``: ``inf`` when its asymptote does not
    exceed the target, 0 when the target is at or below chance."""
    if target <= params.floor:
        return 0.0
    if params.asymptote <= target:
        return math.inf
    q = (target - params.floor) / (params.asymptote - params.floor)
    x = params.midpoint + float(logit(q)) / params.slope
    return math.exp(min(x, 700.0))


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve and what it says about ``target``.

    ``status``: ``reached`` (the interval of N_target is bounded: at most twice
    ``n_max``), ``unreachable`` (confidently not within ``N <= n_max``: every N_target in
    the confidence set lies above it, or the asymptote's upper bound is below the target)
    or ``undetermined`` (the data allow both)."""

    params: CurveParams
    loglik: float
    n_jobs: int
    target: float
    n_max: float
    n_target: float
    n_target_low: float
    n_target_high: float
    asymptote_low: float
    asymptote_high: float
    status: str
    #: curves inside the parameters' 95% profile set (the profiles' optima), for the band
    plausible: tuple[CurveParams, ...] = ()

    @property
    def ratio(self) -> float:
        """The interval's high / low (``inf`` when unbounded)."""
        if not math.isfinite(self.n_target_high) or self.n_target_low <= 0:
            return math.inf
        return self.n_target_high / self.n_target_low

    def row(self) -> dict:
        """A flat row for a table."""
        out = {k: v for k, v in asdict(self).items() if k not in ("params", "plausible")}
        out |= {
            "asymptote": self.params.asymptote,
            "midpoint_n": math.exp(self.params.midpoint),
            "slope": self.params.slope,
            "floor": self.params.floor,
            "ratio": self.ratio,
        }
        return out


def _loglik(x: np.ndarray, y: np.ndarray, a: float, m: float, s: float, g: float) -> float:
    """Bernoulli log-likelihood of ``y`` = (successes, failures) per distinct log size."""
    p = g + (a - g) * expit(s * (x - m))
    p = np.clip(p, EPS, 1 - EPS)
    return float(np.sum(y[0] * np.log(p) + y[1] * np.log1p(-p)))


def _nll(
    x: np.ndarray, y: np.ndarray, a: float, m: float, ls: float, g: float
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood and its gradient in (a, m, log s)."""
    s = math.exp(ls)
    sig = expit(s * (x - m))
    p = np.clip(g + (a - g) * sig, EPS, 1 - EPS)
    value = -float(np.sum(y[0] * np.log(p) + y[1] * np.log1p(-p)))
    dl_dp = y[0] / p - y[1] / (1 - p)
    d = (a - g) * sig * (1 - sig) * s
    grad = -np.array([np.sum(dl_dp * sig), -np.sum(dl_dp * d), np.sum(dl_dp * d * (x - m))])
    return value, grad


def _best(objective, starts, bounds) -> tuple[float, np.ndarray]:
    """The lowest of L-BFGS-B minimisations from ``starts`` (value, argument);
    ``objective`` returns the value and its gradient."""
    best_value, best_arg = math.inf, None
    for start in starts:
        start = np.clip(np.asarray(start, float), [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(objective, start, method="L-BFGS-B", jac=True, bounds=bounds)
        if res.fun < best_value:
            best_value, best_arg = float(res.fun), np.asarray(res.x)
    return best_value, best_arg


def _check(sizes: np.ndarray, outcomes: np.ndarray, floor: float, target: float) -> None:
    if sizes.shape != outcomes.shape or sizes.ndim != 1 or len(sizes) == 0:
        raise ValueError("sizes and outcomes must be non-empty 1-d arrays of one length")
    if np.any(sizes <= 0) or not np.all(np.isfinite(sizes)):
        raise ValueError("sizes must be positive and finite")
    if np.any((outcomes < 0) | (outcomes > 1)):
        raise ValueError("outcomes must lie in [0, 1] (recovered: 1, not: 0)")
    if not 0 <= floor < 1:
        raise ValueError(f"floor (chance) must lie in [0, 1), got {floor}")
    if not floor < target < 1:
        raise ValueError(f"target must lie between chance ({floor:.3g}) and 1, got {target}")


def fit_curve(*args, **kwargs) -> CurveFit:
    """Fit the curve to jobs (``sizes`` N, ``outcomes`` recovered 0/1) by maximum likelihood
    and derive N_target's and the asymptote's profile-likelihood 95% intervals; see
    :func:`_fit_curve` for the arguments. Runs single-threaded (the optimiser's small BLAS
    calls are ~4x slower with threads on a busy machine)."""
    with threadpool_limits(1):
        return _fit_curve(*args, **kwargs)


def _fit_curve(
    sizes: np.ndarray,
    outcomes: np.ndarray,
    *,
    floor: float,
    target: float = 0.8,
    n_max: float | None = None,
    n_scan: int = 81,
) -> CurveFit:
    """Fit the curve to jobs (``sizes`` N, ``outcomes`` recovered 0/1) by maximum likelihood
    and derive N_target's and the asymptote's profile-likelihood 95% intervals.

    ``n_max`` is the largest size the study considers (default: the largest observed); the
    N_target scan runs over [min(N) / 8, 2 n_max] on a log grid of ``n_scan`` points, its
    ends refined by bisection. A lower end at the scan's bottom is reported as 0 (below
    every size tried)."""
    sizes = np.asarray(sizes, dtype=float)
    outcomes = np.asarray(outcomes, dtype=float)
    _check(sizes, outcomes, floor, target)
    # the likelihood depends on the outcomes only through successes and trials per size
    distinct, index = np.unique(sizes, return_inverse=True)
    wins = np.bincount(index, weights=outcomes, minlength=len(distinct))
    trials = np.bincount(index, minlength=len(distinct)).astype(float)
    x = np.log(distinct)
    y = np.stack([wins, trials - wins])
    mean = float(wins.sum() / trials.sum())
    g = float(floor)
    n_max = float(n_max if n_max is not None else np.exp(x.max()))
    x_lo, x_hi = float(x.min()) - math.log(8.0), math.log(2.0 * n_max)
    ls_lo, ls_hi = (math.log(b) for b in SLOPE_BOUNDS)
    m_bounds = (x_lo - 4.0, x_hi + 4.0)
    a_bounds = (g + 1e-6, 1.0)

    def nll(v):
        return _nll(x, y, v[0], v[1], v[2], g)

    mid = float(np.median(x))
    starts = [
        (a, m, ls)
        for a in (0.999, 0.5 * (g + 1), max(g + 0.01, mean))
        for m in (x.min(), mid, x.max())
        for ls in (0.0, math.log(3.0))
    ]
    value, best = _best(nll, starts, [a_bounds, m_bounds, (ls_lo, ls_hi)])
    l_max = -value
    params = CurveParams(float(best[0]), float(best[1]), float(math.exp(best[2])), g)
    threshold = l_max - PROFILE_DROP

    # the asymptote's profile
    def profile_a(a0: float, start: list) -> tuple[float, np.ndarray]:
        def objective(u):
            value, grad = _nll(x, y, a0, u[0], u[1], g)
            return value, grad[1:]

        return _best(objective, start, [m_bounds, (ls_lo, ls_hi)])

    plausible = [params]
    a_grid = np.linspace(g + 1e-4, 1.0, 41)
    a_in = np.zeros(len(a_grid), bool)
    previous = None
    for i, a0 in enumerate(a_grid):
        start = [(params.midpoint, math.log(params.slope))]
        if previous is not None:
            start.append(tuple(previous))
        v, previous = profile_a(a0, start)
        a_in[i] = -v >= threshold
        if a_in[i]:
            plausible.append(CurveParams(float(a0), float(previous[0]), math.exp(previous[1]), g))
    a_in[np.argmin(np.abs(a_grid - params.asymptote))] = True
    a_idx = np.flatnonzero(a_in)

    def refine_a(a_out: float, a_inside: float) -> float:
        """Bisection between an asymptote outside the set and one inside."""
        for _ in range(10):
            middle = 0.5 * (a_out + a_inside)
            v, _ = profile_a(middle, [(params.midpoint, math.log(params.slope))])
            if -v >= threshold:
                a_inside = middle
            else:
                a_out = middle
        return a_inside

    lo_i, hi_i = int(a_idx.min()), int(a_idx.max())
    a_low = float(a_grid[0] if lo_i == 0 else refine_a(a_grid[lo_i - 1], a_grid[lo_i]))
    a_high = float(
        a_grid[-1] if hi_i == len(a_grid) - 1 else refine_a(a_grid[hi_i + 1], a_grid[hi_i])
    )

    # N_target's profile: x_t fixed, (a > target, log s) free, m = x_t - logit(q) / s
    def profile_x(x0: float, start: list) -> tuple[float, np.ndarray]:
        def objective(u):
            q = (target - g) / (u[0] - g)
            s = math.exp(u[1])
            lq = float(logit(q))
            value, grad = _nll(x, y, u[0], x0 - lq / s, u[1], g)
            dm_da = 1.0 / ((1 - q) * (u[0] - g) * s)
            return value, np.array([grad[0] + grad[1] * dm_da, grad[2] + grad[1] * lq / s])

        return _best(objective, start, [(target + 1e-4, 1.0), (ls_lo, ls_hi)])

    unreachable_l = -math.inf  # the best curve whose asymptote does not exceed the target
    if g + 1e-6 < target:
        v, _ = _best(
            nll,
            [(target, mid, 0.0), (min(target, params.asymptote), params.midpoint, 0.0)],
            [(g + 1e-6, target), m_bounds, (ls_lo, ls_hi)],
        )
        unreachable_l = -v
    grid = np.linspace(x_lo, x_hi, n_scan)
    inside = np.zeros(n_scan, bool)
    previous = None
    optima: list[np.ndarray] = []
    ls_hat = math.log(params.slope)
    for i, x0 in enumerate(grid):
        start = [(max(params.asymptote, target + 0.01), ls_hat), (1.0, ls_hat)]
        if previous is not None:
            start.append(tuple(previous))
        v, previous = profile_x(x0, start)
        optima.append(previous)
        inside[i] = -v >= threshold
        if inside[i]:
            a0, slope = float(previous[0]), math.exp(previous[1])
            m0 = x0 - float(logit((target - g) / (a0 - g))) / slope
            plausible.append(CurveParams(a0, float(m0), slope, g))
    n_target = target_size(params, target)
    if np.isfinite(n_target) and x_lo <= math.log(max(n_target, 1e-300)) <= x_hi:
        inside[np.argmin(np.abs(grid - math.log(n_target)))] = True
    if not inside.any():
        low = high = math.inf
    else:
        idx = np.flatnonzero(inside)
        low_i, high_i = int(idx.min()), int(idx.max())

        def refine(a_out: float, a_in_: float, near: np.ndarray) -> float:
            """Bisection between a point outside and one inside the set (``near``: the
            profile's optimum at the inside point, a start)."""
            for _ in range(12):
                mid_x = 0.5 * (a_out + a_in_)
                start = [tuple(near), (max(params.asymptote, target + 0.01), ls_hat)]
                v, _ = profile_x(mid_x, [*start, (1.0, ls_hat)])
                if -v >= threshold:
                    a_in_ = mid_x
                else:
                    a_out = mid_x
            return a_in_

        low = 0.0 if low_i == 0 else math.exp(refine(grid[low_i - 1], grid[low_i], optima[low_i]))
        high = (
            math.inf
            if high_i == n_scan - 1
            else math.exp(refine(grid[high_i + 1], grid[high_i], optima[high_i]))
        )
    if unreachable_l >= threshold:
        high = math.inf
    if not inside.any() or low > n_max:  # every plausible N_target lies beyond n_max
        status = "unreachable"
    elif math.isfinite(high):
        status = "reached"
    else:
        status = "undetermined"
    return CurveFit(
        params=params,
        loglik=l_max,
        n_jobs=len(outcomes),
        target=float(target),
        n_max=n_max,
        n_target=n_target,
        n_target_low=low,
        n_target_high=high,
        asymptote_low=a_low,
        asymptote_high=a_high,
        status=status,
        plausible=tuple(plausible),
    )


def curve_band(fit: CurveFit, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise range, at ``sizes``, of the curves inside the parameters' 95% profile
    set (an approximate band: the profiles' optima, not the whole set)."""
    curves = np.array([recovery_probability(sizes, p) for p in (fit.params, *fit.plausible)])
    return curves.min(axis=0), curves.max(axis=0)


def _gradients(x: np.ndarray, params: CurveParams) -> tuple[np.ndarray, np.ndarray]:
    """p and its gradient in (a, m, log s) at log sizes ``x``."""
    a, m, s, g = params.asymptote, params.midpoint, params.slope, params.floor
    sig = expit(s * (x - m))
    p = g + (a - g) * sig
    d = (a - g) * sig * (1 - sig)
    grad = np.stack([sig, -s * d, s * (x - m) * d], axis=-1)
    return p, grad


def _target_gradient(params: CurveParams, target: float) -> np.ndarray:
    """Gradient of log N_target in (a, m, log s)."""
    a, s, g = params.asymptote, params.slope, params.floor
    q = (target - g) / (a - g)
    return np.array([-1.0 / (s * (1 - q) * (a - g)), 1.0, -float(logit(q)) / s])


def _information(x: np.ndarray, params: CurveParams, weight: float = 1.0) -> np.ndarray:
    p, grad = _gradients(x, params)
    w = weight / np.clip(p * (1 - p), 1e-2 * 0.99, None)
    return (grad * w[:, None]).T @ grad


def choose_sizes(
    fit: CurveFit,
    sizes_done: np.ndarray,
    ladder: np.ndarray,
    n_slots: int,
    jobs_per_slot: int,
) -> list[int]:
    """The next ``n_slots`` sizes from ``ladder`` (each slot runs ``jobs_per_slot`` jobs,
    one per generator), chosen greedily to minimise the delta-method variance of log
    N_target given the jobs at ``sizes_done``. While the asymptote's interval holds the
    target (curves that never reach it are plausible), every other slot minimises the
    asymptote's variance instead (large sizes); while the fitted curve does not reach the
    target, every slot does."""
    params = fit.params
    along_a = np.array([1.0, 0.0, 0.0])
    reaches = params.asymptote > fit.target + 1e-3
    along_x = _target_gradient(params, fit.target) if reaches else along_a
    both = reaches and fit.asymptote_low <= fit.target
    info = _information(np.log(np.asarray(sizes_done, float)), params)
    info = info + 1e-6 * np.eye(3)
    x_ladder = np.log(np.asarray(ladder, float))
    p, grads = _gradients(x_ladder, params)
    weights = jobs_per_slot / np.clip(p * (1 - p), 1e-2 * 0.99, None)
    chosen: list[int] = []
    for slot in range(n_slots):
        direction = along_a if both and slot % 2 == 1 else along_x
        best_value, best_j = math.inf, 0
        for j in range(len(ladder)):
            trial = info + weights[j] * np.outer(grads[j], grads[j])
            try:
                value = float(direction @ np.linalg.solve(trial, direction))
            except np.linalg.LinAlgError:
                continue
            if value < best_value:
                best_value, best_j = value, j
        chosen.append(int(ladder[best_j]))
        info = info + weights[best_j] * np.outer(grads[best_j], grads[best_j])
    return chosen


def plan_step(
    sizes: np.ndarray,
    outcomes: np.ndarray,
    *,
    ladder: np.ndarray,
    floor: float,
    target: float,
    max_n: float,
    max_ratio: float,
    budget_jobs: int,
    jobs_per_slot: int,
    batch: int,
    initial: int,
) -> tuple[CurveFit | None, str, list[int]]:
    """One step of the adaptive design on the jobs so far (``sizes``, ``outcomes``):
    ``(fit, stop, next sizes)``. Before three sizes are tried: ``initial`` sizes spread
    evenly in log N over ``ladder``. Then the curve is fitted and the plan stops with
    ``interval`` (N_target's interval bounded with high / low <= ``max_ratio``),
    ``below_smallest`` (its interval ends below the ladder's smallest size),
    ``unreachable`` (see :class:`CurveFit`) or ``budget`` (no room for a slot of
    ``jobs_per_slot`` jobs within ``budget_jobs``); else the next ``batch`` sizes of
    :func:`choose_sizes`."""
    sizes = np.asarray(sizes, float)
    outcomes = np.asarray(outcomes, float)
    room = (budget_jobs - len(sizes)) // jobs_per_slot
    if len(np.unique(sizes)) < 3:
        if room < 1:
            return None, "budget", []
        index = np.unique(np.round(np.linspace(0, len(ladder) - 1, initial)).astype(int))
        return None, "", [int(ladder[i]) for i in index][:room]
    fit = fit_curve(sizes, outcomes, floor=floor, target=target, n_max=max_n)
    if fit.status == "reached" and fit.ratio <= max_ratio:
        return fit, "interval", []
    if fit.status == "reached" and fit.n_target_high <= float(np.min(ladder)):
        return fit, "below_smallest", []
    if fit.status == "unreachable":
        return fit, "unreachable", []
    if room < 1:
        return fit, "budget", []
    return fit, "", choose_sizes(fit, sizes, ladder, min(batch, room), jobs_per_slot)


def size_ladder(
    n_min: int, n_max: int, extra: tuple[int, ...] = (), ratio: float = 1.5
) -> list[int]:
    """Candidate sizes from ``n_min`` to ``n_max``: a geometric ladder (``ratio`` apart),
    rounded to two significant digits, plus the ``extra`` sizes in range (the study's own
    grid sizes, so a later grid reuses the plan's jobs)."""
    if n_min < 1 or n_max < n_min:
        raise ValueError(f"sizes must satisfy 1 <= min ({n_min}) <= max ({n_max})")
    out = {int(n_min), int(n_max)}
    n = float(n_min)
    while n < n_max:
        digits = max(0, int(math.floor(math.log10(n))) - 1)
        out.add(int(round(n / 10**digits) * 10**digits))
        n *= ratio
    out |= {int(v) for v in extra if n_min <= v <= n_max}
    return sorted(v for v in out if n_min <= v <= n_max)
