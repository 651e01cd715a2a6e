"""The schema of a study configuration (``conf/*.yaml`` after ``--set`` overrides).

:func:`validate_config` checks every key the stages read (types, ranges, known values)
before any work starts and returns the configuration normalised: numbers given as text
(YAML reads ``1e-2`` as text) become numbers, and a single value where a list is expected
becomes a one-element list (``grid.sizes=4000`` -> ``[4000]``). Keys that are not given
stay absent (the stages' defaults apply). A bad configuration raises one ValueError line
naming the file, the key, its value and what was expected, e.g.
``config conf/default.yaml: grid.n_folds = 'abc': expected an integer >= 2``.

Unknown keys: ``grid`` and ``tune`` refuse them (every key there is passed on to the
grid's or the tuner's settings); other sections ignore them, as before. ``--set``
overrides refuse unknown keys everywhere (:func:`modelrecovery.config.apply_overrides`).

The allowed names are spelt out here (importing the probe would import torch); the tests
check that they equal the probe's and the grid's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelrecovery.devices import check_device

__all__ = ["FAMILIES", "REGULARISERS", "StudyConfig", "validate_config"]

FAMILIES = ("zero_shot", "diagonal", "rectangular", "full")
REGULARISERS = ("scalar_shrinkage", "l2", "l1")
CRITERIA = ("accuracy", "nll")
TIE_RULES = ("random", "first", "study")
STOPPING_RULES = ("converged", "study")
REDUCTIONS = ("auto", "always", "path", "never")
EVALUATIONS = ("exact", "study")
MATMUL_PRECISIONS = ("highest", "high")
RULES = ("platform", "study_scripts")
DTYPES = ("float32", "float64")
EXECUTORS = ("inprocess", "dask")
TUNE_METHODS = ("grid", "tpe")
FOLD_KINDS = ("triplets", "concepts")
DATA_KINDS = ("world", "files")
TRIPLET_SELECTIONS = ("random", "discriminating", "sequential")
SELECTION_CRITERIA = ("accuracy", "loglik", "paired")

Family = Literal["zero_shot", "diagonal", "rectangular", "full"]
Regulariser = Literal["scalar_shrinkage", "l2", "l1"]
Stopping = Literal["converged", "study"]
Reduction = Literal["auto", "always", "path", "never"]
Dtype = Literal["float32", "float64"]


def _one_of(names: Sequence[str]) -> str:
    return "one of " + ", ".join(names)


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


def _device(value: Any) -> str:
    return check_device(value)


Int = Annotated[int, BeforeValidator(_no_bool)]
Number = Annotated[float, BeforeValidator(_no_bool)]
Device = Annotated[str, BeforeValidator(_device)]


def _list_of(item: Any) -> Any:
    return Annotated[list[item], BeforeValidator(_as_list), Field(min_length=1)]


class _Section(BaseModel):
    """A section whose unknown keys are ignored (kept as they are)."""

    model_config = ConfigDict(extra="allow")


class _ClosedSection(BaseModel):
    """A section whose every key is passed on: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class LevelSchema(_ClosedSection):
    """One flexibility level of ``grid.levels``."""

    family: Family = Field(description=_one_of(FAMILIES))
    k: Annotated[Int | None, Field(ge=1)] = Field(
        None, description="an integer >= 1 (the rank of a rectangular level)"
    )
    sizes: _list_of(Annotated[Int, Field(ge=1)]) | None = Field(
        None,
        description="null or a positive integer or a non-empty list of them (this "
        "level's sizes, instead of grid.sizes)",
    )
    seeds: _list_of(Annotated[Int, Field(ge=0)]) | None = Field(
        None,
        description="null or an integer >= 0 or a non-empty list of them (this "
        "level's seeds, instead of grid.seeds)",
    )

    @model_validator(mode="after")
    def _k_matches_family(self) -> LevelSchema:
        if self.family == "rectangular" and self.k is None:
            raise ValueError(
                "expected k >= 1 with family rectangular, e.g. {family: rectangular, k: 8}"
            )
        if self.family != "rectangular" and self.k is not None:
            raise ValueError(f"expected no k with family {self.family} (k is for rectangular)")
        return self


