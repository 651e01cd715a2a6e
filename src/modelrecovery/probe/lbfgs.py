"""L-BFGS with strong-Wolfe line search on a flat NumPy vector: torch's algorithm, lean.

:class:`LBFGSCore` runs the same algorithm as ``torch.optim.LBFGS`` with
``line_search_fn="strong_wolfe"`` (the same two-loop recursion, history rule ``y·s > 1e-10``,
initial step ``min(1, 1/|g|_1)``, cubic interpolation, bracketing and zoom, the same
stopping tests in the same order, the same ``n_iter`` / ``func_evals`` accounting, and
state kept across steps), so the stopping rules of :mod:`modelrecovery.probe.fit` mean
the same with either. Why our own: on the small problems of a recovery grid (tens to
thousands of parameters) torch's implementation spends ~1.5 ms per iteration in Python
and per-tensor-op overhead (two history loops of small tensor ops, clones, parameter
plumbing), which is most of the fitting time; here the history sits in a ring buffer and
the two-loop recursion is one compiled call. Scalars (losses, step sizes, directional
derivatives) are kept in float64 and dot products accumulate in float64, so in float32
the iterates differ from torch's in the last bits (tested: float64 problems follow
torch's losses step by step).

:class:`LBFGS` wraps the core as a ``torch.optim.Optimizer`` (one CPU parameter) for the
Lightning module, so :func:`~modelrecovery.probe.fit.fit_probe` and the module share
every iterate.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch

from modelrecovery import interrupts

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


class Coordinates:
    """The entries L-BFGS's coordinate-dependent quantities are taken over: torch's rule
    uses the L1 norm of the first gradient (its first step min(1, 1/|g|_1)) and max-abs
    tests (tolerance_grad on the gradient, tolerance_change on the step, the line search's
    bracket width times max |d|). Here the entries are the vector's own;
    :class:`~modelrecovery.probe.reduced.PathGeometry` takes them over the p x p matrix a
    row-space vector stands for, so a fit in the row space follows the p x p fit's path.
    """

    def abs_max(self, v: np.ndarray) -> float:
        """max |entry|."""
        return _abs_max_sum(v)[0]

    def abs_sum(self, v: np.ndarray) -> float:
        """sum |entry|."""
        return _abs_max_sum(v)[1]

    def abs_max_bounds(self, v: np.ndarray) -> tuple[float, float]:
        """Cheap (low, high) with low <= max |entry| <= high (here: exact)."""
        top = self.abs_max(v)
        return top, top

    def max_times_below(self, v: np.ndarray, factor: float, limit: float, strict: bool) -> bool:
        """Whether max |entry| * factor < limit (``strict``) or <= limit, deciding from the
        cheap bounds when they settle it and from the exact value otherwise."""
        low, high = self.abs_max_bounds(v)
        below = (lambda x: x < limit) if strict else (lambda x: x <= limit)
        if below(high * factor):
            return True
        if not below(low * factor):
            return False
        return self._exactly_below(v, factor, below)

    def _exactly_below(self, v: np.ndarray, factor: float, below: Callable) -> bool:
        """The test on the exact max |entry| (when the bounds did not settle it)."""
        return below(self.abs_max(v) * factor)


COORDINATES = Coordinates()


# fastmath lets the compiler vectorise the float64-accumulated sums (a fixed reordering:
# the same inputs give the same result every time)
@numba.njit(cache=True, nogil=True, fastmath=True)
def _dot(a, b):  # pragma: no cover - compiled
    total = 0.0
    for i in range(a.shape[0]):
        total += np.float64(a[i]) * np.float64(b[i])
    return total


@numba.njit(cache=True, nogil=True, fastmath=True)
def _abs_max_sum(a):  # pragma: no cover - compiled
    top = 0.0
    total = 0.0
    for i in range(a.shape[0]):
        v = abs(np.float64(a[i]))
        total += v
        top = max(top, v)
    return top, total


@numba.njit(cache=True, nogil=True, fastmath=True)
def _axpy(alpha, x, y):  # pragma: no cover - compiled
    """y += alpha x (in place)."""
    a = y.dtype.type(alpha)
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _two_loop(grad, s_hist, y_hist, ro, order, h_diag):  # pragma: no cover - compiled
    """-H grad by the two-loop recursion over the history rows ``order`` (oldest first)."""
    n = order.shape[0]
    q = -grad
    al = np.empty(n)
    for k in range(n - 1, -1, -1):
        i = order[k]
        a = _dot(s_hist[i], q) * ro[i]
        al[k] = a
        _axpy(-a, y_hist[i], q)
    h = q.dtype.type(h_diag)
    for j in range(q.shape[0]):
        q[j] *= h
    for k in range(n):
        i = order[k]
        b = _dot(y_hist[i], q) * ro[i]
        _axpy(al[k] - b, s_hist[i], q)
    return q


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """Minimiser of the cubic through two points with derivatives (torch's formula).

    torch computes it on tensors, where x / 0 is inf or nan (e.g. a loss that is linear
    along the search direction: an l1 penalty on all-zero features); Python floats raise
    instead, so that rare case is recomputed with NumPy's IEEE division."""
    try:
        return _cubic(x1, f1, g1, x2, f2, g2, bounds)
    except ZeroDivisionError:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = (np.float64(v) for v in (x1, f1, g1, x2, f2, g2))
            return float(_cubic(*values, bounds))


def _cubic(x1, f1, g1, x2, f2, g2, bounds) -> float:
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square**0.5
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(
    obj_func,
    t,
    d,
    f,
    g,
    gtd,
    c1=1e-4,
    c2=0.9,
    tolerance_change=1e-9,
    max_ls=25,
    geometry: Coordinates = COORDINATES,
):
    """Strong-Wolfe line search along ``d`` (torch's bracketing and zoom).

    ``obj_func(t)`` returns the loss and gradient at x + t d. Returns (f, g, t, evals).
    ``geometry`` takes the max |d| of the bracket test (torch's ``d_norm``)."""
    f_new, g_new = obj_func(t)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        width = abs(bracket[1] - bracket[0])
        if geometry.max_times_below(d, width, tolerance_change, strict=True):
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new
    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


class LBFGSCore:
    """torch's L-BFGS (strong Wolfe) on a flat vector; state persists across :meth:`step`.

    ``x`` is the current point, ``loss`` the objective there (after a step: the loss at its
    end), ``n_iter`` and ``func_evals`` count iterations and evaluations over all steps.
    """

    def __init__(
        self,
        x0: np.ndarray,
        *,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        geometry: Coordinates = COORDINATES,
    ) -> None:
        self.geometry = geometry
        self.x = np.array(x0, copy=True).reshape(-1)
        if self.x.dtype not in (np.float32, np.float64):
            raise ValueError(f"L-BFGS needs float32 or float64 parameters, got {self.x.dtype}")
        self.lr = float(lr)
        self.max_iter = int(max_iter)
        self.max_eval = int(max_eval) if max_eval is not None else self.max_iter * 5 // 4
        self.tolerance_grad = float(tolerance_grad)
        self.tolerance_change = float(tolerance_change)
        self.history_size = int(history_size)
        n = self.x.shape[0]
        # np.empty touches no memory until a row is written
        self._s = np.empty((self.history_size, n), dtype=self.x.dtype)
        self._y = np.empty((self.history_size, n), dtype=self.x.dtype)
        self._ro = np.empty(self.history_size)
        self._head = 0  # oldest history row
        self._count = 0
        self.d: np.ndarray | None = None
        self.t: float | None = None
        self.h_diag = 1.0
        self.prev_grad: np.ndarray | None = None
        self.prev_loss: float | None = None
        self.n_iter = 0
        self.func_evals = 0
        self.loss: float | None = None

    def _push(self, s: np.ndarray, y: np.ndarray, ro: float) -> None:
        if self._count == self.history_size:
            slot = self._head
            self._head = (self._head + 1) % self.history_size
        else:
            slot = (self._head + self._count) % self.history_size
            self._count += 1
        self._s[slot] = s
        self._y[slot] = y
        self._ro[slot] = ro

    def _order(self) -> np.ndarray:
        return (self._head + np.arange(self._count)) % self.history_size

    def step(self, fun: Objective) -> float:
        """One step of up to ``max_iter`` iterations; returns the loss at its start.

        ``fun(x)`` returns the loss (a float) and the gradient (an array of x's shape and
        dtype, not modified afterwards) at x."""
        x = self.x
        loss, flat_grad = fun(x)
        loss = float(loss)
        orig_loss = loss
        self.loss = loss
        current_evals = 1
        self.func_evals += 1
        geometry = self.geometry
        if geometry.max_times_below(flat_grad, 1.0, self.tolerance_grad, strict=False):
            return orig_loss
        d, t = self.d, self.t
        n_iter = 0
        while n_iter < self.max_iter:
            interrupts.check()  # fits on other threads stop at SIGTERM / SIGINT
            n_iter += 1
            self.n_iter += 1
            if self.n_iter == 1:
                d = -flat_grad
                self._head, self._count, self.h_diag = 0, 0, 1.0
            else:
                y = flat_grad - self.prev_grad
                s = d * d.dtype.type(t)
                ys = _dot(y, s)
                if ys > 1e-10:
                    self._push(s, y, 1.0 / ys)
                    self.h_diag = ys / _dot(y, y)
                d = _two_loop(flat_grad, self._s, self._y, self._ro, self._order(), self.h_diag)
            self.prev_grad = flat_grad
            self.prev_loss = loss
            if self.n_iter == 1:
                t = min(1.0, 1.0 / geometry.abs_sum(flat_grad)) * self.lr
            else:
                t = self.lr
            gtd = _dot(flat_grad, d)
            if gtd > -self.tolerance_change:
                break

            def obj_func(step: float, base=x, direction=d) -> tuple[float, np.ndarray]:
                value, grad = fun(base + direction.dtype.type(step) * direction)
                return float(value), grad

            loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                obj_func,
                t,
                d,
                loss,
                flat_grad,
                gtd,
                tolerance_change=self.tolerance_change,
                max_ls=self.max_eval - current_evals,
                geometry=geometry,
            )
            x = x + d.dtype.type(t) * d
            self.x = x
            self.loss = loss
            current_evals += ls_func_evals
            self.func_evals += ls_func_evals
            # torch's tests, in an order that needs the costly ones least (any one stops):
            # the counts, the loss change, then the max-abs tests of gradient and step
            if n_iter == self.max_iter or current_evals >= self.max_eval:
                break
            if abs(loss - self.prev_loss) < self.tolerance_change:
                break
            if geometry.max_times_below(flat_grad, 1.0, self.tolerance_grad, strict=False):
                break
            if geometry.max_times_below(d, abs(t), self.tolerance_change, strict=False):
                break
        self.d, self.t = d, t
        return orig_loss


