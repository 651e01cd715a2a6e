"""The study's typed specification: the project's one vocabulary.

Every name list (flexibility levels, regularisers, stopping rules, criteria, tie rules,
triplet designs, crowning criteria, dtypes, executors, triplet formats, ...) is defined
here once, as a ``Literal`` type and the tuple of its values; the command line's choices,
MLproject's defaults, the grid, the generators and the probe's set-up derive from it.
A study configuration (``conf/*.yaml`` after ``--set`` overrides) is checked into a frozen
:class:`StudySpec` before any work starts; that object, not a dict, flows through the
stages. Imports no torch.

Checks: types, ranges and known values at every level; unknown keys are refused at every
level, the error listing that level's keys. A bad configuration raises one ValueError
line naming the file, the key, its value and what was expected, e.g.
``config conf/default.yaml: grid.n_folds = 'abc': expected an integer >= 2``. Numbers
given as text (YAML reads ``1e-2`` as text) become numbers, and a single value where a
list is expected becomes a one-element list (``grid.sizes=4000`` -> ``(4000,)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelrecovery.devices import check_device

# ----------------------------------------------------------------------------------------------
# The vocabulary: each name list once
# ----------------------------------------------------------------------------------------------

Family = Literal["zero_shot", "diagonal", "rectangular", "full"]
Regulariser = Literal["scalar_shrinkage", "l2", "l1"]
Criterion = Literal["accuracy", "nll"]
TieRule = Literal["random", "first", "study"]
Stopping = Literal["converged", "study"]
Reduction = Literal["auto", "always", "path", "never"]
Evaluation = Literal["exact", "study"]
MatmulPrecision = Literal["highest", "high"]
Rules = Literal["platform", "study_scripts"]
Dtype = Literal["float32", "float64"]
ExecutorKind = Literal["inprocess", "dask"]
TuneMethod = Literal["grid", "tpe"]
FoldKind = Literal["triplets", "concepts"]
DataKind = Literal["world", "files"]
TripletSelection = Literal["random", "discriminating", "sequential"]
SelectionCriterion = Literal["accuracy", "loglik", "paired"]
TripletFormat = Literal["auto", "things2023", "things2020", "csv", "npz"]
Reference = Literal["none", "paper"]
Calibration = Literal["study", "loo_matched"]

FAMILIES: tuple[str, ...] = get_args(Family)
REGULARISERS: tuple[str, ...] = get_args(Regulariser)
CRITERIA: tuple[str, ...] = get_args(Criterion)
TIE_RULES: tuple[str, ...] = get_args(TieRule)
STOPPING_RULES: tuple[str, ...] = get_args(Stopping)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
EVALUATIONS: tuple[str, ...] = get_args(Evaluation)
MATMUL_PRECISIONS: tuple[str, ...] = get_args(MatmulPrecision)
RULES: tuple[str, ...] = get_args(Rules)
DTYPES: tuple[str, ...] = get_args(Dtype)
EXECUTORS: tuple[str, ...] = get_args(ExecutorKind)
TUNE_METHODS: tuple[str, ...] = get_args(TuneMethod)
FOLD_KINDS: tuple[str, ...] = get_args(FoldKind)
DATA_KINDS: tuple[str, ...] = get_args(DataKind)
TRIPLET_SELECTIONS: tuple[str, ...] = get_args(TripletSelection)
SELECTION_CRITERIA: tuple[str, ...] = get_args(SelectionCriterion)
TRIPLET_FORMATS: tuple[str, ...] = get_args(TripletFormat)
#: the paper's labels (conf/things_paper.yaml); a model's labels are free text
OBJECTIVES: tuple[str, ...] = ("supervised", "self-supervised", "image-text")
ARCHITECTURES: tuple[str, ...] = ("CNN", "transformer")
REFERENCES: tuple[str, ...] = get_args(Reference)
#: what a generator's T matches to the human LOO ceiling: study (its expected accuracy,
#: mean max P) or loo_matched (its own expected LOO ceiling; docs/science/method.md §3)
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)

#: λ values the study cross-validates for its generators (1e-6 ... 100)
STUDY_LAMBDAS: tuple[float, ...] = tuple(10.0**e for e in range(-6, 3))
#: λ values of the study's recovery fits (1e-6 ... 1e4)
FULL_LAMBDAS: tuple[float, ...] = tuple(10.0**e for e in range(-6, 5))


def one_of(names: Sequence[str]) -> str:
    """``one of a, b, c``: how a name list is described in messages."""
    return "one of " + ", ".join(names)


def split_description(text: str) -> tuple[str, str]:
    """(what is expected, what it means) of a field's description ``expected (meaning)``:
    the meaning is a last parenthesised group that closes the text; ("", text) when
    there is none. The config reference and the command line's help read it."""
    for start, char in enumerate(text):
        if char != "(" or text[start - 1 : start] != " ":
            continue
        if _closing(text, start) == len(text) - 1:
            meaning = text[start + 1 : -1]
            return text[: start - 1], meaning.removeprefix("text; ")
    return "", text


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``start`` (-1: none)."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return -1


