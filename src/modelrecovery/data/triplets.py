"""The one triplet type of the project: odd-one-out judgments over a fixed concept set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class TripletDataError(ValueError):
    """Bad triplet input; the message names the file, the row and what was expected."""


@dataclass(frozen=True, eq=False)
class Triplets:
    """Odd-one-out judgments.

    Attributes
    ----------
    ids : (m, 3) int32 array of 0-based concept indices, three distinct per row.
    odd : (m,) int8 array, position (0, 1 or 2) of the item chosen as the odd one out.
    n_concepts : number of concepts the indices refer to.
    subject : optional (m,) int32 array of participant ids (-1 where unknown).
    concept_ids : optional tuple of ``n_concepts`` concept names (e.g. THINGS' ``aardvark``).
    """

    ids: np.ndarray
    odd: np.ndarray
    n_concepts: int
    subject: np.ndarray | None = None
    concept_ids: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.ids, dtype=np.int32)
        odd = np.ascontiguousarray(self.odd, dtype=np.int8)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "odd", odd)
        object.__setattr__(self, "n_concepts", int(self.n_concepts))
        if self.subject is not None:
            object.__setattr__(self, "subject", np.ascontiguousarray(self.subject, dtype=np.int32))
        if self.concept_ids is not None:
            object.__setattr__(self, "concept_ids", tuple(str(c) for c in self.concept_ids))
        validate(self)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Triplets):
            return NotImplemented
        same_subject = (self.subject is None and other.subject is None) or (
            self.subject is not None
            and other.subject is not None
            and np.array_equal(self.subject, other.subject)
        )
        return (
            self.n_concepts == other.n_concepts
            and np.array_equal(self.ids, other.ids)
            and np.array_equal(self.odd, other.odd)
            and same_subject
            and self.concept_ids == other.concept_ids
        )

    def subset(self, rows: np.ndarray) -> Triplets:
        """The triplets at ``rows`` (a boolean mask or integer indices)."""
        return Triplets(
            ids=self.ids[rows],
            odd=self.odd[rows],
            n_concepts=self.n_concepts,
            subject=None if self.subject is None else self.subject[rows],
            concept_ids=self.concept_ids,
        )

    def odd_concept(self) -> np.ndarray:
        """Concept index of the chosen odd one out, per triplet."""
        return self.ids[np.arange(len(self)), self.odd.astype(np.int64)]

    def sorted_keys(self) -> np.ndarray:
        """One int64 per triplet identifying the unordered concept set {i, j, k}."""
        return triplet_keys(self.ids, self.n_concepts)

    def save(self, path: str | Path) -> Path:
        """Write losslessly to a ``.npz`` file (the suffix is added if missing)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"ids": self.ids, "odd": self.odd, "n_concepts": np.int64(self.n_concepts)}
        if self.subject is not None:
            arrays["subject"] = self.subject
        if self.concept_ids is not None:
            arrays["concept_ids"] = np.array(self.concept_ids, dtype=np.str_)
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Triplets:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such triplet file")
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(
                    ids=f["ids"],
                    odd=f["odd"],
                    n_concepts=int(f["n_concepts"]),
                    subject=f["subject"] if "subject" in f else None,
                    concept_ids=tuple(f["concept_ids"].tolist()) if "concept_ids" in f else None,
                )
        except (KeyError, ValueError, OSError) as err:
            raise TripletDataError(
                f"{path}: not a triplet file written by Triplets.save ({err})"
            ) from err


def triplet_keys(ids: np.ndarray, n_concepts: int) -> np.ndarray:
    """Encode each row's unordered concept set as one int64 (sorted i < j < k)."""
    s = np.sort(np.asarray(ids, dtype=np.int64), axis=1)
    n = np.int64(n_concepts)
    return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]


def validate(t: Triplets, source: str = "triplets") -> None:
    """Raise :class:`TripletDataError` if ``t`` is inconsistent (row numbers are 0-based)."""
    if t.ids.ndim != 2 or t.ids.shape[1] != 3:
        raise TripletDataError(f"{source}: ids must have shape (m, 3), got {t.ids.shape}")
    m = t.ids.shape[0]
    if t.odd.shape != (m,):
        raise TripletDataError(f"{source}: odd must have shape ({m},), got {t.odd.shape}")
    if t.n_concepts < 3:
        raise TripletDataError(f"{source}: n_concepts must be at least 3, got {t.n_concepts}")
    if t.subject is not None and t.subject.shape != (m,):
        raise TripletDataError(f"{source}: subject must have shape ({m},), got {t.subject.shape}")
    if t.concept_ids is not None and len(t.concept_ids) != t.n_concepts:
        raise TripletDataError(
            f"{source}: {len(t.concept_ids)} concept ids given for n_concepts={t.n_concepts}"
        )
    if m == 0:
        return
    bad = np.flatnonzero(((t.ids < 0) | (t.ids >= t.n_concepts)).any(axis=1))
    if bad.size:
        raise TripletDataError(
            f"{source}: row {bad[0]}: concept index {t.ids[bad[0]].tolist()} outside "
            f"[0, {t.n_concepts - 1}] ({bad.size} such rows)"
        )
    a, b, c = t.ids.T
    bad = np.flatnonzero((a == b) | (a == c) | (b == c))
    if bad.size:
        raise TripletDataError(
            f"{source}: row {bad[0]}: repeated concept in triplet {t.ids[bad[0]].tolist()} "
            f"({bad.size} such rows)"
        )
    bad = np.flatnonzero((t.odd < 0) | (t.odd > 2))
    if bad.size:
        raise TripletDataError(
            f"{source}: row {bad[0]}: odd position {int(t.odd[bad[0]])} not in 0-2"
        )
