"""Exact row-space reduction of the full-W problem (method.md section 2).

When the training features X (n x p) have rank r < p, the optimum of the p x p problem
under ``scalar_shrinkage`` or ``l2`` is W = V_r A V_r^T + c (I - V_r V_r^T), where A is the
optimum of the same problem in r dimensions on the rotated features X V_r, and
c = tr(A) / r (scalar shrinkage) or 0 (l2).

Exact only at the optimum: under the study's early-stopping rule the fit is the
optimiser's path, which the rotation changes (:func:`reduction_applies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REDUCIBLE_REGULARISERS = ("scalar_shrinkage", "l2")
# when full W is fitted in the training row space: ``auto`` under the converged rule only
# (exact at the optimum), ``always`` (under the study's rule too: a different path, not the
# study's fit), ``never`` (the p x p problem, as the study fitted it)
REDUCTIONS = ("auto", "always", "never")


def reduction_applies(
    family: str, regulariser: str, stopping: str = "converged", reduction: str = "auto"
) -> bool:
    """Whether a fit of ``family`` / ``regulariser`` under the stopping rule ``stopping``
    runs in the training row space (when that space is smaller than p).

    The reduction is exact at the optimum (module docstring), so ``auto`` uses it under
    the ``converged`` rule. Under the study's rule the fit is defined by the optimiser's
    path, and L-BFGS's path is not rotation-invariant (its first step min(1, 1/|g|_1) and
    its max-abs stopping tests depend on the coordinates): the reduced fit stops at
    another point than the p x p fit the study ran, so ``auto`` fits p x p there;
    ``always`` takes the reduction anyway (faster, a different estimator), ``never``
    never takes it.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if family != "full" or regulariser not in REDUCIBLE_REGULARISERS or reduction == "never":
        return False
    return reduction == "always" or stopping == "converged"


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


def expand(a: torch.Tensor, space: RowSpace, regulariser: str) -> tuple[torch.Tensor, float]:
    """The p x p optimum's parts from the reduced optimum ``a`` (r x r): (V A V^T, c)."""
    if regulariser not in REDUCIBLE_REGULARISERS:
        raise ValueError(f"the reduction holds for {REDUCIBLE_REGULARISERS}, not {regulariser!r}")
    c = float(torch.diagonal(a).sum() / a.shape[0]) if regulariser == "scalar_shrinkage" else 0.0
    v = space.basis.to(a.dtype)
    return v @ a @ v.T, c


def full_matrix(a: torch.Tensor, space: RowSpace, regulariser: str) -> torch.Tensor:
    """W = V_r A V_r^T + c (I - V_r V_r^T) as a dense p x p matrix."""
    inner, c = expand(a, space, regulariser)
    v = space.basis.to(a.dtype)
    w = inner - c * (v @ v.T)
    w.diagonal().add_(c)
    return w