@dataclass(frozen=True)
class Level:
    """A flexibility level: how W is parametrised (``family``) and, for ``rectangular``,
    its rank ``k`` (docs/science/method.md §2). The probe's :class:`~modelrecovery.probe.families.
    Family` implements the level's mathematics."""

    family: str
    k: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.family == "rectangular":
            if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
                raise ValueError(f"family 'rectangular' needs k >= 1, got k={self.k!r}")
        elif self.k is not None:
            raise ValueError(
                f"k is only used by family 'rectangular', got k={self.k} for {self.family}"
            )

    @property
    def label(self) -> str:
        """``full``, ``rectangular8``, ...: the level's name in tables and run names."""
        return self.family if self.k is None else f"{self.family}{self.k}"


def probe_parameters(level: Level, p: int) -> int:
    """Free parameters of a probe on p features: 1 (zero-shot scale), p, p k or p p."""
    return {"zero_shot": 1, "diagonal": p, "rectangular": p * (level.k or 0), "full": p * p}[
        level.family
    ]


# ----------------------------------------------------------------------------------------------
# Value types
# ----------------------------------------------------------------------------------------------


def _no_bool(value: Any) -> Any:
    """Numbers only: YAML's true/false are not 1/0 here."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


class _Complete(ValueError):
    """A check's message that names its keys itself (shown as it is)."""


def _as_list(value: Any) -> Any:
    """A single value where a list is expected: a one-element list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


Int = Annotated[int, BeforeValidator(_no_bool)]
Number = Annotated[float, BeforeValidator(_no_bool)]
Device = Annotated[str, BeforeValidator(lambda value: check_device(value))]
DEVICE_TEXT = "one of cpu, cuda, auto or cuda:<n>"


def _tuple_of(item: Any) -> Any:
    return Annotated[tuple[item, ...], BeforeValidator(_as_list), Field(min_length=1)]


def _distinct(values: Any, what: str) -> Any:
    """``values`` if no value repeats, else a one-line error naming the repeats (a repeated
    generator, size or seed would run and record its jobs twice)."""
    seen = [str(v) for v in values]
    repeated = sorted({v for v in seen if seen.count(v) > 1})
    if repeated:
        raise ValueError(f"expected distinct {what}; {', '.join(repeated)} repeats")
    return values


def _distinct_tuple_of(item: Any, what: str) -> Any:
    return Annotated[
        tuple[item, ...],
        BeforeValidator(_as_list),
        Field(min_length=1),
        AfterValidator(lambda values: _distinct(values, what)),
    ]


#: the flexibility levels' forms of W, in words (the descriptions of level options)
LEVEL_FORMS = "zero_shot, a multiple of the identity; diagonal; rectangular, p x k; full, p x p"
#: the stopping rules, reductions and reshuffle in words (probe, tune and grid)
STOPPING_TEXT = (
    " (the L-BFGS stopping rule: converged, the optimum to float resolution; study, the "
    "paper's early stop"
)
REDUCTION_TEXT = (
    " (full W when p exceeds the training concepts: auto, the rule's exact form; always, "
    "the reduction at the optimum; path, the study's p x p path in the row space; never, "
    "p x p"
)
RESHUFFLE_TEXT = (
    "true or false (the study's per-step reshuffle: the float32 loss summed in the order of "
    "torch.manual_seed(step)"
)
REGULARISER_TEXT = "penalty R(W), weighted by λ; scalar_shrinkage: toward a scaled identity)"

PositiveNumbers = _tuple_of(Annotated[Number, Field(gt=0, allow_inf_nan=False)])
Sizes = _distinct_tuple_of(Annotated[Int, Field(ge=1)], "sizes")
Seeds = _distinct_tuple_of(Annotated[Int, Field(ge=0)], "seeds")
LAMS = "a finite number > 0 or a non-empty list of them"


class _Spec(BaseModel):
    """A section of the specification: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


class LevelEntry(_Spec):
    """One entry of ``grid.levels``: a level and, optionally, its own sizes and seeds."""

    family: Family = Field(description=one_of(FAMILIES) + " (the form of W: " + LEVEL_FORMS + ")")
    k: Annotated[Int | None, Field(ge=1)] = Field(
        None, description="an integer >= 1 (the rank of a rectangular level)"
    )
    sizes: Sizes | None = Field(
        None,
        description="null or a positive integer or a non-empty list of them (this "
        "level's sizes, instead of grid.sizes)",
    )
    seeds: Seeds | None = Field(
        None,
        description="null or an integer >= 0 or a non-empty list of them (this "
        "level's seeds, instead of grid.seeds)",
    )

    @model_validator(mode="after")
    def _k_matches_family(self) -> LevelEntry:
        if self.family == "rectangular" and self.k is None:
            raise ValueError(
                "expected k >= 1 with family rectangular, e.g. {family: rectangular, k: 8}"
            )
        if self.family != "rectangular" and self.k is not None:
            raise ValueError(f"expected no k with family {self.family} (k is for rectangular)")
        return self

    @property
    def level(self) -> Level:
        return Level(self.family, self.k)


WORLD_KEYS = ("world_config", "world_overrides", "root")
FILES_KEYS = (
    "triplets",
    "format",
    "sortindex",
    "repeated",
    "n_concepts",
    "features_dir",
    "pca",
    "human_embedding",
)


