"""The grid of recovery jobs and how each job's randomness is derived
(docs/science/method.md §4)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from modelrecovery.devices import check_device
from modelrecovery.study.spec import (
    CALIBRATIONS,
    CRITERIA,
    EVALUATIONS,
    FULL_LAMBDAS,
    MATMUL_PRECISIONS,
    REDUCTIONS,
    SELECTION_CRITERIA,
    STOPPING_RULES,
    TIE_RULES,
    TRIPLET_SELECTIONS,
    Level,
)

__all__ = ["FULL_LAMBDAS", "GridConfig", "Job", "Level", "derived_seed", "jobs_of"]
# settings that enter no key, job id or condition while at these values (stores written
# before the settings existed keep their ids): name -> default
SELECTION_DEFAULTS = {
    "selection_criterion": "accuracy",
    "selection_pool": 10,
    "selection_batches": 4,
    "undecided_z": 1.96,
}
# the study-script settings (grid.reduction ... matmul_precision): like the selection
# settings, they enter no key, job id or condition at their defaults
STUDY_SCRIPT_DEFAULTS = {
    "reduction": "auto",
    "evaluation": "exact",
    "reshuffle": False,
    "matmul_precision": "highest",
}


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
    # winner among tied candidates: random (seeded), first, or study (the published
    # scripts: per-fold accuracies in float32, λ by their float64 mean and the winner by
    # their float32 mean, each the first maximum: rounding decides equal counts)
    tie_rule: str = "random"
    stopping: str = "converged"  # the optimiser's stopping rule: converged or study
    n_folds: int = 3
    train_fraction: float = 0.7
    eval_fraction: float = 1 / 8  # validation and test triplets: round(N * eval_fraction)
    # the published scripts' sampler (first N of 5N sorted draws), seeded by the job's
    # seed alone for train, validation and test in every fold, as the scripts did
    paper_compatible_sampling: bool = False
    warm_start: bool = False  # each λ starts from the family's start point (the study)
    # full W in the training row space: auto (the rule's exact form), always, path, never
    reduction: str = "auto"
    # accuracy: exact (float64 similarities, tied predictions share credit) or study
    # (similarities in the fit dtype, argmax taking the first position on ties)
    evaluation: str = "exact"
    # the study's per-step reshuffle of the training triplets (its float32 loss summed in
    # the order of torch.manual_seed(step); randperm)
    reshuffle: bool = False
    # float32 matrix products of the recovery fits on a GPU: highest (IEEE) or high (TF32
    # on Ampere and later, as the study's recovery runs); no effect on CPU
    matmul_precision: str = "highest"
    dtype: str = "float32"
    threads_per_job: int = 1
    # where jobs run: cpu, cuda (every visible GPU, shared by the workers), cuda:<n>, auto;
    # like threads_per_job it changes no result, so it enters no key or job id
    device: str = "cpu"
    # the triplet-selection axis (a job axis like levels): random (uniform, the study),
    # discriminating (one-shot design from a pool), sequential (batches, refitted probes)
    triplet_selection: tuple[str, ...] = ("random",)
    selection_criterion: str = "accuracy"  # crowning: accuracy (the study), loglik, paired
    selection_pool: int = 10  # design pool per fold: selection_pool x N uniform triplets
    selection_batches: int = 4  # sequential: batches of about N / selection_batches
    undecided_z: float = 1.96  # paired: decided when the log-likelihood gap > z x its SE
    # also score every fit on the human held-out test triplets (the noise-ceiling set);
    # changes no winner, adds columns (enters the key only when on: ids of before stay)
    human_heldout: bool = False
    # how the generators' T was calibrated (probe.calibration): study or loo_matched; like
    # the study-script settings it enters keys, job ids and conditions only away from study
    calibration: str = "study"
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
        for name, allowed in (
            ("reduction", REDUCTIONS),
            ("evaluation", EVALUATIONS),
            ("matmul_precision", MATMUL_PRECISIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.reshuffle, (bool, np.bool_)):
            raise ValueError(f"reshuffle must be true or false, got {self.reshuffle!r}")
        object.__setattr__(self, "reshuffle", bool(self.reshuffle))
        labels = [level.label for level in self.levels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"grid levels repeat: {labels}")
        if any(not (np.isfinite(v) and v > 0) for v in self.lams):
            raise ValueError(f"every λ must be a finite number > 0, got {self.lams}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        object.__setattr__(self, "device", check_device(self.device, "grid.device"))
        selections = tuple(self.triplet_selection)
        object.__setattr__(self, "triplet_selection", selections)
        bad = [s for s in selections if s not in TRIPLET_SELECTIONS]
        if bad or not selections or len(set(selections)) != len(selections):
            raise ValueError(
                f"triplet_selection must be distinct values of {TRIPLET_SELECTIONS}, "
                f"got {selections}"
            )
        if self.selection_criterion not in SELECTION_CRITERIA:
            raise ValueError(
                f"selection_criterion must be one of {SELECTION_CRITERIA}, "
                f"got {self.selection_criterion!r}"
            )
        if int(self.selection_pool) < 1:
            raise ValueError(f"selection_pool must be at least 1, got {self.selection_pool}")
        if int(self.selection_batches) < 1:
            raise ValueError(f"selection_batches must be at least 1, got {self.selection_batches}")
        if not (np.isfinite(self.undecided_z) and self.undecided_z >= 0):
            raise ValueError(f"undecided_z must be a finite number >= 0, got {self.undecided_z}")
        if not isinstance(self.human_heldout, (bool, np.bool_)):
            raise ValueError(f"human_heldout must be true or false, got {self.human_heldout!r}")
        object.__setattr__(self, "human_heldout", bool(self.human_heldout))
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")

    def key(self, selection: str = "random") -> str:
        """Hash of everything that changes a job's result, except the job's own axes and
        its generator (see :attr:`Job.job_id`), for the jobs of one ``selection``.

        The selection settings enter only where they act (pool and batches only for the
        designs that use them) and away from their defaults, so the keys, and the job ids,
        of grids written before the settings existed stay the same, and a random job's id
        does not depend on which other selections share its grid. ``human_heldout``
        enters only when on (it adds columns, changes no result of before)."""
        payload = asdict(self)
        for axis in ("generators", "candidates", "sizes", "seeds", "levels", "triplet_selection"):
            payload.pop(axis)
        payload.pop("threads_per_job")
        payload.pop("device")
        for name, value in STUDY_SCRIPT_DEFAULTS.items():
            if payload[name] == value:
                payload.pop(name)
        for name in self._inert_selection_settings(selection):
            payload.pop(name)
        if not self.human_heldout:
            payload.pop("human_heldout")
        if self.calibration == "study":
            payload.pop("calibration")
        payload["extra"] = {k: v for k, v in self.extra.items() if k != "generators"}
        payload["candidates"] = sorted(self.candidates)
        return _digest(payload)

    def _inert_selection_settings(self, selection: str) -> list[str]:
        """Selection settings that change no result of ``selection``'s jobs, or are at
        their defaults."""
        inert = {name for name, value in SELECTION_DEFAULTS.items() if getattr(self, name) == value}
        if selection == "random":
            inert |= {"selection_pool", "selection_batches"}
        elif selection == "discriminating":
            inert.add("selection_batches")
        if self.selection_criterion != "paired":
            inert.add("undecided_z")
        return sorted(inert)

    def lam_grid(self, level: Level) -> tuple[float, ...]:
        """The λ values a level fits, ascending (zero-shot: λ = 0 only)."""
        return (0.0,) if level.family == "zero_shot" else tuple(sorted(self.lams))

    def condition(self, level: Level, selection: str = "random") -> dict:
        """The columns that define an experimental condition (what may be pooled).
        ``triplet_selection`` and ``selection_criterion`` appear only away from their
        defaults (random, accuracy): the conditions of earlier stores stay as they were."""
        out = {
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
        for name, value in STUDY_SCRIPT_DEFAULTS.items():
            if getattr(self, name) != value:
                out[name] = getattr(self, name)
        if self.calibration != "study":
            out["calibration"] = self.calibration
        if selection != "random":
            out["triplet_selection"] = selection
            out["selection_pool"] = int(self.selection_pool)
            if selection == "sequential":
                out["selection_batches"] = int(self.selection_batches)
        if self.selection_criterion != "accuracy":
            out["selection_criterion"] = self.selection_criterion
            if self.selection_criterion == "paired":
                out["undecided_z"] = float(self.undecided_z)
        return out

    def condition_key(self, level: Level, selection: str = "random") -> str:
        """Hash of the condition plus the settings that change results but are no axis of
        the analysis (folds, fractions, dtype)."""
        payload = {
            **self.condition(level, selection),
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
    selection: str = "random"  # how its training triplets are chosen (triplet_selection)

    @property
    def job_id(self) -> str:
        text = (
            f"{self.generator}|{self.n_train}|{self.seed}|{self.level.label}|{self.grid_key}"
            f"|{self.generator_key}"
        )
        tag = ""
        if self.selection != "random":  # random jobs keep the ids of before the axis
            text += f"|{self.selection}"
            tag = f"-{self.selection[:3]}"
        return (
            f"{self.generator}-N{self.n_train}-s{self.seed}-{self.level.label}{tag}-"
            + (hashlib.sha256(text.encode()).hexdigest()[:10])
        )


def jobs_of(config: GridConfig) -> list[Job]:
    """Every job of the grid, in a fixed order (level, selection, N, seed, generator)."""
    keys = {selection: config.key(selection) for selection in config.triplet_selection}
    return [
        Job(g, int(n), int(s), level, keys[selection], config.generator_key(level, g), selection)
        for level in config.levels
        for selection in config.triplet_selection
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
