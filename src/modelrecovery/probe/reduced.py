"""Row-space reductions of the full-W problem (docs/science/method.md §2): at the optimum, and
along the study's L-BFGS path.

When the training features X (n x p) have rank r < p, the optimum of the p x p problem
under ``scalar_shrinkage`` or ``l2`` is W = V_r A V_r^T + c (I - V_r V_r^T), where A is the
optimum of the same problem in r dimensions on the rotated features X V_r, and
c = tr(A) / r (scalar shrinkage) or 0 (l2).

Exact only at the optimum: under the study's early-stopping rule the fit is the
optimiser's path, which the rotation changes (:func:`reduction_applies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from modelrecovery.probe.families import Family
from modelrecovery.probe.lbfgs import Coordinates
from modelrecovery.probe.objective import PreparedTriplets, TripletObjective
from modelrecovery.study.spec import REDUCTIONS

REDUCIBLE_REGULARISERS = ("scalar_shrinkage", "l2")
# how full W is fitted when the training features' row space is smaller than p:
#   auto    the exact reduction under the converged rule; under the study's rule
#           STUDY_AUTO (the p x p path, in the row space or as p x p)
#   always  the reduction at the optimum under either rule (under the study's rule: faster,
#           a different path, not the study's fit)
#   path    the p x p path computed in the row space (PathObjective; CPU, lean L-BFGS)
#   never   the p x p problem as p x p
MODES = ("none", "optimum", "path")
STUDY_AUTO = "path"


def reduction_name(reduce: bool | str) -> str:
    """A ``reduce`` argument as a name of :data:`REDUCTIONS` (True: always, False: never)."""
    return {True: "always", False: "never"}.get(reduce, reduce)


def reduction_mode(
    family: str, regulariser: str, stopping: str = "converged", reduction: str = "auto"
) -> str:
    """How a fit of ``family`` / ``regulariser`` under the stopping rule ``stopping`` uses
    the training row space (when it is smaller than p): ``none``, ``optimum`` (the exact
    reduction at the optimum: A in r x r, c = tr(A) / r) or ``path`` (the p x p path).

    The reduction at the optimum is exact for the converged rule (module docstring). Under
    the study's rule the fit is defined by the optimiser's path, and L-BFGS's path is not
    rotation-invariant (its first step min(1, 1/|g|_1) and its max-abs stopping tests
    depend on the coordinates): that reduced fit stops at another point than the p x p fit
    the study ran. ``auto`` therefore follows the p x p path there (:data:`STUDY_AUTO`).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if family != "full" or regulariser not in REDUCIBLE_REGULARISERS or reduction == "never":
        return "none"
    if reduction == "always":
        return "optimum"
    if reduction == "path":
        return "path"
    return "optimum" if stopping == "converged" else STUDY_AUTO


def reduction_applies(
    family: str, regulariser: str, stopping: str = "converged", reduction: str = "auto"
) -> bool:
    """Whether the fit uses the training row space at all (:func:`reduction_mode`)."""
    return reduction_mode(family, regulariser, stopping, reduction) != "none"


@dataclass(frozen=True)
class RowSpace:
    """Orthonormal basis ``basis`` (p x r) of the row space of the training features."""

    basis: torch.Tensor

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])


def row_space(x: torch.Tensor, rtol: float | None = None) -> RowSpace:
    """Row space of ``x`` (n x p) from its SVD, computed in float64.

    Singular values below ``rtol * max(n, p) * s_max`` (default: machine epsilon of
    ``x``'s dtype) count as zero.
    """
    x64 = x.to(torch.float64)
    _, s, vh = torch.linalg.svd(x64, full_matrices=False)
    if rtol is None:
        rtol = torch.finfo(x.dtype).eps
    tol = rtol * max(x.shape) * (s[0] if s.numel() else 0.0)
    r = int((s > tol).sum())
    return RowSpace(basis=vh[:r].T.to(x.dtype).contiguous())