class DataSpec(_Spec):
    """Where the human data and the features come from: the embedded world
    (``kind: world``) or your files (``kind: files``)."""

    kind: DataKind = Field(
        description=one_of(DATA_KINDS) + " (world: build the embedded world and read its "
        "files; files: your triplets and feature files)"
    )
    world_config: str | None = Field(
        None,
        description="a path to a world config or a packaged world config's name, e.g. "
        "default (text; the world the study builds and reads; kind world)",
    )
    world_overrides: dict[str, Any] | None = Field(
        None,
        description="a mapping of world settings, e.g. {n_concepts: 120} (set on top of "
        "data.world_config; kind world)",
    )
    root: str | None = Field(
        None,
        description="null or a folder path (text; the parent folder of worlds; null: "
        "data/worlds, or $MODELRECOVERY_DATA/worlds; kind world)",
    )
    triplets: str | None = Field(
        None,
        description="a path to the human training triplets (text; THINGS 2023 / 2020, "
        "plain CSV i,j,k,odd or .npz); a THINGS 2023 file also holds the repeated set",
    )
    format: TripletFormat | None = Field(
        None, description=one_of(TRIPLET_FORMATS) + " (null: auto, guessed from the file)"
    )
    sortindex: str | None = Field(
        None,
        description="null or a path to THINGS' sortindex (text; the permutation from the "
        "2020 order to THINGS order; format things2020 only)",
    )
    repeated: str | None = Field(
        None,
        description="null or a path to the repeated human triplets (the held-out set every "
        "triplet of which several people answered: noise ceiling, calibration, test), in "
        "any format; null: the set repeated_set of a THINGS 2023 triplets file",
    )
    repeated_set: Annotated[Int, Field(ge=1)] = Field(
        2,
        description="an integer >= 1 (the noise_ceiling set of a THINGS 2023 file used as "
        "the repeated set when data.repeated is null; THINGS: 2)",
    )
    n_concepts: Annotated[Int | None, Field(ge=3)] = Field(
        None,
        description="null or an integer >= 3 (the number of concepts: rows of every feature "
        "file; null: from the triplet file's format, or a CSV file's largest id)",
    )
    features_dir: str | None = Field(
        None,
        description="null or a folder path (text; where the models' feature files are; "
        "null: the current folder)",
    )
    pca: Annotated[Int | None, Field(ge=1)] = Field(
        None,
        description="null or an integer >= 1 (every feature file reduced to this many PCA "
        "dimensions, fitted on all concepts, cached in data.features_dir/pca<k>; null: none)",
    )
    human_embedding: str | None = Field(
        None,
        description="null or a path to a human embedding (text; n_concepts rows; the "
        "report's geometry analysis: each model's distance to it before and after probing)",
    )

    @model_validator(mode="after")
    def _keys_of_kind(self) -> DataSpec:
        if self.kind == "world" and not self.world_config:
            raise _Complete("data.world_config is missing: expected a path, as data.kind is world")
        if self.kind == "files" and not self.triplets:
            raise _Complete(
                "data.triplets is missing: expected the human triplet file, as data.kind is files"
            )
        other = FILES_KEYS if self.kind == "world" else WORLD_KEYS  # repeated_set: default
        given = [key for key in other if getattr(self, key) not in (None, {})]
        if given:
            raise _Complete(
                f"data.{given[0]} = {_show(getattr(self, given[0]))}: expected no "
                f"{given[0]} with data.kind {self.kind} (it is a key of the other kind)"
            )
        return self


class FileModel(_Spec):
    """A model of a files study: its feature file in ``data.features_dir`` and what the
    report groups by."""

    source_kind: Literal["file"] = Field("file", exclude=True, description="file")
    file: Annotated[str, Field(min_length=1)] = Field(
        description="the feature file name in data.features_dir"
    )
    backbone: str | None = Field(
        None,
        description="a timm / open_clip name or null (what `modelrecovery extract --config` "
        "extracts the file with; null: a file you provide)",
    )
    objective: str | None = Field(
        None, description="text or null (a group label, e.g. " + ", ".join(OBJECTIVES) + ")"
    )
    architecture: str | None = Field(
        None, description="text or null (a group label, e.g. " + ", ".join(ARCHITECTURES) + ")"
    )
    labels: dict[str, str] | None = Field(
        None,
        description="null or a mapping group name -> label (any other grouping of the "
        "report, e.g. {training_data: ImageNet})",
    )
    display: str | None = Field(None, description="text or null (the name in figures)")
    source: str | None = Field(None, description="text or null (where the network comes from)")

    @model_validator(mode="before")
    @classmethod
    def _file_name(cls, value: Any) -> Any:
        return {"file": value} if isinstance(value, str) else value


class WorldModel(_Spec):
    """A model of the embedded world: a backbone (features of the world's images) and,
    optionally, its weights, family and human read-out (see
    :class:`modelrecovery.world.models.ModelSpec`)."""

    source_kind: Literal["world"] = Field("world", exclude=True, description="world")
    name: Annotated[str, Field(min_length=1)] = Field(
        description="a backbone name (text; the network run on the world's images, named as "
        "`modelrecovery extract --models` names it: timm:<model>, open_clip:<arch>[:<tag>], "
        "resized:<px>:<backbone>, ...)"
    )
    pretrained: bool = Field(
        False, description="true or false (trained weights; false: seeded random weights)"
    )
    family: str = Field("", description="text (the architecture family, for reports)")
    readout: dict[str, Any] | None = Field(
        None,
        description="null or a read-out mapping (the human read-out mixed into the "
        "backbone's features: the fields of modelrecovery.world.models.Readout; null: the "
        "backbone's plain features)",
    )

    @model_validator(mode="before")
    @classmethod
    def _backbone_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


