"""The grid of recovery jobs and how each job's randomness is derived (method.md §4)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

FULL_LAMBDAS = tuple(10.0**e for e in range(-6, 5))  # 1e-6 ... 1e4
CRITERIA = ("accuracy", "nll")


@dataclass(frozen=True)
class Level:
    """A flexibility level of the grid: family and (for ``rectangular``) k."""

    family: str
    k: int | None = None

    @property
    def label(self) -> str:
        return self.family if self.k is None else f"{self.family}{self.k}"


@dataclass(frozen=True)
class GridConfig:
    """Axes and settings of a recovery grid (everything a job's result depends on)."""

    generators: tuple[str, ...]
    candidates: tuple[str, ...]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    levels: tuple[Level, ...] = (Level("full"),)
    regulariser: str = "scalar_shrinkage"
    lams: tuple[float, ...] = FULL_LAMBDAS
    criterion: str = "accuracy"
    n_folds: int = 3
    train_fraction: float = 0.7
    eval_fraction: float = 1 / 8  # validation and test triplets: round(N * eval_fraction)
    paper_compatible_sampling: bool = False
    warm_start: bool = True
    dtype: str = "float32"
    threads_per_job: int = 1
    extra: dict = field(default_factory=dict)  # provenance (e.g. generator run ids), hashed

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("the candidate list is empty")
        if not self.generators:
            raise ValueError("the generator list is empty")
        missing = [g for g in self.generators if g not in self.candidates]
        if missing:
            raise ValueError(f"generators {missing} are not among the candidates {self.candidates}")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates repeat a name: {self.candidates}")
        if not self.sizes or any(int(n) < 1 for n in self.sizes):
            raise ValueError(f"sizes must be positive integers, got {self.sizes}")
        if not self.seeds:
            raise ValueError("the seed list is empty")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if any(not (np.isfinite(v) and v > 0) for v in self.lams):
            raise ValueError(f"every λ must be a finite number > 0, got {self.lams}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")

    def key(self) -> str:
        """Hash of everything that changes a job's result, except the job's own axes."""
        payload = asdict(self)
        for axis in ("generators", "candidates", "sizes", "seeds", "levels"):
            payload.pop(axis)
        payload.pop("threads_per_job")
        payload["candidates"] = sorted(self.candidates)
        return hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One recovery job: generator g, training size N, seed s, flexibility level."""

    generator: str
    n_train: int
    seed: int
    level: Level
    grid_key: str

    @property
    def job_id(self) -> str:
        text = f"{self.generator}|{self.n_train}|{self.seed}|{self.level.label}|{self.grid_key}"
        return (
            f"{self.generator}-N{self.n_train}-s{self.seed}-{self.level.label}-"
            + (hashlib.sha256(text.encode()).hexdigest()[:10])
        )


def jobs_of(config: GridConfig) -> list[Job]:
    """Every job of the grid, in a fixed order (level, N, seed, generator)."""
    key = config.key()
    return [
        Job(g, int(n), int(s), level, key)
        for level in config.levels
        for n in config.sizes
        for s in config.seeds
        for g in config.generators
    ]


def stable_int(text: str) -> int:
    """A stable 32-bit integer from text (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def derived_seed(*parts: object) -> int:
    """A seed derived from the given parts (ints or strings) with SeedSequence."""
    entropy = [p if isinstance(p, int) else stable_int(str(p)) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
