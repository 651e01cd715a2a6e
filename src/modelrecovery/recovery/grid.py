"""The grid of recovery jobs and how each job's randomness is derived (method.md §4)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from modelrecovery.devices import check_device

FULL_LAMBDAS = tuple(10.0**e for e in range(-6, 5))  # 1e-6 ... 1e4
CRITERIA = ("accuracy", "nll")
TIE_RULES = ("random", "first")
STOPPING_RULES = ("converged", "study")


@dataclass(frozen=True)
class Level:
    """A flexibility level of the grid: family and (for ``rectangular``) k."""

    family: str
    k: int | None = None

    def __post_init__(self) -> None:
        from modelrecovery.probe.families import Family

        Family(self.family, self.k)  # a clear error for an unknown family or a missing k

    @property
    def label(self) -> str:
        return self.family if self.k is None else f"{self.family}{self.k}"


@dataclass(frozen=True)
class GridConfig:
    """Axes and settings of a recovery grid (everything a job's result depends on, plus
    where it runs: ``threads_per_job`` and ``device``, which enter no key)."""

    generators: tuple[str, ...]
    candidates: tuple[str, ...]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    levels: tuple[Level, ...] = (Level("full"),)
    regulariser: str = "scalar_shrinkage"
    lams: tuple[float, ...] = FULL_LAMBDAS
    criterion: str = "accuracy"
    tie_rule: str = "random"  # winner among tied candidates: random (seeded) or first
    stopping: str = "converged"  # the optimiser's stopping rule: converged or study
    n_folds: int = 3
    train_fraction: float = 0.7
    eval_fraction: float = 1 / 8  # validation and test triplets: round(N * eval_fraction)
    paper_compatible_sampling: bool = False
    warm_start: bool = False  # each λ starts from the family's start point (the study)
    dtype: str = "float32"
    threads_per_job: int = 1
    # where jobs run: cpu, cuda (every visible GPU, shared by the workers), cuda:<n>, auto;
    # like threads_per_job it changes no result, so it enters no key or job id
    device: str = "cpu"
    # provenance, hashed into job ids: "inputs" (hashes of every candidate's features, the
    # human data, the code) and "generators" ({level label: {model: generator key}})
    extra: dict = field(default_factory=dict)

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
        if self.tie_rule not in TIE_RULES:
            raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {self.tie_rule!r}")
        if self.stopping not in STOPPING_RULES:
            raise ValueError(f"stopping must be one of {STOPPING_RULES}, got {self.stopping!r}")
        labels = [level.label for level in self.levels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"grid levels repeat: {labels}")
        if any(not (np.isfinite(v) and v > 0) for v in self.lams):
            raise ValueError(f"every λ must be a finite number > 0, got {self.lams}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        object.__setattr__(self, "device", check_device(self.device, "grid.device"))

    def key(self) -> str:
        """Hash of everything that changes a job's result, except the job's own axes and
        its generator (see :attr:`Job.job_id`)."""
        payload = asdict(self)
        for axis in ("generators", "candidates", "sizes", "seeds", "levels"):
            payload.pop(axis)
        payload.pop("threads_per_job")
        payload.pop("device")
        payload["extra"] = {k: v for k, v in self.extra.items() if k != "generators"}
        payload["candidates"] = sorted(self.candidates)
        return _digest(payload)

    def lam_grid(self, level: Level) -> tuple[float, ...]:
        """The λ values a level fits, ascending (zero-shot: λ = 0 only)."""
        return (0.0,) if level.family == "zero_shot" else tuple(sorted(self.lams))

    def condition(self, level: Level) -> dict:
        """The columns that define an experimental condition (what may be pooled)."""
        return {
            "level": level.label,
            "family": level.family,
            "k": level.k,
            "regulariser": self.regulariser,
            "criterion": self.criterion,
            "tie_rule": self.tie_rule,
            "stopping": self.stopping,
            "warm_start": bool(self.warm_start) and level.family != "zero_shot",
            "sampling": "paper_compatible" if self.paper_compatible_sampling else "uniform",
            "lams": ",".join(f"{v:g}" for v in self.lam_grid(level)),
            "candidate_set": ",".join(sorted(self.candidates)),
        }

    def condition_key(self, level: Level) -> str:
        """Hash of the condition plus the settings that change results but are no axis of
        the analysis (folds, fractions, dtype)."""
        payload = {
            **self.condition(level),
            "n_folds": self.n_folds,
            "train_fraction": self.train_fraction,
            "eval_fraction": self.eval_fraction,
            "dtype": self.dtype,
        }
        return _digest(payload)

    def generator_key(self, level: Level, generator: str) -> str:
        """The provenance of a generator at a level (its run or inputs key), if given."""
        return str(self.extra.get("generators", {}).get(level.label, {}).get(generator, ""))


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


@dataclass(frozen=True)
class Job:
    """One recovery job: generator g, training size N, seed s, flexibility level."""

    generator: str
    n_train: int
    seed: int
    level: Level
    grid_key: str
    generator_key: str = ""

    @property
    def job_id(self) -> str:
        text = (
            f"{self.generator}|{self.n_train}|{self.seed}|{self.level.label}|{self.grid_key}"
            f"|{self.generator_key}"
        )
        return (
            f"{self.generator}-N{self.n_train}-s{self.seed}-{self.level.label}-"
            + (hashlib.sha256(text.encode()).hexdigest()[:10])
        )


def jobs_of(config: GridConfig) -> list[Job]:
    """Every job of the grid, in a fixed order (level, N, seed, generator)."""
    key = config.key()
    return [
        Job(g, int(n), int(s), level, key, config.generator_key(level, g))
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