#: a model entry: a feature file of a files study or a backbone of the embedded world
ModelEntry = Annotated[FileModel | WorldModel, Field(discriminator="source_kind")]


class ProbeSpec(_Spec):
    """How the generators' probes are fitted (one generator per model and level)."""

    regulariser: Regulariser = Field(
        "scalar_shrinkage",
        description=one_of(REGULARISERS) + " (the generators' " + REGULARISER_TEXT,
    )
    ceiling: Annotated[Number | None, Field(gt=1 / 3, lt=1)] = Field(
        None,
        description="null or a number between 1/3 and 1, exclusive (the noise ceiling the "
        "generators' T is calibrated to; null: the leave-one-out ceiling measured on the "
        "repeated set)",
    )
    calibration: Calibration = Field(
        "study",
        description=one_of(CALIBRATIONS) + " (what T matches to the ceiling: the expected "
        "accuracy, or the generator's own expected leave-one-out ceiling)",
    )
    dtype: Dtype = Field(
        "float32", description=one_of(DTYPES) + " (the generators' floating-point precision)"
    )
    workers: Annotated[Int, Field(ge=1)] = Field(
        1,
        description="an integer >= 1 (generators built side by side on threads, one core "
        "each; on the CPU)",
    )
    stopping: Stopping = Field(
        "converged", description=one_of(STOPPING_RULES) + STOPPING_TEXT + ")"
    )
    reduction: Reduction = Field("auto", description=one_of(REDUCTIONS) + REDUCTION_TEXT + ")")
    reshuffle: bool = Field(False, description=RESHUFFLE_TEXT + ")")
    device: Device = Field(
        "cpu",
        description=DEVICE_TEXT + " (where the generators are tuned, fitted and calibrated; "
        "auto: cuda when torch sees a GPU)",
    )


class TuneSpec(_Spec):
    """How λ is chosen for the generators: cross-validation on the human triplets."""

    method: TuneMethod = Field(
        "grid",
        description=one_of(TUNE_METHODS) + " (grid: every λ of tune.lams; tpe: Optuna's TPE "
        "sampler, tune.n_trials trials between the smallest and largest λ, log scale)",
    )
    lams: PositiveNumbers = Field(
        STUDY_LAMBDAS, description=LAMS + " (the λ the generators' cross-validation tries)"
    )
    n_folds: Annotated[Int, Field(ge=2)] = Field(
        5, description="an integer >= 2 (cross-validation folds of the human training triplets)"
    )
    fold_kind: FoldKind = Field(
        "triplets",
        description=one_of(FOLD_KINDS) + " (triplets: folds of the triplets, the study; "
        "concepts: concept-disjoint folds)",
    )
    n_trials: Annotated[Int, Field(ge=1)] = Field(
        20, description="an integer >= 1 (trials of method tpe)"
    )
    seed: Annotated[Int, Field(ge=0)] = Field(
        0, description="an integer >= 0 (the seed of the folds and of the sampler)"
    )
    stopping: Stopping = Field(
        "converged",
        description=one_of(STOPPING_RULES) + STOPPING_TEXT + "; not given: probe.stopping, "
        "in a config with a tune section)",
    )
    reduction: Reduction = Field(
        "auto",
        description=one_of(REDUCTIONS) + REDUCTION_TEXT + "; not given: probe.reduction, in "
        "a config with a tune section)",
    )
    reshuffle: bool = Field(
        False,
        description=RESHUFFLE_TEXT + "; not given: probe.reshuffle, in a config with a tune "
        "section)",
    )