class DataSchema(_Section):
    kind: Literal["world", "files"] = Field(description=_one_of(DATA_KINDS))
    world_config: str | None = Field(None, description="a path to a world config (text)")
    world_overrides: dict[str, Any] | None = Field(
        None, description="a mapping of world settings, e.g. {n_concepts: 120}"
    )
    root: str | None = Field(None, description="null or a folder path (text)")
    triplets: str | None = Field(None, description="a path to the human triplet file (text)")
    n_concepts: Annotated[Int | None, Field(ge=3)] = Field(
        None, description="null or an integer >= 3"
    )
    features_dir: str | None = Field(None, description="null or a folder path (text)")
    pca: Annotated[Int | None, Field(ge=1)] = Field(
        None, description="null or an integer >= 1 (PCA dimensions of every feature file)"
    )
    human_embedding: str | None = Field(
        None, description="null or a path to a human embedding (text; n_concepts rows)"
    )

    @model_validator(mode="after")
    def _paths_of_kind(self) -> DataSchema:
        if self.kind == "world" and not self.world_config:
            raise _Complete("data.world_config is missing: expected a path, as data.kind is world")
        if self.kind == "files" and not self.triplets:
            raise _Complete(
                "data.triplets is missing: expected the human triplet file, as data.kind is files"
            )
        return self


class ProbeSchema(_Section):
    regulariser: Regulariser = Field(description=_one_of(REGULARISERS))
    ceiling: Annotated[Number | None, Field(gt=1 / 3, lt=1)] = Field(
        None, description="null or a number between 1/3 and 1 (exclusive)"
    )
    dtype: Dtype = Field("float32", description=_one_of(DTYPES))
    workers: Annotated[Int, Field(ge=1)] = Field(1, description="an integer >= 1")
    stopping: Stopping = Field("converged", description=_one_of(STOPPING_RULES))
    reduction: Reduction = Field("auto", description=_one_of(REDUCTIONS))
    reshuffle: bool = Field(False, description="true or false")
    device: Device = Field("cpu", description="one of cpu, cuda, auto or cuda:<n>")


PositiveNumbers = _list_of(Annotated[Number, Field(gt=0, allow_inf_nan=False)])
Sizes = _list_of(Annotated[Int, Field(ge=1)])
Seeds = _list_of(Annotated[Int, Field(ge=0)])
Levels = _list_of(LevelSchema)
LAMS = "a finite number > 0 or a non-empty list of them"


class TuneSchema(_ClosedSection):
    method: Literal["grid", "tpe"] = Field("grid", description=_one_of(TUNE_METHODS))
    lams: PositiveNumbers = Field(description=LAMS)
    n_folds: Annotated[Int, Field(ge=2)] = Field(5, description="an integer >= 2")
    fold_kind: Literal["triplets", "concepts"] = Field("triplets", description=_one_of(FOLD_KINDS))
    n_trials: Annotated[Int, Field(ge=1)] = Field(20, description="an integer >= 1")
    seed: Annotated[Int, Field(ge=0)] = Field(0, description="an integer >= 0")
    stopping: Stopping = Field("converged", description=_one_of(STOPPING_RULES))
    reduction: Reduction = Field("auto", description=_one_of(REDUCTIONS))
    reshuffle: bool = Field(False, description="true or false")


