"""Full-batch L-BFGS fit of the probe, and predictions of a fitted probe.

The stopping rule is the study's: L-BFGS steps (strong-Wolfe line search, history 50,
up to 150 iterations each) repeated until the relative change of the loss between steps
falls below 1e-7, at most 100 steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.families import REGULARISERS, Family
from modelrecovery.probe.objective import PreparedTriplets, TripletObjective
from modelrecovery.probe.reduced import REDUCIBLE_REGULARISERS, RowSpace, full_matrix, row_space


@dataclass(frozen=True)
class LBFGSSettings:
    """The optimiser's settings (defaults: the study's)."""

    history_size: int = 50
    max_iter: int = 150
    max_repeats: int = 100
    rel_tol: float = 1e-7
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9


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

    def matrix(self) -> torch.Tensor:
        """W in the original feature space."""
        if self.space is not None:
            return full_matrix(self.theta, self.space, self.regulariser)
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
        c = (
            float(torch.diagonal(self.theta).sum()) / self.space.rank
            if self.regulariser == "scalar_shrinkage"
            else 0.0
        )
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


def compact(
    features: torch.Tensor | np.ndarray, triplets: Triplets
) -> tuple[torch.Tensor, Triplets]:
    """The rows of ``features`` that ``triplets`` use, and the triplets re-indexed to them."""
    concepts, local = np.unique(triplets.ids, return_inverse=True)
    x = torch.as_tensor(features)[torch.from_numpy(concepts)]
    return x, Triplets(local.reshape(-1, 3), triplets.odd, max(3, len(concepts)))


def _triplet_logits(z: torch.Tensor, triplets: Triplets, temperature: float) -> torch.Tensor:
    ids = torch.as_tensor(triplets.ids.astype(np.int64), device=z.device)
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


def accuracy_and_nll(
    z: torch.Tensor, triplets: Triplets, temperature: float = 1.0
) -> dict[str, float]:
    """Share of triplets whose most probable odd one is the response, and mean NLL."""
    if len(triplets) == 0:
        return {"accuracy": math.nan, "nll": math.nan}
    with torch.no_grad():
        logits = _triplet_logits(z, triplets, temperature)
        odd = torch.as_tensor(triplets.odd.astype(np.int64), device=z.device)
        rows = torch.arange(len(triplets), device=z.device)
        nll = (torch.logsumexp(logits, 1) - logits[rows, odd]).mean()
        accuracy = (logits.argmax(1) == odd).to(torch.float64).mean()
    return {"accuracy": float(accuracy), "nll": float(nll)}


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (error if unavailable) or ``auto`` (CUDA when available)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
    return device


def lbfgs_minimise(
    objective: TripletObjective, theta0: torch.Tensor, settings: LBFGSSettings
) -> tuple[torch.Tensor, list[float], int, int, bool]:
    """Repeated L-BFGS steps until the relative loss change < ``settings.rel_tol``.

    Returns the parameters, the loss after each step (first entry: at ``theta0``), the
    number of L-BFGS iterations and objective evaluations, and whether the rule was met.
    """
    param = torch.nn.Parameter(theta0.detach().clone())
    optimiser = torch.optim.LBFGS(
        [param],
        lr=1.0,
        max_iter=settings.max_iter,
        history_size=settings.history_size,
        line_search_fn="strong_wolfe",
        tolerance_grad=settings.tolerance_grad,
        tolerance_change=settings.tolerance_change,
    )
    step = make_step(objective, param, optimiser)
    history = [float(objective.loss_and_grad(param.detach())[0])]
    extra_evals = 1
    converged = False
    best = (history[0], param.detach().clone())
    for _ in range(settings.max_repeats):
        loss = step()
        extra_evals += 1
        if not math.isfinite(loss):
            break
        history.append(loss)
        if loss <= best[0]:
            best = (loss, param.detach().clone())
        previous = history[-2]
        if abs(previous - loss) <= settings.rel_tol * max(abs(previous), 1e-30):
            converged = True
            break
    state = optimiser.state[optimiser.param_groups[0]["params"][0]]
    iterations = int(state.get("n_iter", 0))
    evaluations = int(state.get("func_evals", 0)) + extra_evals
    return best[1], history, iterations, evaluations, converged


def make_step(objective: TripletObjective, param: torch.nn.Parameter, optimiser: torch.optim.LBFGS):
    """One L-BFGS step with the hand-derived gradient; returns the loss after the step."""

    def closure() -> torch.Tensor:
        loss, grad = objective.loss_and_grad(param.detach())
        param.grad = grad
        return loss

    def step() -> float:
        optimiser.step(closure)
        with torch.no_grad():
            return float(objective.loss_and_grad(param.detach())[0])

    return step


@dataclass
class ProbeProblem:
    """Everything a fit needs: the objective, the start point and how to map back to W."""

    objective: TripletObjective
    theta0: torch.Tensor
    family: Family
    regulariser: str
    lam: float
    temperature: float
    p: int
    space: RowSpace | None

    def result(
        self,
        theta: torch.Tensor,
        history: list[float],
        iterations: int,
        evaluations: int,
        converged: bool,
        seconds: float,
    ) -> FittedProbe:
        """A :class:`FittedProbe` from optimised parameters."""
        return FittedProbe(
            family=self.family,
            regulariser=self.regulariser,
            lam=self.lam,
            temperature=self.temperature,
            theta=theta.detach(),
            p=self.p,
            space=self.space,
            loss_history=history,
            iterations=iterations,
            evaluations=evaluations,
            converged=converged,
            seconds=seconds,
            path=self.objective.path,
        )


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
) -> ProbeProblem:
    """Validate the inputs and set up one probe problem (see :func:`fit_probe`)."""
    fam = family if isinstance(family, Family) else Family(family, k)
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
    if not (isinstance(lam, int | float) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    dev = resolve_device(device)
    x = torch.as_tensor(features).to(dtype=dtype, device=dev)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_concepts, p), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    prep = (
        triplets.to(dev)
        if isinstance(triplets, PreparedTriplets)
        else PreparedTriplets.from_triplets(triplets, device=dev)
    )
    if int(prep.concepts.max()) >= x.shape[0]:
        raise ValueError(
            f"triplets index concept {int(prep.concepts.max())} but features have {x.shape[0]} rows"
        )
    p = int(x.shape[1])
    x_active = x[prep.concepts]
    use_reduction = (
        fam.name == "full" and regulariser in REDUCIBLE_REGULARISERS and reduce in (True, "auto")
    )
    if use_reduction and space is None:
        space = row_space(x_active)
    if use_reduction and reduce == "auto" and space.rank >= p:
        use_reduction = False
    if use_reduction:
        x_fit = x_active @ space.basis.to(dtype=dtype, device=dev)
        p_fit = space.rank
    else:
        space, x_fit, p_fit = None, x_active, p
    objective = TripletObjective(
        x_fit, prep, fam, regulariser=regulariser, lam=lam, temperature=temperature, path=path
    )
    if init is None:
        theta0 = fam.init(p_fit, dtype=dtype, device=dev)
    else:
        theta0 = torch.as_tensor(init).to(dtype=dtype, device=dev)
        expected = tuple(fam.init(p_fit, dtype=dtype, device="cpu").shape)
        if tuple(theta0.shape) != expected:
            raise ValueError(f"init has shape {tuple(theta0.shape)}, expected {expected}")
    return ProbeProblem(
        objective, theta0, fam, regulariser, float(lam), float(temperature), p, space
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
    settings : the optimiser's settings (default: the study's).
    **options : passed to :func:`build_problem`:

        family, k : flexibility level (``zero_shot``, ``diagonal``, ``rectangular`` with
            ``k``, ``full``; default ``full``).
        regulariser, lam : penalty ``lam * R(W)`` (default ``scalar_shrinkage``, 0);
            ``lam`` is ignored for ``zero_shot``.
        temperature : T of the softmax (kept fixed; default 1).
        dtype, device : float32 on CPU by default; ``device='cuda'`` or ``'auto'``.
        path : objective path (``auto``, ``dense``, ``sparse``).
        reduce : the exact row-space reduction for ``full`` W with ``scalar_shrinkage`` or
            ``l2`` when the training features' rank is below p (``auto``), always
            (``True``) or never (``False``); ``space`` reuses a precomputed row space.
        init : starting parameters (warm start, r x r in the reduced parametrisation);
            default the identity.
    """
    start = time.perf_counter()
    problem = build_problem(features, triplets, **options)
    theta, history, iterations, evaluations, converged = lbfgs_minimise(
        problem.objective, problem.theta0, settings or LBFGSSettings()
    )
    return problem.result(
        theta, history, iterations, evaluations, converged, time.perf_counter() - start
    )