class GridSpec(_Spec):
    """The recovery grid: its axes (sizes, seeds, levels, designs) and every setting of
    the recovery fits and of crowning."""

    sizes: Sizes = Field(
        description="a positive integer or a non-empty list of them (the per-fold training "
        "sizes N: the synthetic training triplets of each fold of a job)"
    )
    seeds: Seeds = Field(
        description="an integer >= 0 or a non-empty list of them (one simulated data set per "
        "seed, size and generator: the seed draws its folds, triplets and responses)"
    )
    levels: _tuple_of(LevelEntry) = Field(
        description="a level {family: zero_shot | diagonal | rectangular | full, k: <rank, "
        "rectangular only>} or a non-empty list of them (the flexibility levels, each with "
        "its own generators)"
    )
    regulariser: Regulariser = Field(
        "scalar_shrinkage",
        description=one_of(REGULARISERS) + " (the recovery fits' " + REGULARISER_TEXT,
    )
    lams: PositiveNumbers = Field(
        FULL_LAMBDAS, description=LAMS + " (the λ each recovery fit chooses among)"
    )
    criterion: Criterion = Field(
        "accuracy",
        description=one_of(CRITERIA) + " (how a recovery fit's λ is chosen: mean validation "
        "accuracy or NLL)",
    )
    tie_rule: TieRule = Field(
        "random",
        description=one_of(TIE_RULES) + " (how tied candidates are crowned: random, uniform "
        "among them, seeded by the job; first, the first in candidate order; study, the "
        "scripts' float32 means with max())",
    )
    stopping: Stopping = Field(
        "converged",
        description=one_of(STOPPING_RULES) + STOPPING_TEXT + "; not given: probe.stopping)",
    )
    n_folds: Annotated[Int, Field(ge=2)] = Field(
        3, description="an integer >= 2 (concept-disjoint folds per job)"
    )
    train_fraction: Annotated[Number, Field(gt=0, lt=1)] = Field(
        0.7,
        description="a number between 0 and 1, exclusive (the share of a fold's non-test "
        "concepts that train; the others validate)",
    )
    eval_fraction: Annotated[Number, Field(gt=0, lt=1)] = Field(
        1 / 8,
        description="a number between 0 and 1, exclusive (validation and test triplets per "
        "fold: round(N x eval_fraction) each)",
    )
    paper_compatible_sampling: bool = Field(
        False,
        description="true or false (the published scripts' sampler: the first N of 5N "
        "sorted draws, the job's seed alone for train, validation and test; false: uniform)",
    )
    warm_start: bool = Field(
        False,
        description="true or false (each λ's fit starts from the previous λ's solution, "
        "strong to weak penalty; false: every λ from the family's start point, as the study)",
    )
    dtype: Dtype = Field(
        "float32", description=one_of(DTYPES) + " (the recovery fits' floating-point precision)"
    )
    threads_per_job: Annotated[Int, Field(ge=1)] = Field(
        1,
        description="an integer >= 1 (a job's fits run side by side on this many threads, "
        "one each; changes no result)",
    )
    device: Device = Field(
        "cpu",
        description=DEVICE_TEXT + " (where the recovery jobs run: cuda, every GPU torch sees, "
        "shared by the workers; changes no job id)",
    )
    triplet_selection: _tuple_of(TripletSelection) = Field(
        ("random",),
        description=one_of(TRIPLET_SELECTIONS) + " or a non-empty list of them (the design "
        "of the training triplets, a job axis: random, uniform, the study; discriminating, "
        "a one-shot design from a pool; sequential, batches chosen under refitted probes)",
    )
    selection_criterion: SelectionCriterion = Field(
        "accuracy",
        description=one_of(SELECTION_CRITERIA) + " (how the winner is crowned: accuracy, "
        "mean test accuracy, the study; loglik, mean held-out log-likelihood; paired, the "
        "loglik leader, decided only when its gap exceeds grid.undecided_z standard errors)",
    )
    selection_pool: Annotated[Int, Field(ge=1)] = Field(
        10,
        description="an integer >= 1 (the designs choose from selection_pool x N uniform "
        "triplets per fold)",
    )
    selection_batches: Annotated[Int, Field(ge=1)] = Field(
        4, description="an integer >= 1 (the sequential design's batches)"
    )
    undecided_z: Annotated[Number, Field(ge=0, allow_inf_nan=False)] = Field(
        1.96,
        description="a finite number >= 0 (paired crowning: decided when the leader's "
        "log-likelihood gap over the runner-up exceeds this many standard errors)",
    )
    human_heldout: bool = Field(
        False,
        description="true or false (also score every fit on the human held-out test triplets)",
    )
    reduction: Reduction = Field("auto", description=one_of(REDUCTIONS) + REDUCTION_TEXT + ")")
    evaluation: Evaluation = Field(
        "exact",
        description=one_of(EVALUATIONS) + " (exact: similarities in float64, a prediction "
        "tied between positions gives shared credit; study: similarities in the fit's "
        "dtype, argmax taking the first position on ties)",
    )
    reshuffle: bool = Field(False, description=RESHUFFLE_TEXT + ")")
    matmul_precision: MatmulPrecision = Field(
        "highest",
        description=one_of(MATMUL_PRECISIONS) + " (the recovery fits' float32 matrix products "
        "on a GPU: highest, IEEE; high, TF32, as the study's recovery runs; no effect on CPU)",
    )

    @field_validator("triplet_selection")
    @classmethod
    def _distinct_selections(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(values)) != len(values):
            raise ValueError("expected distinct triplet selections")
        return values

    @field_validator("levels")
    @classmethod
    def _distinct_levels(cls, levels: tuple[LevelEntry, ...]) -> tuple[LevelEntry, ...]:
        labels = [entry.level.label for entry in levels]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"expected distinct levels; {', '.join(repeated)} repeats")
        return levels

    @property
    def level_list(self) -> tuple[Level, ...]:
        """The grid's levels, in order."""
        return tuple(entry.level for entry in self.levels)

    def settings(self) -> dict[str, Any]:
        """Every setting of the grid but its axes (sizes, seeds, levels): the keyword
        arguments of :class:`modelrecovery.recovery.grid.GridConfig` besides them."""
        return self.model_dump(exclude={"sizes", "seeds", "levels"})


class ExecutorSpec(_Spec):
    """Where the grid's jobs run."""

    kind: ExecutorKind = Field(
        "inprocess",
        description=one_of(EXECUTORS) + " (inprocess: one job at a time in this process; "
        "dask: a local Dask cluster, or the scheduler at executor.address)",
    )
    address: str | None = Field(
        None,
        description="null or a Dask scheduler address (text; a running cluster's; null: a "
        "local cluster)",
    )
    n_workers: Annotated[Int, Field(ge=1)] = Field(
        2, description="an integer >= 1 (the local Dask cluster's CPU workers)"
    )
    jobs_per_gpu: Annotated[Int, Field(ge=1)] = Field(
        2,
        description="an integer >= 1 (on GPUs, grid.device: the local cluster's worker "
        "processes, i.e. jobs at a time, per GPU)",
    )