def offset_of(a: torch.Tensor, regulariser: str, offset: float | None = None) -> float:
    """c of W = V A V^T + c (I - V V^T): ``offset`` when given (the path reduction fits it),
    else the optimum's tr(A) / r (scalar shrinkage) or 0 (l2)."""
    if offset is not None:
        return float(offset)
    return float(torch.diagonal(a).sum() / a.shape[0]) if regulariser == "scalar_shrinkage" else 0.0


def expand(
    a: torch.Tensor, space: RowSpace, regulariser: str, offset: float | None = None
) -> tuple[torch.Tensor, float]:
    """The p x p matrix's parts from ``a`` (r x r): (V A V^T, c) (see :func:`offset_of`)."""
    if regulariser not in REDUCIBLE_REGULARISERS:
        raise ValueError(f"the reduction holds for {REDUCIBLE_REGULARISERS}, not {regulariser!r}")
    c = offset_of(a, regulariser, offset)
    v = space.basis.to(a.dtype)
    return v @ a @ v.T, c


def full_matrix(
    a: torch.Tensor, space: RowSpace, regulariser: str, offset: float | None = None
) -> torch.Tensor:
    """W = V_r A V_r^T + c (I - V_r V_r^T) as a dense p x p matrix."""
    inner, c = expand(a, space, regulariser, offset)
    v = space.basis.to(a.dtype)
    w = inner - c * (v @ v.T)
    w.diagonal().add_(c)
    return w


# ------------------------------------------------------------------------------------------
# The p x p path in the row space (reduction "path")
# ------------------------------------------------------------------------------------------
#
# From W = I, every gradient of the p x p problem (NLL + λ R, R = scalar shrinkage or l2)
# lies in the set {V A V^T + c (I - V V^T)} (the NLL's gradient is X^T B X W and X^T B X
# lives in the row space; the penalty's gradient is a combination of W and I), and so does
# every L-BFGS direction (a combination of gradients and steps): the iterates never leave
# it. With u = (vec(A), sqrt(p - r) c) the Euclidean inner products of u are the Frobenius
# inner products of the p x p matrices, so L-BFGS on u computes the same directions, step
# sizes and losses as on W. Torch's rule also uses coordinate-dependent quantities (the L1
# norm of the first gradient, max-abs tests of the gradient and of the step): those are
# taken over the p x p matrices u stands for (:class:`PathGeometry`). In exact arithmetic
# this is the study's p x p path; its float32 rounding differs (tests measure how much).


def path_start(space: RowSpace, dtype: torch.dtype) -> torch.Tensor:
    """u of W = I: A = I_r, c = 1."""
    r, p = space.rank, space.dim
    a = torch.eye(r, dtype=dtype)
    return torch.cat([a.reshape(-1), torch.tensor([(p - r) ** 0.5], dtype=dtype)])


def path_parts(u: torch.Tensor, space: RowSpace) -> tuple[torch.Tensor, float]:
    """(A, c) of a path vector u."""
    r, p = space.rank, space.dim
    return u[: r * r].reshape(r, r), float(u[r * r]) / (p - r) ** 0.5