class LBFGS(torch.optim.Optimizer):
    """:class:`LBFGSCore` as a ``torch.optim.Optimizer`` for one CPU parameter.

    Takes torch's L-BFGS arguments (strong-Wolfe line search only). ``closure`` returns the
    loss and sets the parameter's ``.grad``. ``state[param]`` holds ``n_iter``,
    ``func_evals`` and ``loss`` (the loss at the current parameters) like torch's."""

    def __init__(
        self,
        params,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = "strong_wolfe",
        geometry: Coordinates = COORDINATES,
    ) -> None:
        self._geometry = geometry
        if line_search_fn != "strong_wolfe":
            raise ValueError("this L-BFGS supports line_search_fn='strong_wolfe' only")
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
        )
        super().__init__(params, defaults)
        group = self.param_groups[0]
        if len(self.param_groups) != 1 or len(group["params"]) != 1:
            raise ValueError("this L-BFGS optimises exactly one parameter tensor")
        param = group["params"][0]
        if param.device.type != "cpu":
            raise ValueError("this L-BFGS runs on CPU; use torch.optim.LBFGS on other devices")
        self._param = param
        self._core: LBFGSCore | None = None

    @torch.no_grad()
    def step(self, closure) -> float:  # type: ignore[override]
        param = self._param
        if self._core is None:
            group = self.param_groups[0]
            self._core = LBFGSCore(
                param.detach().cpu().numpy(),
                **{k: group[k] for k in self.defaults},
                geometry=self._geometry,
            )
        shape = param.shape
        closure = torch.enable_grad()(closure)

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            param.copy_(torch.from_numpy(x).view(shape))
            loss = float(closure())
            return loss, param.grad.detach().reshape(-1).numpy().copy()

        start_loss = self._core.step(fun)
        param.copy_(torch.from_numpy(self._core.x).view(shape))
        state = self.state[param]
        state["n_iter"] = self._core.n_iter
        state["func_evals"] = self._core.func_evals
        state["loss"] = self._core.loss
        return start_loss