NAMES = "all or a model name or a list of model names"


class StudySpec(_Spec):
    """A study (see conf/default.yaml): data, models, generators' probe and tuning, the
    recovery grid, where it runs, and whether the report is written."""

    study: Annotated[str, Field(min_length=1)] = Field(
        description="a non-empty name (text; the MLflow experiment and the results' folder)"
    )
    rules: Rules = Field(
        "platform",
        description=one_of(RULES) + " (study_scripts: every documented difference to the "
        "published scripts set to the scripts' behaviour)",
    )
    data: DataSpec = Field(
        description="a mapping (the data section: the human data and the features)"
    )
    models: dict[str, ModelEntry] | None = Field(
        None,
        description="files studies: a mapping model name -> feature file or model entry; "
        "world studies: null (the default set), a backbone name, a list of them or a "
        "mapping name -> backbone",
    )
    extra_models: dict[str, FileModel] | None = Field(
        None,
        description="null or a mapping model name -> feature file or model entry (files "
        "studies: models that join the others with include_extra_models)",
    )
    include_extra_models: bool = Field(
        False,
        description="true or false (true: extra_models join models, as generators and candidates)",
    )
    include_uninformative: bool = Field(
        False,
        description="true or false (false: a generator whose fitted probe predicts the "
        "held-out human triplets no better than chance is not calibrated, runs no jobs and "
        "is listed in the report as left out)",
    )
    reference: Reference = Field(
        "none",
        description=one_of(REFERENCES) + " (paper: the report sets the paper's THINGS "
        "figures beside the results; for studies of the THINGS data)",
    )
    generators: Literal["all"] | tuple[str, ...] = Field(
        "all", description=NAMES + " (the models that generate data)"
    )
    candidates: Literal["all"] | tuple[str, ...] = Field(
        "all", description=NAMES + " (the models refitted in every job)"
    )
    probe: ProbeSpec = Field(
        ProbeSpec(), description="a mapping (the probe section: how the generators are fitted)"
    )
    tune: TuneSpec = Field(
        TuneSpec(), description="a mapping (the tune section: how the generators' λ is chosen)"
    )
    grid: GridSpec = Field(description="a mapping (the grid section: the recovery experiment)")
    executor: ExecutorSpec = Field(
        ExecutorSpec(), description="a mapping (the executor section: where the jobs run)"
    )
    store: str | None = Field(
        None,
        description="null or a folder path (text; the results store, one folder per finished "
        "job; null: results/<study> in the tracking home)",
    )
    report: bool = Field(
        True,
        description="true or false (write the report at the end of recover: figures, tables, HTML)",
    )

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        """Models tagged by the data's kind; the grid's and the tuner's stopping rule (and
        the tuner's reduction and reshuffle) default to the probe's."""
        if not isinstance(value, Mapping):
            return value
        value = dict(value)
        data = value.get("data")
        kind = data.get("kind") if isinstance(data, Mapping) else None
        tag = "file" if kind == "files" else "world"
        for section in ("models", "extra_models"):
            entries = value.get(section)
            if isinstance(entries, str):
                entries = [entries]
            if isinstance(entries, (list, tuple)) and tag == "file":
                raise _Complete(
                    f"{section} = {_show(entries)}: expected a mapping model name -> feature "
                    "file name (in data.features_dir), as data.kind is files"
                )
            if isinstance(entries, (list, tuple)):  # world studies: a list of backbones
                names = [_entry_name(v) for v in entries]
                repeated = sorted({n for n in names if names.count(n) > 1})
                if repeated:
                    raise _Complete(f"{section}: model names repeat: {repeated}")
                entries = dict(zip(names, entries, strict=True)) if entries else None
            if isinstance(entries, Mapping):
                value[section] = {str(k): _tagged(v, tag) for k, v in entries.items()}
            elif entries is None:
                value[section] = None
        if value.get("executor") is None:
            value.pop("executor", None)
        probe = value.get("probe")
        probe = probe if isinstance(probe, Mapping) else {}
        for section, keys in (("grid", ("stopping",)), ("tune", _INHERITED)):
            given = value.get(section)
            if isinstance(given, Mapping):
                inherited = {key: probe[key] for key in keys if key in probe and key not in given}
                value[section] = {**given, **inherited}
        return value

    @field_validator("generators", "candidates", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if value is None or value == "all":
            return "all"
        value = _as_list(value)
        if not all(isinstance(name, str) for name in value):
            raise ValueError("names must be text")
        _distinct(value, "names")
        return value

    @model_validator(mode="after")
    def _models_of_kind(self) -> StudySpec:
        files = self.data.kind == "files"
        if files and not (isinstance(self.models, Mapping) and self.models):
            raise _Complete(
                f"models = {_show(self.models)}: expected a mapping model name -> feature file "
                "name (in data.features_dir), as data.kind is files"
            )
        if not files and self.extra_models:
            raise _Complete("extra_models: expected none with data.kind world (files studies)")
        if self.include_extra_models and not self.extra_models:
            raise _Complete(
                "include_extra_models = True: expected an extra_models mapping to include"
            )
        return self

    # --- what the stages read ---

    def file_models(self) -> dict[str, FileModel]:
        """A files study's models, ``extra_models`` appended when
        ``include_extra_models`` is true."""
        models = dict(self.models or {}) if isinstance(self.models, Mapping) else {}
        if self.include_extra_models:
            extra = dict(self.extra_models or {})
            repeated = sorted(set(models) & set(extra))
            if repeated:
                raise ValueError(f"extra_models repeat models of 'models': {repeated}")
            models.update(extra)
        return models

    def world_models(self) -> list[dict[str, Any]] | None:
        """A world study's models as :class:`~modelrecovery.world.models.ModelSpec`
        fields (None: the default set)."""
        if not self.models:
            return None
        return [entry.model_dump() for entry in self.models.values()]

    def as_config(self) -> dict[str, Any]:
        """The specification as plain data (what ``config.yaml`` of a recover run holds)."""
        return self.model_dump(mode="json")


_INHERITED = ("stopping", "reduction", "reshuffle")


def _entry_name(entry: Any) -> str:
    """A world model's name in a list (its backbone)."""
    if isinstance(entry, Mapping):
        return str(entry.get("name", entry))
    return str(entry)


def _tagged(entry: Any, tag: str) -> Any:
    if isinstance(entry, Mapping):
        return {"source_kind": tag, **entry}
    if isinstance(entry, str):
        return {"source_kind": tag, ("file" if tag == "file" else "name"): entry}
    return entry


# ----------------------------------------------------------------------------------------------
# Errors as one line
# ----------------------------------------------------------------------------------------------


def _submodel(annotation: Any, tag: str | None = None) -> type[BaseModel] | None:
    """The model class inside an annotation (``list[Level]``, ``Level | None``, ...); for
    a tagged union the member whose tag is ``tag``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = []
    for arg in get_args(annotation):
        model = _submodel(arg, tag)
        if model is not None:
            found.append(model)
    for model in found:
        field = model.model_fields.get("source_kind")
        if tag is not None and field is not None and field.default == tag:
            return model
    return found[0] if found else None


_MISSING = object()


def _lookup(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and -len(data) <= part < len(data):
            data = data[part]
        elif part == 0 and not isinstance(data, (list, tuple)):
            continue  # a single value given where a list is expected
        elif isinstance(part, str) and isinstance(data, Mapping) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TAGS = {"file", "world"}


def _known(model: type[BaseModel]) -> list[str]:
    return sorted(name for name in model.model_fields if name != "source_kind")


def _describe(error: Mapping[str, Any], data: Any) -> tuple[str, str]:
    """(dotted key, message) of one pydantic error, the message without the file."""
    model: type[BaseModel] | None = StudySpec
    key = ""
    value_path: list[str | int] = []
    expected: str | None = None
    annotation: Any = None
    parts = list(error["loc"])
    index = 0
    while index < len(parts):
        part = parts[index]
        index += 1
        if isinstance(part, str) and part in _TAGS and annotation is not None:
            model = _submodel(annotation, part)  # a tagged union's member
            continue
        if isinstance(part, str) and model is None:
            if annotation is not None and get_args(annotation) and part in ("dict", "tuple"):
                continue  # a union member's name
            if value_path and isinstance(_lookup(data, value_path), Mapping):
                key = f"{key}.{part}"  # a mapping's own key (a model name)
                value_path.append(part)
                model = _submodel(annotation)
            continue
        if isinstance(part, str):
            field = model.model_fields.get(part)
            if field is None:
                if isinstance(_lookup(data, value_path), Mapping) and part in (
                    _lookup(data, value_path) or {}
                ):
                    known = _known(model)
                    key = f"{key}.{part}" if key else part
                    return key, f"unknown key {key} (known: {known})"
                continue  # a union member's name
            key = f"{key}.{part}" if key else part
            value_path.append(part)
            expected = field.description
            annotation = field.annotation
            model = _submodel(annotation)
            if model is not None and _is_mapping_of_models(annotation):
                model = None  # the next part is a mapping key
        else:
            if model is None and annotation is not None and _submodel(annotation) is None:
                break  # an item of a list of plain values: name the whole list
            key = f"{key}[{part}]"
            value_path.append(part)
            model = _submodel(annotation)
    if error["type"] == "extra_forbidden":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return key, f"unknown key {key} (known: {_known_at(parent)})"
    if error["type"] == "missing":
        return key, f"{key} is missing: expected {expected}"
    reason = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
    if isinstance(reason, _Complete) or not key:
        return key, str(reason) if reason is not None else error["msg"]
    if reason is not None and str(reason).startswith("expected"):
        text = str(reason)  # a check across keys, or of a whole list or mapping
    else:
        text = f"expected {expected}" if expected else error["msg"]
    value = _lookup(data, value_path)
    shown = f"{key} = {_show(value)}" if value is not _MISSING else key
    return key, f"{shown}: {text}"


def _is_mapping_of_models(annotation: Any) -> bool:
    text = str(annotation)
    return text.startswith("dict[") or "dict[str" in text


def _known_at(key: str) -> list[str]:
    """The keys of the section at a dotted key (``grid.levels[0]`` -> a level's keys)."""
    model: type[BaseModel] | None = StudySpec
    for part in _bare(key).split(".") if key else []:
        if model is None:
            break
        field = model.model_fields.get(part)
        if field is None:  # a model name in a mapping of models
            continue
        model = _submodel(field.annotation)
    return _known(model) if model is not None else []


def _bare(key: str) -> str:
    """``grid.levels[1].family`` -> ``grid.levels.family``."""
    while "[" in key:
        start = key.index("[")
        key = key[:start] + key[key.index("]", start) + 1 :]
    return key


def _origin(key: str, overrides: Iterable[str]) -> str:
    """`` (override <text>)`` when a ``--set`` override set the key or a section above it."""
    bare = _bare(key)
    for text in reversed(list(overrides)):
        name = text.split("=", 1)[0]
        if bare == name or bare.startswith(name + ".") or name.startswith(bare + "."):
            return f" (override {text})"
    return ""


def validate_spec(
    config: Mapping[str, Any], source: str = "config", overrides: Iterable[str] = ()
) -> StudySpec:
    """Check a study configuration (overrides applied) and return its :class:`StudySpec`.

    Parameters
    ----------
    config : the configuration, overrides applied.
    source : the file it came from, for error messages.
    overrides : the ``key=value`` overrides applied, to say which one set a bad value.

    Raises
    ------
    ValueError
        One line: ``config <source>: <key> = <value>: expected <what>`` for every bad key,
        joined by ``; ``.
    """
    overrides = list(overrides)
    config = dict(config)
    if config.get("rules") == "study_scripts":
        replaced = apply_study_scripts(config, source, overrides)
        if replaced:
            logging.getLogger("modelrecovery.config").info(
                "config %s: rules: study_scripts replaced %s", source, ", ".join(replaced)
            )
    try:
        return StudySpec.model_validate(config)
    except ValidationError as err:
        problems: dict[str, str] = {}  # message -> the override that set the key, if any
        for error in err.errors():
            key, text = _describe(error, config)
            problems.setdefault(text, _origin(key, overrides))
        origins = set(problems.values())
        if len(origins) == 1:  # say it once
            line = "; ".join(problems) + origins.pop()
        else:
            line = "; ".join(text + origin for text, origin in problems.items())
        raise ValueError(f"config {source}: {line}") from None


#: What ``rules: study_scripts`` sets (section -> key -> value): the published scripts'
#: behaviour wherever the platform differs (docs/science/study-rules.md): their stopping
#: rule and p x p fits (computed as p x p matrices), their per-step reshuffle, their sampler
#: with one seed for every set, their float32 argmax evaluation and float32 crowning with
#: max(), the fixed 0.678 calibration target matched by expected accuracy (calibration
#: study), TF32 products in the recovery fits on a GPU.
STUDY_SCRIPTS: dict[str, dict[str, Any]] = {
    "probe": {
        "stopping": "study",
        "reduction": "never",
        "reshuffle": True,
        "ceiling": 0.678,
        "calibration": "study",
        "dtype": "float32",
    },
    "tune": {"stopping": "study", "reduction": "never", "reshuffle": True},
    "grid": {
        "stopping": "study",
        "reduction": "never",
        "reshuffle": True,
        "paper_compatible_sampling": True,
        "tie_rule": "study",
        "evaluation": "study",
        "matmul_precision": "high",
        "criterion": "accuracy",
        "selection_criterion": "accuracy",
        "warm_start": False,
        "dtype": "float32",
    },
}


def apply_study_scripts(
    config: dict[str, Any], source: str = "config", overrides: Iterable[str] = ()
) -> list[str]:
    """Set every key of :data:`STUDY_SCRIPTS` in ``config`` (in place), replacing what the
    configuration files give, and return the replaced ``key = value`` texts (the stages
    log them). A ``--set`` override of one of these keys with another value is an error
    (one line): each piece is an option of its own under ``rules: platform``."""
    overridden = {text.split("=", 1)[0] for text in overrides}
    conflicts, replaced = [], []
    for section, values in STUDY_SCRIPTS.items():
        given = config.get(section)
        given = dict(given) if isinstance(given, Mapping) else {}
        config[section] = given
        for key, value in values.items():
            if key in given and given[key] != value:
                text = f"{section}.{key} = {_show(given[key])}"
                (conflicts if f"{section}.{key}" in overridden else replaced).append(text)
            given[key] = value
    if conflicts:
        raise ValueError(
            f"config {source}: override {', '.join(conflicts)} conflicts with rules: "
            "study_scripts, which sets the published scripts' values (drop the override, "
            "or set rules=platform and choose each piece)"
        )
    return replaced


def load_spec(name_or_path: str, overrides: Iterable[str] = ()) -> StudySpec:
    """Read a study configuration (a name under ``conf/`` or a path), apply ``--set``
    overrides and check it: the study's :class:`StudySpec` (see
    :func:`modelrecovery.config.read_config` for ``base:``)."""
    from modelrecovery.config import apply_overrides, read_config, resolve_config_path, shown

    path = resolve_config_path(name_or_path)
    overrides = list(overrides)
    return validate_spec(apply_overrides(read_config(path), overrides), shown(path), overrides)