class PathGeometry(Coordinates):
    """The L1 norm and max-abs entry of the p x p matrix V A V^T + c (I - V V^T) a path
    vector stands for (see :class:`~modelrecovery.probe.lbfgs.Coordinates`).

    The Frobenius norm of that matrix is the Euclidean norm of u, so max |entry| lies in
    [|u| / p, |u|]: the tests are settled from those bounds when they can be, and from the
    matrix, formed by blocks of rows, otherwise."""

    def __init__(self, space: RowSpace, dtype: torch.dtype, block: int = 128) -> None:
        self.basis = space.basis.to(dtype)
        self.rank, self.dim = space.rank, space.dim
        self.dtype = dtype
        self.block = block
        # max_i |v_i|^2 over the rows of V (the largest leverage of a coordinate)
        self.leverage = float((self.basis.double() ** 2).sum(1).max())
        self.exact_calls = 0  # how often the matrix had to be formed
        self._hot: torch.Tensor | None = None  # rows that held the largest entries
        self._sums: dict[bytes, float] = {}

    def _blocks(self, v: np.ndarray, block: int | None = None):
        """The p x p matrix's row blocks, one at a time (so a test can stop early)."""
        self.exact_calls += 1
        shifted, c = self._parts(v)
        p, block = self.dim, block or self.block
        for start in range(0, p, block):
            stop = min(start + block, p)
            rows = (self.basis[start:stop] @ shifted) @ self.basis.T
            rows[torch.arange(stop - start), torch.arange(start, stop)] += c
            yield rows

    def abs_max(self, v: np.ndarray) -> float:
        return max(float(rows.abs().max()) for rows in self._blocks(v))

    def abs_sum(self, v: np.ndarray) -> float:
        """L1 norm (taken once per fit, of its first gradient; a fit path's λ often share
        it: remembered for the last few vectors)."""
        key = np.asarray(v).tobytes()
        if key not in self._sums:
            if len(self._sums) >= 4:
                self._sums.pop(next(iter(self._sums)))
            self._sums[key] = sum(float(rows.abs().sum()) for rows in self._blocks(v, 1024))
        return self._sums[key]

    def abs_max_bounds(self, v: np.ndarray) -> tuple[float, float]:
        """|u| / p <= max |entry| <= min(|u|, |c| + |A - c I|_F max_i |v_i|^2): the
        Frobenius norm of the matrix is |u|, and entry (i, j) is c [i = j] +
        v_i^T (A - c I) v_j with v_i the rows of V."""
        u = np.asarray(v, dtype=np.float64)
        r, q = self.rank, self.dim - self.rank
        norm = float(np.linalg.norm(u))
        c = u[r * r] / q**0.5
        a = u[: r * r].reshape(r, r)
        trace = float(np.trace(a))
        shifted = float(np.sqrt(max(float(a.ravel() @ a.ravel()) - 2 * c * trace + r * c * c, 0)))
        high = min(norm, abs(c) + shifted * self.leverage)
        # a relative margin for the rounding of the formed matrix against the bounds
        return norm / self.dim * (1 - 1e-4), high * (1 + 1e-4)

    def _parts(self, v: np.ndarray) -> tuple[torch.Tensor, float]:
        """(A - c I, c): the matrix is V (A - c I) V^T + c I."""
        r, p = self.rank, self.dim
        u = torch.from_numpy(np.asarray(v)).to(self.dtype)
        shifted = u[: r * r].reshape(r, r).clone()
        c = float(u[r * r]) / (p - r) ** 0.5
        shifted.diagonal().sub_(c)
        return shifted, c

    def _rows(self, shifted: torch.Tensor, c: float, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` of the matrix (r^2 + r p work each)."""
        rows = (self.basis[index] @ shifted) @ self.basis.T
        rows[torch.arange(len(index)), index] += c
        return rows

    def _exactly_below(self, v: np.ndarray, factor: float, below) -> bool:
        """Cheapest first, each settling "no" when an entry is too large: the rows that
        held the largest entries last time (the maxima move little between iterations),
        the diagonal (p r^2 work; the largest entries mostly lie there), then the matrix
        block by block."""
        shifted, c = self._parts(v)
        if self._hot is not None:
            if not below(float(self._rows(shifted, c, self._hot).abs().max()) * factor):
                return False
        left = self.basis @ shifted  # rows v_i^T (A - c I)
        diagonal = ((left * self.basis).sum(1) + c).abs()
        self._hot = torch.topk(diagonal, min(4, self.dim)).indices
        if not below(float(diagonal.max()) * factor):
            return False
        # |v_i^T (A - c I) v_j| <= |v_i^T (A - c I)| |v_j| (Cauchy-Schwarz)
        high = abs(c) + float(torch.linalg.vector_norm(left, dim=1).max()) * self.leverage**0.5
        if below(high * (1 + 1e-4) * factor):
            return True
        for rows in self._blocks(v):
            if not below(float(rows.abs().max()) * factor):
                return False
        return True


class PathObjective:
    """The p x p problem's loss and gradient on path vectors u = (vec(A), sqrt(p - r) c)
    (module notes above): the NLL depends on A alone (the training features have no part
    outside the row space), the penalty on the whole W = V A V^T + c (I - V V^T), in the
    centred form of :func:`~modelrecovery.probe.families.penalty`:
    ||W - g I||^2 = ||A - g I_r||^2 + (p - r)(c - g)^2 with g = tr(W) / p, or ||W||^2 for l2.

    ``x_fit`` are the active concepts' rotated features X V (n_active x r). CPU only (the
    lean L-BFGS takes the geometry; torch's cannot)."""

    def __init__(
        self,
        x_fit: torch.Tensor,
        prep: PreparedTriplets,
        space: RowSpace,
        regulariser: str = "scalar_shrinkage",
        lam: float = 0.0,
        temperature: float = 1.0,
        path: str = "auto",
        compiled: bool = True,
    ) -> None:
        if regulariser not in REDUCIBLE_REGULARISERS:
            raise ValueError(f"the path holds for {REDUCIBLE_REGULARISERS}, not {regulariser!r}")
        if space.rank >= space.dim:
            raise ValueError("the path reduction needs a row space smaller than p")
        self.nll = TripletObjective(
            x_fit, prep, Family("full"), regulariser, 0.0, temperature, path, compiled
        )
        self.space = space
        self.regulariser = regulariser
        self.lam = float(lam)
        self.geometry = PathGeometry(space, x_fit.dtype)

    @property
    def path(self) -> str:
        return self.nll.path

    @property
    def prep(self) -> PreparedTriplets:
        return self.nll.prep

    def reshuffle(self, step: int) -> None:
        """The study's per-step loss order (:meth:`TripletObjective.reshuffle`)."""
        self.nll.reshuffle(step)

    def to(self, device: torch.device | str) -> PathObjective:
        if torch.device(device).type != "cpu":
            raise ValueError("the path reduction runs on CPU (the lean L-BFGS)")
        return self

    def _penalty(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r, q = self.space.rank, self.space.dim - self.space.rank
        a = u[: r * r].reshape(r, r)
        s = u[r * r]
        if self.regulariser == "l2":
            return (a * a).sum() + s * s, 2.0 * u
        c64 = s.to(torch.float64) / q**0.5
        trace = torch.diagonal(a).sum(dtype=torch.float64) + q * c64
        g = (trace / self.space.dim).to(u.dtype)
        centred = a.clone()
        centred.diagonal().sub_(g)
        off = (s / q**0.5 - g).reshape(1)
        value = (centred * centred).sum() + q * (off * off).sum()
        grad = torch.cat([2.0 * centred.reshape(-1), 2.0 * q**0.5 * off])
        return value, grad

    def loss_and_grad(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (NLL + λ R) and its gradient with respect to u."""
        r = self.space.rank
        nll, grad_a = self.nll.loss_and_grad(u[: r * r].reshape(r, r))
        grad = torch.cat([grad_a.reshape(-1), grad_a.new_zeros(1)])
        if self.lam > 0:
            value, reg_grad = self._penalty(u)
            return nll + self.lam * value, grad + self.lam * reg_grad
        return nll, grad

    def nll_and_penalty(self, u: torch.Tensor) -> tuple[float, float]:
        """Mean NLL and R (not multiplied by λ) at u."""
        r = self.space.rank
        nll, _ = self.nll.nll_and_penalty(u[: r * r].reshape(r, r))
        return nll, float(self._penalty(u)[0])
