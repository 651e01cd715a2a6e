"""Full-batch L-BFGS fit of the probe, and predictions of a fitted probe.

Two stopping rules (``LBFGSSettings.stopping``), both running torch's L-BFGS (strong-Wolfe
line search, history 50, up to 150 iterations per step) in repeated steps that keep the
L-BFGS memory, at most 100 steps:

- ``converged`` (the default): the optimum of the stated objective, to float resolution.
  Inside a step L-BFGS stops when an iteration changes the loss by less than 1e-9 or
  moves no parameter by more than 1e-9; steps repeat until the loss at the END of two
  consecutive steps differs by at most 1e-7 relatively (at least 3 steps).
- ``study``: the rule of the published study (its ``set_optimizer`` / ``fit_W_matrix``),
  reproduced exactly: tolerance_change 1e-4 and max_eval 450 inside a step; the loss a step
  returns is torch's, i.e. the loss at the START of the step; after the third step,
  training stops when two consecutive returned losses differ by less than 1e-7 relative
  to the larger one (+1e-10). At small λ it stops far from the optimum (early stopping as
  a hidden regulariser).

Both return the last iterate (the study's behaviour), its NLL and its penalised objective,
whether the rule was met and why the fit stopped (``stop_reason``: ``rule``, ``max_steps``
or ``non_finite``); :meth:`FittedProbe.convergence_warning` says in one line when a fit
must not be trusted (it did not meet its rule, its loss became non-finite, or it ended
worse than W = 0, whose loss is log 3).

Accuracy counts ties as ties: a triplet whose largest logit is shared by two or three
positions gives the response 1/2 or 1/3 credit when it is among them (the expected accuracy
of a uniform choice among the tied positions); with continuous features exact ties do not
occur and this is the plain argmax accuracy.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from modelrecovery import interrupts
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.families import Family
from modelrecovery.probe.lbfgs import COORDINATES, LBFGS, LBFGSCore
from modelrecovery.probe.objective import PreparedTriplets, TripletObjective
from modelrecovery.probe.reduced import (
    PathObjective,
    RowSpace,
    full_matrix,
    offset_of,
    path_parts,
    path_start,
    reduction_mode,
    reduction_name,
    row_space,
)
from modelrecovery.probe.zero_shot import degenerate_message
from modelrecovery.study.spec import REGULARISERS, STOPPING_RULES

ENGINES = ("auto", "lean", "torch")  # L-BFGS: auto (lean on CPU, torch's elsewhere)
STOP_REASONS = ("rule", "max_steps", "non_finite")

# The loss of W = 0 (every triplet a three-way tie; every regulariser is 0 there). A fit
# whose penalised loss ends more than DIVERGED_MARGIN above it is worse than predicting
# nothing: it diverged or stalled. (Anti-predictive features approach log 3 from above as
# W -> 0; the study's early stop leaves them about 1e-4 above it, far below the margin.)
LOG3 = math.log(3.0)
DIVERGED_MARGIN = 0.01
COLLAPSE_START_MARGIN = 1.0  # a start this far above log 3 means badly scaled features
COLLAPSE_TOLERANCE = 1e-3  # ... and an end this close to log 3 means W fell to 0

logger = logging.getLogger("modelrecovery.probe")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning once per process (one plain line on stderr when the
    application configured no logging: Python's last-resort handler prints the message
    alone)."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    logger.warning(message)


@dataclass(frozen=True)
class LBFGSSettings:
    """The optimiser's settings and stopping rule (see the module docstring).

    ``LBFGSSettings()`` is the converged rule, ``LBFGSSettings.of("study")`` the study's.
    """

    stopping: str = "converged"
    history_size: int = 50
    max_iter: int = 150
    max_eval: int | None = None  # None: torch's default, max_iter * 5 // 4
    max_repeats: int = 100
    min_steps: int = 3
    rel_tol: float = 1e-7
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    engine: str = "auto"  # L-BFGS implementation: auto (lean on CPU), lean or torch
    # the study's per-step reshuffle: before step e the loss is summed in the order of
    # torch.manual_seed(e); randperm(m), in the fit dtype (TripletObjective.reshuffle)
    reshuffle: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.stopping not in STOPPING_RULES:
            raise ValueError(f"stopping must be one of {STOPPING_RULES}, got {self.stopping!r}")
        if self.max_repeats < 1 or self.max_iter < 1 or self.min_steps < 1:
            raise ValueError("max_repeats, max_iter and min_steps must be at least 1")

    @classmethod
    def of(cls, stopping: str, engine: str = "auto", reshuffle: bool = False) -> LBFGSSettings:
        """The settings of a named stopping rule: ``converged`` or ``study``."""
        if stopping == "study":
            return cls(
                stopping="study",
                tolerance_change=1e-4,
                max_eval=450,
                engine=engine,
                reshuffle=reshuffle,
            )
        return cls(stopping=stopping, engine=engine, reshuffle=reshuffle)

    def lbfgs_options(self) -> dict:
        """The L-BFGS arguments (torch's names) of these settings."""
        return dict(
            lr=1.0,
            max_iter=self.max_iter,
            max_eval=self.max_eval,
            history_size=self.history_size,
            tolerance_grad=self.tolerance_grad,
            tolerance_change=self.tolerance_change,
        )

    def optimiser(self, params: list[torch.nn.Parameter], geometry=None) -> torch.optim.Optimizer:
        """The L-BFGS optimiser with these settings: the lean implementation of
        :mod:`modelrecovery.probe.lbfgs` on CPU, torch's ``LBFGS`` on other devices (the
        same algorithm). ``geometry``: the path reduction's (lean L-BFGS only)."""
        params = list(params)
        if self.engine != "torch" and all(p.device.type == "cpu" for p in params):
            return LBFGS(
                params,
                line_search_fn="strong_wolfe",
                geometry=geometry or COORDINATES,
                **self.lbfgs_options(),
            )
        if geometry is not None:
            raise ValueError("the path reduction runs with the lean L-BFGS on CPU")
        return torch.optim.LBFGS(params, line_search_fn="strong_wolfe", **self.lbfgs_options())


class StepRule:
    """The stopping rule applied after each L-BFGS step (shared by :func:`fit_probe` and
    the Lightning module, so both stop at the same step).

    ``history`` holds the losses the rule compares: for ``study`` the losses returned by
    torch's ``step`` (at the start of each step), for ``converged`` the loss at the start
    followed by the loss at the end of each step.
    """

    def __init__(self, settings: LBFGSSettings) -> None:
        self.settings = settings
        self.history: list[float] = []
        self.steps = 0
        self.converged = False
        self.reason: str | None = None  # why it stopped: "rule" or "non_finite"

    @property
    def needs_end_loss(self) -> bool:
        """Whether the rule needs the loss after each step (an extra evaluation)."""
        return self.settings.stopping == "converged"

    def update(self, start_loss: float, end_loss: float | None) -> bool:
        """Record one step; True when training should stop."""
        s = self.settings
        self.steps += 1
        if s.stopping == "study":
            self.history.append(start_loss)
            if not math.isfinite(start_loss):
                self.reason = "non_finite"
                return True
            if self.steps >= max(3, s.min_steps):
                a, b = self.history[-2], self.history[-1]
                if abs(a - b) / (max(abs(a), abs(b)) + 1e-10) < s.rel_tol:
                    self.converged = True
                    self.reason = "rule"
                    return True
            return False
        if not self.history:
            self.history.append(start_loss)
        self.history.append(end_loss)
        if not math.isfinite(end_loss):
            self.reason = "non_finite"
            return True
        previous = self.history[-2]
        if self.steps >= s.min_steps and abs(previous - end_loss) <= s.rel_tol * max(
            abs(previous), 1e-30
        ):
            self.converged = True
            self.reason = "rule"
            return True
        return False

    def stop_reason(self) -> str:
        """``rule``, ``non_finite``, or ``max_steps`` (the steps ran out first)."""
        return self.reason or "max_steps"


@dataclass
class FittedProbe:
    """A fitted probe: W (possibly in the reduced parametrisation), its settings and trace.

    ``theta`` lives in the reduced r-dimensional space when ``space`` is set; use
    :meth:`matrix` for the p x p (or p x k) W and :meth:`transform` for Z = X W.
    """

    family: Family
    regulariser: str
    lam: float
    temperature: float
    theta: torch.Tensor
    p: int
    space: RowSpace | None = None
    loss_history: list[float] = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    converged: bool = False
    seconds: float = 0.0
    path: str = "dense"
    stopping: str = "converged"
    train_nll: float = math.nan  # mean NLL of the training triplets at theta
    train_objective: float = math.nan  # NLL + lam * R at theta
    stop_reason: str = ""  # rule, max_steps or non_finite ("" while a fit is running)
    degenerate: str | None = None  # the degenerate-features warning of the problem, if any
    # c of W = V A V^T + c (I - V V^T) when fitted (the path reduction); None: derived
    offset: float | None = None
    # a collapse to W = 0 where nothing on the way from the start does better: W = 0 is
    # then the best fit (uninformative features, random responses), not a scale problem
    zero_is_best: bool = False

    def convergence_warning(self) -> str | None:
        """One line saying why this fit must not be trusted, or None.

        A fit is flagged when its loss became non-finite (W is then the last finite
        iterate), when it ends worse than W = 0 (penalised loss more than
        :data:`DIVERGED_MARGIN` above log 3: diverged or stalled, e.g. badly scaled
        features), or when the steps ran out before its stopping rule was met. A fit the
        study's rule stopped early, as that rule intends, is not flagged, even above log 3,
        unless its loss rose above the start point's.
        """
        loss = self.train_objective
        advice = "rescale the features (e.g. divide by their largest norm)" + (
            "" if self.theta.dtype == torch.float64 else " or use float64"
        )
        if self.stop_reason == "non_finite" or not math.isfinite(loss):
            return (
                f"the fit diverged: its loss became non-finite after {self.iterations} "
                f"L-BFGS iterations (W is the last finite iterate); {advice}"
            )
        start = self.loss_history[0] if self.loss_history else math.nan
        rose = math.isfinite(start) and loss > start + DIVERGED_MARGIN
        # the study's rule may stop above log 3 while still descending from the start (as
        # the study's fits did): only a rise above the start point is flagged then
        if loss > LOG3 + DIVERGED_MARGIN and (self.stopping != "study" or rose):
            return (
                f"the fit ended with training loss {loss:.4g}, above log 3 = {LOG3:.4f} "
                f"(the loss of W = 0): it diverged or stalled; {advice}"
            )
        if self.collapsed() and not self.zero_is_best:
            return (
                f"the fit collapsed to W = 0 (loss log 3: no odd one preferred) from a start "
                f"loss of {start:.4g}: either the features carry no information about these "
                "triplets (W = 0 is then the best fit; `modelrecovery check` tells) or their "
                f"scale is too large for the probe to descend in it; {advice}"
            )
        if not self.converged:
            return (
                f"the optimiser stopped ({self.stop_reason or 'interrupted'}, "
                f"{self.iterations} L-BFGS iterations) without meeting its "
                f"{self.stopping!r} stopping rule: W may be far from the optimum"
            )
        return None

    def collapsed(self) -> bool:
        """The fit started far above log 3 and ended at W = 0's loss (log 3)."""
        start = self.loss_history[0] if self.loss_history else math.nan
        return (
            math.isfinite(start)
            and start > LOG3 + COLLAPSE_START_MARGIN
            and abs(self.train_objective - LOG3) < COLLAPSE_TOLERANCE
        )

    def matrix(self) -> torch.Tensor:
        """W in the original feature space."""
        if self.space is not None:
            return full_matrix(self.theta, self.space, self.regulariser, self.offset)
        return self.family.matrix(self.theta, self.p)

    def transform(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Z = X W for features of any concepts (train or test)."""
        x = torch.as_tensor(features).to(dtype=self.theta.dtype, device=self.theta.device)
        if x.shape[1] != self.p:
            raise ValueError(f"features have {x.shape[1]} columns, the probe expects p={self.p}")
        if self.space is None:
            return self.family.transform(x, self.theta)
        v = self.space.basis.to(self.theta.dtype)
        xv = x @ v
        c = offset_of(self.theta, self.regulariser, self.offset)
        z = (xv @ self.theta) @ v.T
        if c != 0.0:
            z += c * (x - xv @ v.T)
        return z

    def probabilities(self, features: torch.Tensor | np.ndarray, triplets: Triplets) -> np.ndarray:
        """P(odd one out = position) for each triplet, (m, 3)."""
        x, local = compact(features, triplets)
        return triplet_probabilities(self.transform(x), local, self.temperature)

    def evaluate(self, features: torch.Tensor | np.ndarray, triplets: Triplets) -> dict[str, float]:
        """Accuracy and mean NLL on ``triplets`` (only their concepts are transformed)."""
        if len(triplets) == 0:
            return {"accuracy": math.nan, "nll": math.nan}
        x, local = compact(features, triplets)
        return accuracy_and_nll(self.transform(x), local, self.temperature)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every element is finite (a finite sum proves it cheaply; torch.isfinite on a
    whole matrix costs milliseconds per call)."""
    with torch.no_grad():
        return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def compact(
    features: torch.Tensor | np.ndarray, triplets: Triplets
) -> tuple[torch.Tensor, Triplets]:
    """The rows of ``features`` that ``triplets`` use, and the triplets re-indexed to them."""
    concepts, local = np.unique(triplets.ids, return_inverse=True)
    x = torch.as_tensor(features)[torch.from_numpy(concepts)]
    return x, Triplets(local.reshape(-1, 3), triplets.odd, max(3, len(concepts)))


def _triplet_logits(z: torch.Tensor, triplets: Triplets, temperature: float) -> torch.Tensor:
    ids = torch.as_tensor(triplets.ids.astype(np.int64), device=z.device)
    if z.shape[0] ** 2 <= len(triplets) * z.shape[1]:  # few concepts: one Gram matrix
        s = z @ z.T
        a, b, c = ids[:, 0], ids[:, 1], ids[:, 2]
        return torch.stack([s[b, c], s[a, c], s[a, b]], 1) / temperature
    out = torch.empty(len(triplets), 3, dtype=z.dtype, device=z.device)
    chunk = 1 << 16
    for start in range(0, len(triplets), chunk):
        a, b, c = (z[ids[start : start + chunk, i]] for i in range(3))
        out[start : start + chunk, 0] = (b * c).sum(1)
        out[start : start + chunk, 1] = (a * c).sum(1)
        out[start : start + chunk, 2] = (a * b).sum(1)
    return out / temperature


def triplet_probabilities(
    z: torch.Tensor, triplets: Triplets, temperature: float = 1.0
) -> np.ndarray:
    """Softmax odd-one-out probabilities from transformed features ``z`` (all concepts)."""
    with torch.no_grad():
        return torch.softmax(_triplet_logits(z, triplets, temperature), 1).cpu().numpy()


def tie_credit(logits: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Per triplet (float64): 1 when the response ``odd`` holds the unique largest logit,
    1/2 or 1/3 when it shares the largest logit with one or two other positions, 0
    otherwise.

    Tied positions are equally likely predictions, so a tie earns the expected accuracy
    of a uniform choice among them (the softmax probability of the response in the
    T -> 0 limit). Without exact ties this is ``logits.argmax(1) == odd``; a row holding
    NaN gets NaN.
    """
    top = logits.max(dim=1, keepdim=True).values
    tied = logits == top
    hit = tied.gather(1, odd.reshape(-1, 1).to(torch.int64)).reshape(-1)
    return hit.to(torch.float64) / tied.sum(dim=1).to(torch.float64)


def tie_accuracy(logits: torch.Tensor, odd: torch.Tensor) -> float:
    """Mean :func:`tie_credit`, exactly: the credits are counted in sixths (integers) and
    divided once, so all-tied triplets give exactly 1/3 and, without ties, the result is
    the plain argmax accuracy k / m bit for bit. NaN when a row holds NaN."""
    m = logits.shape[0]
    if m == 0:
        return math.nan
    top = logits.max(dim=1, keepdim=True).values
    tied = logits == top
    n_tied = tied.sum(dim=1)
    if bool((n_tied == 0).any()):
        return math.nan
    hit = tied.gather(1, odd.reshape(-1, 1).to(torch.int64)).reshape(-1)
    sixths = int((hit.to(torch.int64) * (6 // n_tied)).sum())
    return sixths / (6 * m)  # Python's int division is correctly rounded


def accuracy_and_nll(
    z: torch.Tensor, triplets: Triplets, temperature: float = 1.0
) -> dict[str, float]:
    """Share of triplets whose most probable odd one is the response (ties share credit,
    see :func:`tie_credit`), and mean NLL.

    Raises ValueError when the similarities are not finite (features or W so large that
    Z Z^T overflows ``z``'s dtype)."""
    if len(triplets) == 0:
        return {"accuracy": math.nan, "nll": math.nan}
    with torch.no_grad():
        logits = _triplet_logits(z, triplets, temperature)
        if not all_finite(logits):
            dtype = str(logits.dtype).removeprefix("torch.")
            raise ValueError(
                f"the similarities of the transformed features are not finite (they overflow "
                f"{dtype}; largest |Z| = {float(z.abs().max()):.3g}): rescale the features "
                "(e.g. divide by their largest norm)"
            )
        odd = torch.as_tensor(triplets.odd.astype(np.int64), device=z.device)
        rows = torch.arange(len(triplets), device=z.device)
        nll = (torch.logsumexp(logits, 1) - logits[rows, odd]).mean()
        accuracy = tie_accuracy(logits, odd)
    return {"accuracy": accuracy, "nll": float(nll)}


def check_features(
    features: torch.Tensor | np.ndarray,
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
    rows: torch.Tensor | np.ndarray | None = None,
) -> str | None:
    """Check features for a probe computed in ``dtype``; return a one-line warning when
    they are degenerate, else None.

    Raises ValueError (one line, starting with ``name`` when given) for NaN or infinite
    values, and for values so large that their similarities overflow ``dtype`` (a
    similarity is at most the largest squared row norm, by Cauchy-Schwarz). Degenerate:
    every row in ``rows`` (default all) is the same vector, e.g. all zero: then every
    triplet is a three-way tie whatever W, the accuracy is 1/3 and the loss log 3.
    """
    x = torch.as_tensor(features)
    where = f"{name}: " if name else ""
    if x.ndim != 2:
        raise ValueError(f"{where}features must be 2-D (n_concepts, p), got shape {tuple(x.shape)}")
    if not all_finite(x):
        raise ValueError(f"{where}features contain NaN or infinite values; expected finite numbers")
    if x.numel() == 0:
        return None
    with torch.no_grad():
        largest = float(x.abs().max())
        norm = float(torch.linalg.vector_norm(x, dim=1, dtype=torch.float64).max())
        norm2 = norm * norm  # inf when even float64 overflows
        limit = torch.finfo(dtype).max
        if norm2 > limit:
            dtype_name = str(dtype).removeprefix("torch.")
            advice = "rescale the features (e.g. divide by their largest norm)" + (
                " or use --dtype float64" if dtype != torch.float64 else ""
            )
            raise ValueError(
                f"{where}features have max |x| = {largest:.3g}: their similarities "
                f"(squared row norms up to {norm2:.3g}) overflow {dtype_name} "
                f"(largest {limit:.3g}); {advice}"
            )
        used = x if rows is None else x[torch.as_tensor(rows, device=x.device)]
        return degenerate_message(used.cpu().numpy(), name)


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` / ``cuda:<n>`` (error if absent) or ``auto`` (CUDA when
    available) as a torch device: :func:`modelrecovery.devices.require_device`, the one
    resolution of a device name."""
    return torch.device(require_device(device))


@dataclass
class Minimised:
    """What :func:`lbfgs_minimise` returns."""

    theta: torch.Tensor
    history: list[float]
    iterations: int
    evaluations: int
    converged: bool
    stop_reason: str = "max_steps"  # rule, max_steps or non_finite


def lbfgs_minimise(
    objective: TripletObjective,
    theta0: torch.Tensor,
    settings: LBFGSSettings,
    engine: str | None = None,
) -> Minimised:
    """Repeated L-BFGS steps under ``settings``' stopping rule (module docstring).

    Returns the last finite iterate, the losses the rule compared, the number of L-BFGS
    iterations and objective evaluations, and whether the rule was met. On CPU the lean
    :class:`~modelrecovery.probe.lbfgs.LBFGSCore` runs (it knows the loss at the end of a
    step, so the ``converged`` rule needs no extra evaluation); elsewhere, or with
    ``engine="torch"``, torch's ``LBFGS`` (the same algorithm). ``engine`` defaults to
    ``settings.engine``.
    """
    engine = engine or settings.engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "torch" or theta0.device.type != "cpu":
        return _torch_minimise(objective, theta0, settings)
    shape = theta0.shape

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = objective.loss_and_grad(torch.from_numpy(x).view(shape))
        return float(loss), grad.reshape(-1).numpy()

    core = LBFGSCore(
        theta0.detach().numpy(),
        **settings.lbfgs_options(),
        geometry=getattr(objective, "geometry", COORDINATES),
    )
    rule = StepRule(settings)
    last_finite = core.x.copy()
    for step in range(settings.max_repeats):
        if settings.reshuffle:
            objective.reshuffle(step)
        start_loss = core.step(fun)
        end_loss = core.loss if rule.needs_end_loss else None
        stop = rule.update(start_loss, end_loss)
        current = end_loss if end_loss is not None else start_loss
        if not math.isfinite(current) or not np.isfinite(core.x).all():
            rule.reason = "non_finite"
            break
        last_finite = core.x.copy()
        if stop:
            break
    return Minimised(
        theta=torch.from_numpy(last_finite).view(shape),
        history=rule.history,
        iterations=core.n_iter,
        evaluations=core.func_evals,
        converged=rule.converged,
        stop_reason=rule.stop_reason(),
    )


def _torch_minimise(
    objective: TripletObjective, theta0: torch.Tensor, settings: LBFGSSettings
) -> Minimised:
    """:func:`lbfgs_minimise` with torch's L-BFGS (any device)."""
    if isinstance(objective, PathObjective):
        raise ValueError("the path reduction runs with the lean L-BFGS (engine auto or lean)")
    param = torch.nn.Parameter(theta0.detach().clone())
    optimiser = torch.optim.LBFGS(
        [param], line_search_fn="strong_wolfe", **settings.lbfgs_options()
    )
    closure = make_closure(objective, param)
    rule = StepRule(settings)
    extra_evals = 0
    last_finite = param.detach().clone()
    for step in range(settings.max_repeats):
        if settings.reshuffle:
            objective.reshuffle(step)
        start_loss = float(optimiser.step(closure))
        end_loss = None
        if rule.needs_end_loss:
            with torch.no_grad():
                end_loss = float(objective.loss_and_grad(param.detach())[0])
            extra_evals += 1
        stop = rule.update(start_loss, end_loss)
        current = end_loss if end_loss is not None else start_loss
        if not math.isfinite(current) or not all_finite(param):
            rule.reason = "non_finite"
            break
        last_finite = param.detach().clone()
        if stop:
            break
    state = optimiser.state[optimiser.param_groups[0]["params"][0]]
    return Minimised(
        theta=last_finite,
        history=rule.history,
        iterations=int(state.get("n_iter", 0)),
        evaluations=int(state.get("func_evals", 0)) + extra_evals,
        converged=rule.converged,
        stop_reason=rule.stop_reason(),
    )


def make_closure(objective: TripletObjective, param: torch.nn.Parameter):
    """The closure torch's L-BFGS calls: the loss, with the hand-derived gradient set."""

    def closure() -> torch.Tensor:
        interrupts.check()  # fits on other threads stop at SIGTERM / SIGINT
        loss, grad = objective.loss_and_grad(param.detach())
        param.grad = grad
        return loss

    return closure


@dataclass
class ProbeProblem:
    """Everything a fit needs: the objective, the start point and how to map back to W."""

    objective: TripletObjective | PathObjective
    theta0: torch.Tensor
    family: Family
    regulariser: str
    lam: float
    temperature: float
    p: int
    space: RowSpace | None
    degenerate: str | None = None  # the degenerate-features warning, if any

    def result(
        self,
        theta: torch.Tensor,
        history: list[float],
        iterations: int,
        evaluations: int,
        converged: bool,
        seconds: float,
        stopping: str = "converged",
        stop_reason: str = "",
    ) -> FittedProbe:
        """A :class:`FittedProbe` from optimised parameters (with its NLL and objective)."""
        with torch.no_grad():
            nll, reg = self.objective.nll_and_penalty(theta.detach())
        offset = None
        if isinstance(self.objective, PathObjective):  # u -> (A, c)
            theta, offset = path_parts(theta.detach(), self.space)
        fitted = FittedProbe(
            family=self.family,
            regulariser=self.regulariser,
            lam=self.lam,
            temperature=self.temperature,
            theta=theta.detach(),
            offset=offset,
            p=self.p,
            space=self.space,
            loss_history=history,
            iterations=iterations,
            evaluations=evaluations,
            converged=converged,
            seconds=seconds,
            path=self.objective.path,
            stopping=stopping,
            train_nll=nll,
            train_objective=nll + self.lam * reg,
            stop_reason=stop_reason,
            degenerate=self.degenerate,
        )
        if fitted.collapsed():
            fitted.zero_is_best = self._zero_is_best(fitted.train_objective)
        return fitted

    def _zero_is_best(self, loss: float) -> bool:
        """Nothing near the fit's end point does better than its ``loss`` by more than
        :data:`DIVERGED_MARGIN`: not the way back to the start (t * theta0), not the way
        down the gradient from there (t = 0.3 ... 1e-3 of theta0's size). W = 0 is then
        the best fit (uninformative features, random responses), not a point the optimiser
        fell to from badly scaled features."""
        theta0 = self.theta0.detach()
        scale = float(torch.linalg.vector_norm(theta0)) or 1.0
        here = torch.zeros_like(theta0) if self.space is None else None
        directions = [theta0 / scale]
        if here is not None:
            _, grad = self.objective.loss_and_grad(here)
            size = float(torch.linalg.vector_norm(grad))
            if size > 0:
                directions.append(-grad.detach() / size)
        with torch.no_grad():
            for direction in directions:
                for t in (0.3, 0.1, 3e-2, 1e-2, 3e-3, 1e-3):
                    nll, reg = self.objective.nll_and_penalty(direction * (t * scale))
                    if nll + self.lam * reg < loss - DIVERGED_MARGIN:
                        return False
        return True


def check_lam(lam: object) -> None:
    """λ must be a finite number >= 0."""
    if isinstance(lam, bool) or not (
        isinstance(lam, int | float | np.floating | np.integer) and math.isfinite(lam) and lam >= 0
    ):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")


def build_problem(
    features: torch.Tensor | np.ndarray,
    triplets: Triplets | PreparedTriplets,
    *,
    family: Family | str = "full",
    k: int | None = None,
    regulariser: str = "scalar_shrinkage",
    lam: float = 0.0,
    temperature: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    path: str = "auto",
    reduce: bool | str = "auto",
    space: RowSpace | None = None,
    init: torch.Tensor | None = None,
    compiled: bool = True,
    name: str | None = None,
    stopping: str = "converged",
    engine: str = "auto",
) -> ProbeProblem:
    """Validate the inputs and set up one probe problem (see :func:`fit_probe`).

    Degenerate features (see :func:`check_features`; for ``zero_shot`` also similarities
    tied within every triplet) are logged once as a one-line warning and noted in the
    problem (``degenerate``) and its fits."""
    fam = family if isinstance(family, Family) else Family(family, k)
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
    check_lam(lam)
    if not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    dev = resolve_device(device)
    x = torch.as_tensor(features)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_concepts, p), got shape {tuple(x.shape)}")
    prep = (
        triplets.to(dev)
        if isinstance(triplets, PreparedTriplets)
        else PreparedTriplets.from_triplets(triplets, device=dev)
    )
    if int(prep.concepts.max()) >= x.shape[0]:
        raise ValueError(
            f"triplets index concept {int(prep.concepts.max())} but features have {x.shape[0]} rows"
        )
    # before the cast: values beyond the dtype's range are named, not turned into inf
    degenerate = check_features(x, dtype, name, rows=prep.concepts)
    x = x.to(dtype=dtype, device=dev)
    p = int(x.shape[1])
    x_active = x[prep.concepts]
    reduction = reduction_name(reduce)
    mode = reduction_mode(fam.name, regulariser, stopping, reduction)
    if mode == "path" and (dev.type != "cpu" or engine == "torch"):
        if reduction == "path":
            raise ValueError(
                "reduction 'path' runs on CPU with the lean L-BFGS (engine auto or lean)"
            )
        mode = "none"  # auto on a GPU or with torch's L-BFGS: the p x p problem
    if mode != "none" and space is None:
        space = row_space(x_active)
    if mode != "none" and (space.rank == 0 or (reduction != "always" and space.rank >= p)):
        # rank 0 (all-zero training features): no reduced problem; the p x p one is trivial;
        # rank p: nothing to gain
        mode = "none"
    if mode == "none":
        space = None
    x_fit = x_active if space is None else x_active @ space.basis.to(dtype=dtype, device=dev)
    options = dict(regulariser=regulariser, lam=lam, temperature=temperature, path=path)
    if mode == "path":
        objective = PathObjective(x_fit, prep, space, compiled=compiled, **options)
    else:
        objective = TripletObjective(x_fit, prep, fam, compiled=compiled, **options)
    if degenerate is None and fam.name == "zero_shot":
        logits = objective._zero_shot_sims()[prep.slot_pair]
        if bool((logits == logits[:, :1]).all()):
            where = f"{name}: " if name else ""
            degenerate = (
                f"{where}degenerate features for zero-shot: the three similarities are equal "
                "within every triplet, so the scale (temperature) cannot be fitted and stays "
                "at its start; accuracy 1/3 and loss log 3"
            )
    if degenerate is not None:
        warn_once(degenerate)
    p_fit = p if space is None else space.rank
    start = path_start(space, dtype) if mode == "path" else fam.init(p_fit, dtype=dtype, device=dev)
    if init is None:
        theta0 = start
    else:
        theta0 = torch.as_tensor(init).to(dtype=dtype, device=dev)
        expected = tuple(start.shape)
        if tuple(theta0.shape) != expected:
            raise ValueError(f"init has shape {tuple(theta0.shape)}, expected {expected}")
    return ProbeProblem(
        objective, theta0, fam, regulariser, float(lam), float(temperature), p, space, degenerate
    )


def fit_probe(
    features: torch.Tensor | np.ndarray,
    triplets: Triplets | PreparedTriplets,
    *,
    settings: LBFGSSettings | None = None,
    **options,
) -> FittedProbe:
    """Fit W (T stays fixed) to odd-one-out triplets with full-batch L-BFGS.

    Parameters
    ----------
    features : (n_concepts, p) features of every concept the triplets index.
    triplets : the training triplets (or a :class:`PreparedTriplets` reused across fits).
    settings : the optimiser's settings and stopping rule (default: ``converged``;
        ``LBFGSSettings.of("study")`` for the study's rule).
    **options : passed to :func:`build_problem`:

        family, k : flexibility level (``zero_shot``, ``diagonal``, ``rectangular`` with
            ``k``, ``full``; default ``full``).
        regulariser, lam : penalty ``lam * R(W)`` (default ``scalar_shrinkage``, 0);
            ``lam`` is ignored for ``zero_shot``.
        temperature : T of the softmax (kept fixed; default 1).
        dtype, device : float32 on CPU by default; ``device='cuda'`` or ``'auto'``.
        path : objective path (``auto``, ``dense``, ``sparse``).
        reduce : how ``full`` W with ``scalar_shrinkage`` or ``l2`` uses the training
            features' row space when it is smaller than p
            (:func:`~modelrecovery.probe.reduced.reduction_mode`): ``auto`` (the default:
            the reduction at the optimum under the converged rule, the study's p x p path
            computed in the row space under the study's rule; p x p on a GPU or with
            torch's L-BFGS), ``always`` / ``True`` (the reduction at the optimum under
            either rule: under the study's rule a different path, not the study's fit),
            ``path``, ``never`` / ``False`` (p x p). ``space`` reuses a precomputed row space.
        init : starting parameters (warm start, r x r in the reduced parametrisation);
            default the identity.
        compiled : the numba kernel for the per-triplet work on CPU (``False``: array
            operations, the same numbers to rounding).
        name : how error and warning messages name the features (a file, a model).

    Raises ValueError for NaN / infinite features and for features whose similarities
    overflow ``dtype`` (see :func:`check_features`).
    """
    lam = options.pop("lam", 0.0)
    init = options.pop("init", None)
    return fit_path(features, triplets, [lam], settings=settings, init=init, **options)[0]


def fit_path(
    features: torch.Tensor | np.ndarray,
    triplets: Triplets | PreparedTriplets,
    lams: list[float] | tuple[float, ...],
    *,
    warm_start: bool = False,
    settings: LBFGSSettings | None = None,
    **options,
) -> list[FittedProbe]:
    """Fits at every λ of ``lams`` (in the given order) on one problem set up once.

    Each fit starts from the family's start point, or from ``init`` when given (cold);
    with ``warm_start`` every fit after the first starts from the previous fit's solution.
    The validation, compilation and row-space set-up are done once (their time counts in
    the first fit's ``seconds``). :func:`fit_probe` is the one-λ case.
    """
    settings = settings or LBFGSSettings()
    if not len(lams):
        raise ValueError("fit_path needs at least one λ")
    for lam in lams:
        check_lam(lam)
    start = time.perf_counter()
    options.setdefault("stopping", settings.stopping)
    options.setdefault("engine", settings.engine)
    problem = build_problem(features, triplets, lam=float(lams[0]), **options)
    out: list[FittedProbe] = []
    theta = problem.theta0
    for lam in lams:
        problem.lam = float(lam)
        problem.objective.lam = float(lam)
        result = lbfgs_minimise(
            problem.objective, theta if warm_start else problem.theta0, settings
        )
        out.append(
            problem.result(
                result.theta,
                result.history,
                result.iterations,
                result.evaluations,
                result.converged,
                time.perf_counter() - start,
                settings.stopping,
                result.stop_reason,
            )
        )
        theta = result.theta
        start = time.perf_counter()
    return out