class GridSchema(_ClosedSection):
    sizes: Sizes = Field(description="a positive integer or a non-empty list of them")
    seeds: Seeds = Field(description="an integer >= 0 or a non-empty list of them")
    levels: Levels = Field(
        description="a level {family: zero_shot | diagonal | rectangular | full, k: <rank, "
        "rectangular only>} or a non-empty list of them"
    )
    regulariser: Regulariser = Field("scalar_shrinkage", description=_one_of(REGULARISERS))
    lams: PositiveNumbers = Field(description=LAMS)
    criterion: Literal["accuracy", "nll"] = Field("accuracy", description=_one_of(CRITERIA))
    tie_rule: Literal["random", "first", "study"] = Field("random", description=_one_of(TIE_RULES))
    stopping: Stopping = Field("converged", description=_one_of(STOPPING_RULES))
    n_folds: Annotated[Int, Field(ge=2)] = Field(3, description="an integer >= 2")
    train_fraction: Annotated[Number, Field(gt=0, lt=1)] = Field(
        0.7, description="a number between 0 and 1 (exclusive)"
    )
    eval_fraction: Annotated[Number, Field(gt=0, lt=1)] = Field(
        1 / 8, description="a number between 0 and 1 (exclusive)"
    )
    paper_compatible_sampling: bool = Field(False, description="true or false")
    warm_start: bool = Field(False, description="true or false")
    dtype: Dtype = Field("float32", description=_one_of(DTYPES))
    threads_per_job: Annotated[Int, Field(ge=1)] = Field(1, description="an integer >= 1")
    device: Device = Field("cpu", description="one of cpu, cuda, auto or cuda:<n>")
    triplet_selection: _list_of(Literal["random", "discriminating", "sequential"]) = Field(
        ["random"],
        description=_one_of(TRIPLET_SELECTIONS) + " or a non-empty list of them",
    )
    selection_criterion: Literal["accuracy", "loglik", "paired"] = Field(
        "accuracy", description=_one_of(SELECTION_CRITERIA)
    )
    selection_pool: Annotated[Int, Field(ge=1)] = Field(
        10, description="an integer >= 1 (the design pool: selection_pool x N triplets)"
    )
    selection_batches: Annotated[Int, Field(ge=1)] = Field(4, description="an integer >= 1")
    undecided_z: Annotated[Number, Field(ge=0, allow_inf_nan=False)] = Field(
        1.96, description="a finite number >= 0"
    )
    human_heldout: bool = Field(
        False,
        description="true or false (also score every fit on the human held-out test triplets)",
    )
    reduction: Reduction = Field("auto", description=_one_of(REDUCTIONS))
    evaluation: Literal["exact", "study"] = Field("exact", description=_one_of(EVALUATIONS))
    reshuffle: bool = Field(False, description="true or false")
    matmul_precision: Literal["highest", "high"] = Field(
        "highest", description=_one_of(MATMUL_PRECISIONS)
    )

    @field_validator("triplet_selection")
    @classmethod
    def _distinct_selections(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("expected distinct triplet selections")
        return values

    @field_validator("levels")
    @classmethod
    def _distinct_levels(cls, levels: list[LevelSchema]) -> list[LevelSchema]:
        labels = [lv.family if lv.k is None else f"{lv.family}{lv.k}" for lv in levels]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"expected distinct levels; {', '.join(repeated)} repeats")
        return levels


class ExecutorSchema(_Section):
    kind: Literal["inprocess", "dask"] = Field("inprocess", description=_one_of(EXECUTORS))
    address: str | None = Field(None, description="null or a Dask scheduler address (text)")
    n_workers: Annotated[Int, Field(ge=1)] = Field(2, description="an integer >= 1")
    jobs_per_gpu: Annotated[Int, Field(ge=1)] = Field(2, description="an integer >= 1")


NAMES = "all or a model name or a list of model names"
OBJECTIVES = ("supervised", "self-supervised", "image-text")
ARCHITECTURES = ("CNN", "transformer")
MODEL_ENTRY_KEYS = ("file", "backbone", "objective", "architecture", "display", "source")


