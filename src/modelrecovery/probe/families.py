"""Flexibility levels of the probe (how W is parametrised) and their regularisers.

Every family maps a parameter tensor ``theta`` to transformed features ``Z = X W`` and maps
a gradient with respect to ``Z`` back to a gradient with respect to ``theta``. Regularisers
return their value and gradient; both are written by hand (no autograd in the hot path)
and checked against autograd in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelrecovery.study.spec import FAMILIES, REGULARISERS, Level

__all__ = ["FAMILIES", "REGULARISERS", "Family"]


@dataclass(frozen=True)
class Family:
    """A flexibility level: ``zero_shot``, ``diagonal``, ``rectangular`` (p x k) or ``full``.

    ``zero_shot`` keeps W = exp(rho / 2) I with one parameter rho (equivalent to fitting the
    temperature: T_eff = T exp(-rho)); it is never penalised. The log scale keeps the
    similarity scale positive and has no stationary point at W = 0 (a plain scalar s does:
    the loss depends on s**2, and L-BFGS can stop there).
    """

    name: str
    k: int | None = None

    def __post_init__(self) -> None:
        Level(self.name, self.k)  # the vocabulary's check (one line)

    @classmethod
    def of(cls, level: Level) -> Family:
        """The mathematics of a level."""
        return cls(level.family, level.k)

    def init(self, p: int, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
        """Parameters at the identity (first k coordinates for ``rectangular``)."""
        if self.name == "zero_shot":
            return torch.zeros(1, dtype=dtype, device=device)
        if self.name == "diagonal":
            return torch.ones(p, dtype=dtype, device=device)
        if self.name == "rectangular":
            if self.k > p:
                raise ValueError(f"rectangular k={self.k} exceeds the feature dimension p={p}")
            return torch.eye(p, self.k, dtype=dtype, device=device)
        return torch.eye(p, dtype=dtype, device=device)

    def transform(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Z = X W."""
        if self.name == "zero_shot":
            return x * torch.exp(0.5 * theta)
        if self.name == "diagonal":
            return x * theta
        return x @ theta

    def backward(self, x: torch.Tensor, dz: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """dL/dtheta from dL/dZ."""
        if self.name == "zero_shot":
            return ((x * dz).sum() * 0.5 * torch.exp(0.5 * theta)).reshape(1)
        if self.name == "diagonal":
            return (x * dz).sum(dim=0)
        return x.T @ dz

    def matrix(self, theta: torch.Tensor, p: int) -> torch.Tensor:
        """W as a matrix (p x p, or p x k for ``rectangular``)."""
        if self.name == "zero_shot":
            return torch.exp(0.5 * theta) * torch.eye(p, dtype=theta.dtype, device=theta.device)
        if self.name == "diagonal":
            return torch.diag(theta)
        return theta


def penalty(
    family: Family, regulariser: str, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """R(theta) and its gradient (not multiplied by lambda).

    ``scalar_shrinkage``: min_g ||W - g I||_F^2 = ||W||_F^2 - tr(W)^2 / p (diagonal: the same on
    the diagonal vector); rectangular W (p x k): ||W W^T - c I_p||_F^2 with c = tr(W^T W) / p,
    i.e. ||W^T W||_F^2 - tr(W^T W)^2 / p. ``l2``: ||W||_F^2. ``l1``: sum |W_ij| (subgradient
    sign(W)). ``zero_shot`` has no penalty.
    """
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
    if family.name == "zero_shot":
        return theta.new_zeros(()), torch.zeros_like(theta)
    if regulariser == "l2":
        return (theta * theta).sum(), 2.0 * theta
    if regulariser == "l1":
        return theta.abs().sum(), torch.sign(theta)
    # Computed as sums of squares of centred quantities, never as a difference of two large
    # numbers: ||W||^2 - tr(W)^2 / p cancels catastrophically near W = gamma I in float32.
    p = theta.shape[0]
    if family.name == "diagonal":
        centred = theta - _mean(theta.sum(dtype=torch.float64), p, theta.dtype)
        return (centred * centred).sum(), 2.0 * centred
    if family.name == "full":
        centred = theta.clone()
        gamma = _mean(torch.diagonal(theta).sum(dtype=torch.float64), p, theta.dtype)
        centred.diagonal().sub_(gamma)
        return (centred * centred).sum(), 2.0 * centred
    # rectangular: ||W W^T - c I_p||^2 = ||W^T W - c I_k||^2 + c^2 (p - k), c = tr(W^T W) / p
    k = theta.shape[1]
    gram = theta.T @ theta  # k x k
    c = _mean(torch.diagonal(gram).sum(dtype=torch.float64), p, theta.dtype)
    shifted = gram.clone()
    shifted.diagonal().sub_(c)
    value = (shifted * shifted).sum() + c * c * (p - k)
    return value, 4.0 * (theta @ shifted)


def _mean(total: torch.Tensor, count: int, dtype: torch.dtype) -> torch.Tensor:
    """``total / count`` (accumulated in float64) in ``dtype``."""
    return (total / count).to(dtype)
