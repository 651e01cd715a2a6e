"""The probe's objective in similarity space: mean triplet NLL + lambda R(W).

For a triplet (a, b, c) the logits are (S_bc, S_ac, S_ab) / T with S = Z Z^T and Z = X W.
With g = (softmax - onehot) / (m T) per triplet, the gradient of the mean NLL with
respect to S is a sparse matrix G that has g's entries at the triplets' pairs; then
dL/dZ = (G + G^T) Z and dL/dW follows from the family (X^T dL/dZ for a matrix W).

Two exact paths compute the same numbers:
- ``dense``: all similarities of the active concepts (S = Z Z^T), for many triplets;
- ``sparse``: only the similarities of the pairs the triplets use (row-wise dot products)
  and a sparse (CSR) product for the gradient, for few triplets.
Work that depends only on the triplets (compact concept indices, unique pairs, the CSR
pattern) is done once in :class:`PreparedTriplets` and shared by every fit on that set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.families import Family, penalty
from modelrecovery.probe.kernels import nll_slot_grad_cpu

_CHUNK = 1 << 16
_TILE = 128
# the pair form of the diagonal objective is used when the triplets' pairs are at most
# 1/8 of all n^2 (ordered) pairs and the pair-product matrix stays small (64 MB in float32):
# on the default world's sizes (n = 168, p = 768) whole fits ran 2.5x faster at N = 40 and
# 1.4x at N = 400; at N = 4000 the pairs are too many and the dense form is used
DIAGONAL_PAIRS_RATIO = 8
DIAGONAL_PAIRS_MAX_ELEMENTS = 1 << 24


@dataclass
class PreparedTriplets:
    """Triplets compiled for the objective (independent of features and W).

    Attributes
    ----------
    concepts : (n_active,) global indices of the concepts the triplets use (sorted).
    slot_pair : (m, 3) index of the unique pair behind each logit (pairs bc, ac, ab).
    pair_rows, pair_cols : (n_pairs,) local concept indices of each unique pair (row < col).
    odd : (m,) odd-one-out positions.
    source_rows : (m,) the row of the input triplets behind each compiled row (the compiled
        order is canonical; :func:`step_order` maps the study's per-step order onto it).
    """

    concepts: torch.Tensor
    slot_pair: torch.Tensor
    pair_rows: torch.Tensor
    pair_cols: torch.Tensor
    odd: torch.Tensor
    source_rows: torch.Tensor | None = None
    _csr: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    _numpy_slots: tuple[np.ndarray, np.ndarray] | None = None
    _flat_slots: np.ndarray | None = None

    @property
    def n_active(self) -> int:
        return int(self.concepts.shape[0])

    @property
    def n_triplets(self) -> int:
        return int(self.odd.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.pair_rows.shape[0])

    @classmethod
    def from_triplets(
        cls, triplets: Triplets, device: torch.device | str = "cpu"
    ) -> PreparedTriplets:
        """Compile ``triplets`` (must be non-empty)."""
        if len(triplets) == 0:
            raise ValueError("cannot fit or evaluate a probe on an empty triplet set")
        # Canonical order (ids ascending within rows, rows sorted) changes no sum but makes
        # the per-triplet gathers and scatters far more cache-friendly. torch's sort-based
        # unique is several times faster than NumPy's here (millions of keys).
        raw = torch.from_numpy(triplets.ids.astype(np.int64))
        ids, order = torch.sort(raw, dim=1, stable=True)
        odd_sorted = (order == torch.from_numpy(triplets.odd.astype(np.int64))[:, None]).int()
        odd_sorted = odd_sorted.argmax(dim=1)
        concepts, local = torch.unique(ids, return_inverse=True)
        n = concepts.numel()
        a, b, c = local[:, 0], local[:, 1], local[:, 2]
        # rows grouped by tiles of _TILE concepts (then by a, b, c): the pairs a tile touches
        # lie in three _TILE x _TILE blocks of S, which stay in cache
        nt = (n + _TILE - 1) // _TILE
        tile = ((a // _TILE) * nt + b // _TILE) * nt + c // _TILE
        rows = torch.argsort(tile * (n * n * n) + (a * n + b) * n + c)
        a, b, c, odd_sorted = a[rows], b[rows], c[rows], odd_sorted[rows]
        # pairs (b, c), (a, c), (a, b) with a < b < c: the smaller index comes first
        slot_keys = torch.stack([b * n + c, a * n + c, a * n + b], dim=1)
        keys, slot_pair = torch.unique(slot_keys.reshape(-1), return_inverse=True)
        as_t = lambda arr: arr.contiguous().to(device)  # noqa: E731
        return cls(
            concepts=as_t(concepts),
            slot_pair=as_t(slot_pair.reshape(-1, 3)),
            pair_rows=as_t(keys // n),
            pair_cols=as_t(keys % n),
            odd=as_t(odd_sorted),
            source_rows=as_t(rows),
        )

    def to(self, device: torch.device | str) -> PreparedTriplets:
        """The same triplets on ``device`` (self if already there)."""
        if self.odd.device == torch.device(device):
            return self
        return PreparedTriplets(
            concepts=self.concepts.to(device),
            slot_pair=self.slot_pair.to(device),
            pair_rows=self.pair_rows.to(device),
            pair_cols=self.pair_cols.to(device),
            odd=self.odd.to(device),
            source_rows=None if self.source_rows is None else self.source_rows.to(device),
        )

    def numpy_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """``slot_pair`` and ``odd`` as NumPy arrays for the compiled CPU kernel."""
        if self._numpy_slots is None:
            self._numpy_slots = (
                self.slot_pair.cpu().numpy(),
                self.odd.cpu().numpy().astype(np.int8),
            )
        return self._numpy_slots

    def flat_slots(self) -> np.ndarray:
        """(m, 3) int32/int64 flat index r * n_active + c (r < c) of each logit's pair in S."""
        if self._flat_slots is None:
            n = self.n_active
            flat = self.pair_rows.cpu() * n + self.pair_cols.cpu()
            dtype = torch.int32 if n * n < 2**31 else torch.int64
            self._flat_slots = flat[self.slot_pair.cpu()].to(dtype).numpy()
        return self._flat_slots

    def csr_pattern(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CSR structure of the symmetric pair matrix: (crow, col, order of values)."""
        if self._csr is None:
            rows = torch.cat([self.pair_rows, self.pair_cols])
            cols = torch.cat([self.pair_cols, self.pair_rows])
            order = torch.argsort(rows * self.n_active + cols)
            counts = torch.bincount(rows, minlength=self.n_active)
            crow = torch.zeros(self.n_active + 1, dtype=torch.int64, device=rows.device)
            crow[1:] = torch.cumsum(counts, 0)
            self._csr = (crow, cols[order].contiguous(), order)
        return self._csr


def step_order(prep: PreparedTriplets, step: int) -> torch.Tensor:
    """The compiled rows in the order the study's loop sums them at step ``step`` (0-based).

    The published scripts reshuffle the training triplets before every L-BFGS step with
    ``torch.manual_seed(step)`` and ``torch.randperm(m)``; the permutation here comes from
    a CPU generator seeded the same way (the global RNG is left alone), i.e. the scripts'
    order on CPU (their GPU runs drew it from the CUDA generator: another permutation of
    the same kind)."""
    m = prep.n_triplets
    if prep.source_rows is None:
        raise ValueError("these prepared triplets do not know their input order")
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(int(step)))
    compiled_of_input = torch.empty(m, dtype=torch.int64)
    compiled_of_input[prep.source_rows.cpu()] = torch.arange(m)
    return compiled_of_input[perm].to(prep.odd.device)


def choose_path(n_active: int, n_triplets: int) -> str:
    """``dense`` unless the triplets are very few for the number of concepts.

    Measured on 2 CPU cores (benchmarks/probe_objective.py, q = 865): the per-triplet path
    costs about 8.6 ns per triplet and feature, the dense products about 0.017 ns per flop
    of 2 n^2 q, so the sparse path wins only when n_active^2 > 256 m.
    """
    return "dense" if n_active * n_active <= 256 * n_triplets else "sparse"


def pair_similarities(z: torch.Tensor, prep: PreparedTriplets, path: str) -> torch.Tensor:
    """S at every unique pair of ``prep``."""
    if path == "dense":
        s = z @ z.T
        return s[prep.pair_rows, prep.pair_cols]
    out = torch.empty(prep.n_pairs, dtype=z.dtype, device=z.device)
    for start in range(0, prep.n_pairs, _CHUNK):
        stop = min(start + _CHUNK, prep.n_pairs)
        out[start:stop] = (z[prep.pair_rows[start:stop]] * z[prep.pair_cols[start:stop]]).sum(1)
    return out


def logits_of(pair_sims: torch.Tensor, prep: PreparedTriplets, temperature: float) -> torch.Tensor:
    """(m, 3) logits: similarity of the other two items over T, per position."""
    return pair_sims[prep.slot_pair] / temperature


def nll_and_pair_grad(
    pair_sims: torch.Tensor, prep: PreparedTriplets, temperature: float, compiled: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL and its gradient with respect to each unique pair's similarity.

    On CPU the compiled kernel (:mod:`modelrecovery.probe.kernels`) does it in one pass;
    elsewhere (or with ``compiled=False``) array operations compute the same numbers.
    """
    if compiled and pair_sims.device.type == "cpu":
        slot_pair, odd = prep.numpy_slots()
        nll, grad = nll_slot_grad_cpu(pair_sims.numpy(), slot_pair, odd, temperature)
        return torch.tensor(nll, dtype=pair_sims.dtype), torch.from_numpy(grad)
    logits = logits_of(pair_sims, prep, temperature)
    lse = torch.logsumexp(logits, dim=1)
    rows = torch.arange(prep.n_triplets, device=logits.device)
    nll = (lse - logits[rows, prep.odd]).mean()
    g = torch.exp(logits - lse[:, None])
    g[rows, prep.odd] -= 1.0
    g /= prep.n_triplets * temperature
    grad_pairs = torch.zeros(prep.n_pairs, dtype=g.dtype, device=g.device)
    grad_pairs.index_add_(0, prep.slot_pair.reshape(-1), g.reshape(-1))
    return nll, grad_pairs


def nll_and_grad_z(
    z: torch.Tensor, prep: PreparedTriplets, path: str, temperature: float, compiled: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL and dL/dZ for transformed features ``z`` of the active concepts.

    On CPU the dense path runs one compiled pass that reads S and writes G at the pairs'
    flat positions directly (triplets are grouped by concept tiles, so the blocks of S and
    G in use stay in cache), skipping the gather and scatter through the pair list.
    """
    if compiled and path == "dense" and z.device.type == "cpu":
        n = prep.n_active
        s = z @ z.T
        _, odd = prep.numpy_slots()
        flat = s.reshape(-1).numpy()
        nll, g = nll_slot_grad_cpu(flat, prep.flat_slots(), odd, temperature, symmetric_n=n)
        return torch.tensor(nll, dtype=z.dtype), torch.from_numpy(g).view(n, n) @ z
    sims = pair_similarities(z, prep, path)
    nll, grad_pairs = nll_and_pair_grad(sims, prep, temperature, compiled)
    return nll, grad_z(z, grad_pairs, prep, path)


def grad_z(
    z: torch.Tensor, grad_pairs: torch.Tensor, prep: PreparedTriplets, path: str
) -> torch.Tensor:
    """dL/dZ = (G + G^T) Z for the pair gradient G."""
    n = prep.n_active
    if path == "dense":
        g = torch.zeros(n, n, dtype=z.dtype, device=z.device)
        g[prep.pair_rows, prep.pair_cols] = grad_pairs
        return (g + g.T) @ z
    crow, col, order = prep.csr_pattern()
    values = torch.cat([grad_pairs, grad_pairs])[order]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        g = torch.sparse_csr_tensor(crow, col, values, size=(n, n), check_invariants=False)
    return g @ z


class TripletObjective:
    """Loss and hand-derived gradient of one probe problem.

    Parameters
    ----------
    x_active : (n_active, p) features of ``prep.concepts``, in that order (see
        :meth:`from_features` to start from the features of all concepts).
    prep : compiled triplets.
    family, regulariser, lam : the flexibility level and penalty lambda * R(W).
    temperature : T of the softmax.
    path : ``auto`` (see :func:`choose_path`; a diagonal W whose triplets use few pairs is
        then computed from the pairs' feature products), ``dense`` or ``sparse``.
    compiled : use the compiled CPU kernels (``False``: array operations only; same numbers).
    """

    def __init__(
        self,
        x_active: torch.Tensor,
        prep: PreparedTriplets,
        family: Family,
        regulariser: str = "scalar_shrinkage",
        lam: float = 0.0,
        temperature: float = 1.0,
        path: str = "auto",
        compiled: bool = True,
    ) -> None:
        if path not in ("auto", "dense", "sparse"):
            raise ValueError(f"path must be 'auto', 'dense' or 'sparse', got {path!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if lam < 0:
            raise ValueError(f"lambda must be non-negative, got {lam}")
        if x_active.shape[0] != prep.n_active:
            raise ValueError(
                f"x_active has {x_active.shape[0]} rows, the triplets use {prep.n_active} concepts"
            )
        self.x = x_active
        self.prep = prep
        self.family = family
        self.regulariser = regulariser
        self.lam = float(lam)
        self.temperature = float(temperature)
        self.requested_path = path
        self.path = choose_path(prep.n_active, prep.n_triplets) if path == "auto" else path
        self.compiled = compiled
        # diagonal W with few pairs: S at the pairs is (X_r * X_c) theta^2, one product with
        # a (pairs x p) matrix built once, instead of two n x n x p products per evaluation
        self.diagonal_pairs = (
            family.name == "diagonal"
            and path == "auto"
            and prep.n_pairs * DIAGONAL_PAIRS_RATIO <= prep.n_active**2
            and prep.n_pairs * x_active.shape[1] <= DIAGONAL_PAIRS_MAX_ELEMENTS
        )
        self._sims0: torch.Tensor | None = None  # zero-shot: X X^T at the pairs
        self._products: torch.Tensor | None = None  # diagonal pair form: X_r * X_c
        # the study's reshuffle (:meth:`reshuffle`): compiled rows in the order its loss is
        # summed at the current step; None: the exact loss (float64 accumulation)
        self.loss_order: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> TripletObjective:
        """The same objective with its tensors on ``device``."""
        return TripletObjective(
            self.x.to(device),
            self.prep.to(device),
            self.family,
            regulariser=self.regulariser,
            lam=self.lam,
            temperature=self.temperature,
            path=self.requested_path,
            compiled=self.compiled,
        )

    @classmethod
    def from_features(cls, features: torch.Tensor, prep: PreparedTriplets, family: Family, **kw):
        """Objective on the rows of ``features`` (all concepts) that the triplets use."""
        return cls(features[prep.concepts.to(features.device)], prep, family, **kw)

    def _zero_shot_sims(self) -> torch.Tensor:
        """X X^T at the triplets' pairs, computed once: for ``zero_shot`` S = exp(rho) X X^T,
        so every evaluation is a scale of these (O(m) work instead of an n x n x p Gram)."""
        if self._sims0 is None:
            self._sims0 = pair_similarities(self.x, self.prep, self.path)
        return self._sims0

    def _zero_shot(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sims = self._zero_shot_sims() * torch.exp(theta)
        nll, grad_pairs = nll_and_pair_grad(sims, self.prep, self.temperature, self.compiled)
        # dL/drho = <dL/dS, S> over the pairs
        return nll, (grad_pairs * sims).sum(dtype=torch.float64).to(theta.dtype).reshape(1)

    def _pair_products(self) -> torch.Tensor:
        """(n_pairs, p) products X_r * X_c of every unique pair's features (built once)."""
        if self._products is None:
            self._products = self.x[self.prep.pair_rows] * self.x[self.prep.pair_cols]
        return self._products

    def _diagonal_nll(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """NLL, gradient and the pairs' similarities of the diagonal pair form."""
        q = self._pair_products()
        sims = q @ (theta * theta)
        nll, grad_pairs = nll_and_pair_grad(sims, self.prep, self.temperature, self.compiled)
        return nll, 2.0 * theta * (grad_pairs @ q), sims

    def reshuffle(self, step: int) -> None:
        """Sum the loss of the following evaluations as the study's loop does at step
        ``step``: per-triplet NLLs in the fit dtype, in the order of :func:`step_order`,
        averaged by torch (its float32 mean rounds differently for every order: the
        scripts' loss moves by an ulp from step to step, which moves the steps their
        1e-7 relative rule takes). The gradient is unchanged (an order-free sum)."""
        self.loss_order = step_order(self.prep, step)

    def _ordered_nll(self, sims: torch.Tensor) -> torch.Tensor:
        """The mean NLL of the pairs' similarities summed in ``loss_order`` (see
        :meth:`reshuffle`)."""
        order = self.loss_order
        logits = logits_of(sims, self.prep, self.temperature)[order]
        return torch.nn.functional.cross_entropy(logits, self.prep.odd[order])

    def loss_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss (NLL + lambda R) and its gradient with respect to ``theta``."""
        if self.family.name == "zero_shot":
            return self._zero_shot(theta)
        if self.diagonal_pairs:
            nll, grad, sims = self._diagonal_nll(theta)
            if self.loss_order is not None:
                nll = self._ordered_nll(sims)
        else:
            z = self.family.transform(self.x, theta)
            if self.loss_order is None:
                nll, dz = nll_and_grad_z(z, self.prep, self.path, self.temperature, self.compiled)
            else:  # the pairs' similarities once: the gradient and the ordered loss share them
                sims = pair_similarities(z, self.prep, self.path)
                _, grad_pairs = nll_and_pair_grad(sims, self.prep, self.temperature, self.compiled)
                dz = grad_z(z, grad_pairs, self.prep, self.path)
                nll = self._ordered_nll(sims)
            grad = self.family.backward(self.x, dz, theta)
        if self.lam > 0 and self.family.name != "zero_shot":
            value, reg_grad = penalty(self.family, self.regulariser, theta)
            return nll + self.lam * value, grad + self.lam * reg_grad
        return nll, grad

    def nll_and_penalty(self, theta: torch.Tensor) -> tuple[float, float]:
        """Mean NLL and R(theta) (not multiplied by lambda) at ``theta``."""
        if self.family.name == "zero_shot":
            return float(self._zero_shot(theta)[0]), 0.0
        if self.diagonal_pairs:
            nll = self._diagonal_nll(theta)[0]
        else:
            z = self.family.transform(self.x, theta)
            nll, _ = nll_and_grad_z(z, self.prep, self.path, self.temperature, self.compiled)
        if self.family.name == "zero_shot":
            return float(nll), 0.0
        value, _ = penalty(self.family, self.regulariser, theta)
        return float(nll), float(value)