def model_entry_problem(entry: Any) -> str | None:
    """What is wrong with one ``models`` entry of a files study, or None. An entry is a
    feature file name, or a mapping ``{file, backbone, objective, architecture, display,
    source}`` (only ``file`` required; ``backbone`` a timm / open_clip name or null)."""
    if isinstance(entry, str) and entry:
        return None
    if not isinstance(entry, Mapping):
        return "expected a feature file name or a mapping with at least 'file'"
    unknown = sorted(set(entry) - set(MODEL_ENTRY_KEYS))
    if unknown:
        return f"unknown key(s) {unknown} (known: {list(MODEL_ENTRY_KEYS)})"
    if not isinstance(entry.get("file"), str) or not entry["file"]:
        return "expected 'file': the feature file name in data.features_dir"
    for key in ("backbone", "display", "source"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return f"expected '{key}' to be text or null"
    if entry.get("objective") not in (None, *OBJECTIVES):
        return f"expected 'objective' {_one_of(OBJECTIVES)} (or null)"
    if entry.get("architecture") not in (None, *ARCHITECTURES):
        return f"expected 'architecture' {_one_of(ARCHITECTURES)} (or null)"
    return None


class StudyConfig(_Section):
    """A study configuration (see conf/default.yaml)."""

    study: Annotated[str, Field(min_length=1)] = Field(description="a non-empty name (text)")
    rules: Literal["platform", "study_scripts"] = Field(
        "platform",
        description=_one_of(RULES) + " (study_scripts: every documented difference to the "
        "published scripts set to the scripts' behaviour)",
    )
    data: DataSchema = Field(description="a mapping (the data section)")
    models: Any = Field(
        None,
        description="null, a model name, a list of models or a mapping name -> model or file",
    )
    extra_models: Any = Field(
        None, description="null or a mapping model name -> feature file or model entry"
    )
    include_extra_models: bool = Field(False, description="true or false")
    generators: Any = Field("all", description=NAMES)
    candidates: Any = Field("all", description=NAMES)
    probe: ProbeSchema = Field(description="a mapping (the probe section)")
    tune: TuneSchema = Field(description="a mapping (the tune section)")
    grid: GridSchema = Field(description="a mapping (the grid section)")
    executor: ExecutorSchema | None = Field(None, description="a mapping (the executor section)")
    store: str | None = Field(None, description="null or a folder path (text)")
    report: bool = Field(True, description="true or false")

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if value is not None and not isinstance(value, (list, Mapping)):
            raise ValueError("not a model list")
        return value

    @field_validator("generators", "candidates", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if value is None or value == "all":
            return value
        value = _as_list(value)
        if not all(isinstance(name, str) for name in value):
            raise ValueError("names must be text")
        return value

    @model_validator(mode="after")
    def _files_need_models(self) -> StudyConfig:
        files = self.data.kind == "files"
        if files and not (isinstance(self.models, Mapping) and self.models):
            raise _Complete(
                f"models = {_show(self.models)}: expected a mapping model name -> feature file "
                "name (in data.features_dir), as data.kind is files"
            )
        if files:
            for section in ("models", "extra_models"):
                entries = getattr(self, section)
                if entries is None and section == "extra_models":
                    continue
                if not isinstance(entries, Mapping):
                    raise _Complete(
                        f"{section} = {_show(entries)}: expected a mapping model name -> "
                        "feature file or model entry"
                    )
                for name, entry in entries.items():
                    problem = model_entry_problem(entry)
                    if problem:
                        raise _Complete(f"{section}.{name} = {_show(entry)}: {problem}")
            if self.include_extra_models and not self.extra_models:
                raise _Complete(
                    "include_extra_models = True: expected an extra_models mapping to include"
                )
        return self


# ----------------------------------------------------------------------------------------------
# Errors as one line
# ----------------------------------------------------------------------------------------------


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation (``list[Level]``, ``Level | None``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


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


def _describe(error: Mapping[str, Any], data: Any) -> tuple[str, str]:
    """(dotted key, message) of one pydantic error, the message without the file."""
    model: type[BaseModel] | None = StudyConfig
    key = ""
    value_path: list[str | int] = []
    expected: str | None = None
    for part in error["loc"]:
        if isinstance(part, str):
            if model is None:
                continue  # a union member's tag
            field = model.model_fields.get(part)
            key = f"{key}.{part}" if key else part
            value_path.append(part)
            if field is None:
                known = sorted(model.model_fields)
                return key, f"unknown key {key} (known: {known})"
            expected = field.description
            model = _submodel(field.annotation)
        else:
            if model is None:
                break  # an item of a list of plain values: name the whole list
            key = f"{key}[{part}]"
            value_path.append(part)
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


def validate_config(
    config: Mapping[str, Any], source: str = "config", overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Check a study configuration; return it normalised (see the module docstring).

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
    try:
        checked = StudyConfig.model_validate(dict(config))
    except ValidationError as err:
        overrides = list(overrides)
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
    out = checked.model_dump(exclude_unset=True)
    if out.get("rules") == "study_scripts":
        replaced = apply_study_scripts(out, source, overrides)
        if replaced:
            logging.getLogger("modelrecovery.config").info(
                "config %s: rules: study_scripts replaced %s", source, ", ".join(replaced)
            )
    return out


#: What ``rules: study_scripts`` sets (section -> key -> value): the published scripts'
#: behaviour wherever the platform differs (README, "The study's rules"): their stopping
#: rule and p x p fits (computed as p x p matrices), their per-step reshuffle, their sampler
#: with one seed for every set, their float32 argmax evaluation and float32 crowning with
#: max(), the fixed 0.678 calibration target, TF32 products in the recovery fits on a GPU.
STUDY_SCRIPTS: dict[str, dict[str, Any]] = {
    "probe": {
        "stopping": "study",
        "reduction": "never",
        "reshuffle": True,
        "ceiling": 0.678,
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
        given = config.setdefault(section, {})
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
