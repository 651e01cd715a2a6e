"""Cross-validated choice of the regularisation strength lambda (docs/science/method.md §3).

Folds are over triplets (the study, for human data) or concept-disjoint (every fold's
validation triplets use only concepts that no training triplet uses). Both are seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrecovery.data.triplets import Triplets


@dataclass(frozen=True)
class TripletFold:
    """Row indices of one cross-validation fold's training and validation triplets."""

    train: np.ndarray
    validation: np.ndarray


def triplet_folds(n_triplets: int, n_folds: int = 5, seed: int = 0) -> list[TripletFold]:
    """K folds over shuffled triplet rows (each row validates exactly once)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if n_triplets < n_folds:
        raise ValueError(f"{n_triplets} triplets cannot make {n_folds} folds")
    order = np.random.default_rng(seed).permutation(n_triplets)
    parts = np.array_split(order, n_folds)
    return [
        TripletFold(
            train=np.sort(np.concatenate(parts[:f] + parts[f + 1 :])), validation=np.sort(parts[f])
        )
        for f in range(n_folds)
    ]


def concept_folds_for_triplets(
    triplets: Triplets, n_folds: int = 5, seed: int = 0
) -> list[TripletFold]:
    """Concept-disjoint folds: concepts are split into K groups; a fold validates on the
    triplets wholly inside its group and trains on triplets wholly outside it (triplets
    that mix the group with other concepts are left out of that fold)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    rng = np.random.default_rng(seed)
    group = np.empty(triplets.n_concepts, dtype=np.int64)
    group[rng.permutation(triplets.n_concepts)] = np.arange(triplets.n_concepts) % n_folds
    g = group[triplets.ids]
    folds = []
    for f in range(n_folds):
        inside = (g == f).all(axis=1)
        outside = (g != f).all(axis=1)
        if not inside.any() or not outside.any():
            raise ValueError(
                f"concept-disjoint fold {f} has no validation or no training triplets: "
                "too few triplets or concepts for concept-disjoint folds"
            )
        folds.append(TripletFold(train=np.flatnonzero(outside), validation=np.flatnonzero(inside)))
    return folds


def make_folds(triplets: Triplets, n_folds: int, seed: int, kind: str) -> list[TripletFold]:
    """Folds of kind ``triplets`` (the study) or ``concepts`` (concept-disjoint)."""
    if kind == "triplets":
        return triplet_folds(len(triplets), n_folds, seed)
    if kind == "concepts":
        return concept_folds_for_triplets(triplets, n_folds, seed)
    raise ValueError(f"fold kind must be 'triplets' or 'concepts', got {kind!r}")


TIE_TOLERANCE = 1e-12


def select_lambda(lams: Sequence[float], scores: Sequence[float]) -> float:
    """The λ with the best mean validation score; ties (within 1e-12) go to the smallest λ
    (the study takes the first maximum over its ascending grid)."""
    if len(lams) == 0 or len(lams) != len(scores):
        raise ValueError("select_lambda needs one score per λ, and at least one λ")
    order = np.argsort(np.asarray(lams, dtype=float), kind="stable")
    ranked = np.asarray(scores, dtype=float)[order]
    if not np.isfinite(ranked).any():
        raise ValueError("no λ has a finite validation score")
    ranked = np.where(np.isfinite(ranked), ranked, -np.inf)
    first = int(np.flatnonzero(ranked >= ranked.max() - TIE_TOLERANCE)[0])
    return float(np.asarray(lams, dtype=float)[order][first])


class CrossValidation:
    """Cross-validation of one model's probe over triplet folds: every fold's compiled
    training triplets and (for reducible full W) row space are built once and serve every
    λ. Every fit starts from the family's start point (cold), as in the study.

    Parameters
    ----------
    features : (n_concepts, p) features.
    train : the human training triplets.
    folds : from :func:`make_folds`.
    options : probe options of :func:`~modelrecovery.probe.fit.fit_probe` (family, k,
        regulariser, dtype, device, settings, name).
    """

    def __init__(self, features, train: Triplets, folds: list[TripletFold], **options: Any) -> None:
        import torch

        from modelrecovery.probe.fit import check_features
        from modelrecovery.probe.objective import PreparedTriplets
        from modelrecovery.probe.reduced import reduction_applies, reduction_name, row_space

        dtype = options.get("dtype", torch.float32)
        check_features(features, dtype, options.get("name"))  # a clear error before the cast
        self.features = torch.as_tensor(features).to(dtype)
        self.train = train
        self.folds = folds
        self.options = options
        self.preps = [PreparedTriplets.from_triplets(train.subset(f.train)) for f in folds]
        settings = options.get("settings")
        reduction = reduction_name(options.get("reduce", "auto"))
        reducible = reduction_applies(
            options.get("family", "full"),
            options.get("regulariser", "scalar_shrinkage"),
            settings.stopping if settings is not None else "converged",
            reduction,
        )
        self.spaces = [
            row_space(self.features[prep.concepts]) if reducible else None for prep in self.preps
        ]
        self._scores: dict[tuple[int, float], dict[str, float]] = {}
        # (fold, λ) -> one line, for fits that must not be trusted (see
        # FittedProbe.convergence_warning); their scores are kept as they are
        self.fit_warnings: dict[tuple[int, float], str] = {}

    @property
    def n_fitted(self) -> int:
        """How many (fold, λ) fits have been computed."""
        return len(self._scores)

    def fold_scores(self, fold: int, lam: float) -> dict[str, float]:
        """Validation accuracy and NLL of fold ``fold`` fitted at ``lam`` (computed once:
        :meth:`precompute` may have done it already)."""
        key = (fold, float(lam))
        if key not in self._scores:
            self._scores[key] = self._fit_and_score(fold, float(lam))
        return self._scores[key]

    def _fit_and_score(self, fold: int, lam: float) -> dict[str, float]:
        from modelrecovery.probe.fit import fit_probe

        fitted = fit_probe(
            self.features, self.preps[fold], lam=lam, space=self.spaces[fold], **self.options
        )
        warning = fitted.convergence_warning()
        if warning is not None:
            self.fit_warnings[(fold, lam)] = warning
        return fitted.evaluate(self.features, self.train.subset(self.folds[fold].validation))

    def precompute(self, lams: Sequence[float], threads: int) -> None:
        """Fit every (fold, λ) of a known grid on ``threads`` threads, each fit
        single-threaded (torch and numba release the GIL in the heavy work); the results
        are those :meth:`fold_scores` returns. CPU only; elsewhere nothing is done."""
        import torch

        if threads < 2 or str(self.options.get("device", "cpu")) != "cpu":
            return
        todo = [
            (f, float(lam))
            for lam in lams
            for f in range(len(self.folds))
            if (f, float(lam)) not in self._scores
        ]
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(lambda key: self._fit_and_score(*key), todo))
        finally:
            torch.set_num_threads(previous)
        self._scores.update(dict(zip(todo, results, strict=True)))
