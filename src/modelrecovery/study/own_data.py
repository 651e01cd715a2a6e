"""A study of your own models and data: ``modelrecovery init`` writes its configuration.

From a folder of feature files (one model per file, named after the file), the human
training triplets (any supported format, plain CSV ``i,j,k,odd`` included) and the
repeated set (its own file in any format, or a set of a THINGS 2023 file), it writes a
``study.yaml`` a user can read and edit: every key with a one-line comment, the four
flexibility levels, and a grid sized to the data: per-fold training sizes from a few
hundred up to what the user's own data give one fold (:func:`per_fold_size`), 2 seeds.
Paths are written absolute (the config runs from any folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelrecovery.data.loaders import detect_format, load_concept_ids
from modelrecovery.features.io import FEATURE_SUFFIXES, load_features
from modelrecovery.study.inputs import load_human_data
from modelrecovery.study.spec import FULL_LAMBDAS, STUDY_LAMBDAS, validate_spec

TRAIN_FRACTION = 0.7  # the grid's share of a fold's non-test concepts that train
SMALLEST = 200  # the grid's smallest per-fold size
N_SIZES = 5


def per_fold_size(n_triplets: int, n_concepts: int, train_fraction: float = TRAIN_FRACTION) -> int:
    """The per-fold training size N the user's own data give: the largest N whose fold
    (training, validation and test parts, concept-disjoint) ``n_triplets`` uniformly
    sampled triplets fill (:func:`modelrecovery.analysis.verdict.triplets_to_collect`, its
    inverse)."""
    from modelrecovery.analysis.verdict import triplets_to_collect

    low, high = 1, max(1, n_triplets)
    if triplets_to_collect(low, train_fraction, n_concepts=n_concepts) > n_triplets:
        return 1
    while low < high:  # triplets_to_collect grows with N
        mid = (low + high + 1) // 2
        if triplets_to_collect(mid, train_fraction, n_concepts=n_concepts) <= n_triplets:
            low = mid
        else:
            high = mid - 1
    return low


def grid_sizes(largest: int, smallest: int = SMALLEST, count: int = N_SIZES) -> list[int]:
    """About ``count`` sizes spaced evenly in log up to ``largest``, from ``smallest`` (or,
    when ``largest`` is below it, from an eighth of ``largest`` but at least 20), rounded to
    two significant digits (``largest`` itself is kept)."""
    if largest < smallest:
        smallest = max(20, largest // 8)
    if largest <= smallest:
        return [largest]
    out = [int(float(f"{value:.2g}")) for value in np.geomspace(smallest, largest, count)]
    out[-1] = largest
    return sorted(set(out))


@dataclass(frozen=True)
class OwnData:
    """What ``init`` found: the models' files, the human data's sizes."""

    models: dict[str, Path]
    dims: dict[str, int]
    n_concepts: int
    n_train: int
    n_repeated: int
    triplets_format: str
    n_repeated_triplets: int = 0  # distinct triplets of the repeated set


def _feature_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise NotADirectoryError(f"--features {folder}: not a folder of feature files")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FEATURE_SUFFIXES
    )
    files = [p for p in files if not p.name.endswith("_ids.txt")]
    if not files:
        raise FileNotFoundError(
            f"--features {folder}: no feature files ({', '.join(FEATURE_SUFFIXES)}; one row "
            "per concept)"
        )
    names = {}
    for path in files:
        name = path.stem
        if name in names:
            raise ValueError(f"--features {folder}: two files are named {name!r}: {path.name}")
        names[name] = path
    return names


def survey(
    features: Path,
    triplets: Path,
    repeated: Path | None = None,
    repeated_set: int = 2,
    concepts: Path | None = None,
) -> OwnData:
    """Read everything once (so a bad file is found now, with its name): the feature
    files, the training triplets and the repeated set."""
    models = _feature_files(features)
    n_concepts = len(load_concept_ids(concepts)) if concepts is not None else None
    fmt = detect_format(triplets)
    if repeated is None and fmt != "things2023":
        raise ValueError(
            f"--triplets {triplets} is a {fmt} file, which holds no repeated set: give "
            "--repeated <file> (triplets each answered by several people)"
        )
    # each file read once: with --concepts, checked against their number (its own error,
    # naming the file); without, every file's rows must agree
    shapes = {
        name: load_features(path, n_concepts=n_concepts).shape for name, path in models.items()
    }
    if n_concepts is None:
        rows = {name: shape[0] for name, shape in shapes.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(
                f"--features {features}: the files have different numbers of rows (one per "
                f"concept): {rows}"
            )
        n_concepts = next(iter(rows.values()))
    human = load_human_data(  # the repeated file too, with its own errors
        triplets,
        n_concepts=n_concepts,
        test_path=repeated,
        test_set=repeated_set,
        n_concepts_option="--concepts",
    )
    dims = {name: int(shape[1]) for name, shape in shapes.items()}
    distinct = len(np.unique(human.test.sorted_keys()))
    return OwnData(models, dims, n_concepts, len(human.train), len(human.test), fmt, distinct)


def config_text(
    study: str,
    data: OwnData,
    features: Path,
    triplets: Path,
    repeated: Path | None,
    repeated_set: int,
) -> str:
    """The study's YAML, every key commented."""
    from modelrecovery.analysis.verdict import largest_size

    excluded = data.n_train + data.n_repeated_triplets
    largest = min(
        per_fold_size(data.n_train, data.n_concepts),
        largest_size(data.n_concepts, TRAIN_FRACTION, 1 / 8, 3, excluded),
    )
    sizes = grid_sizes(largest)
    k = max(1, min(16, min(data.dims.values())))
    models = "\n".join(f"  {name}: {{file: {path.name}}}" for name, path in data.models.items())
    lams = ", ".join(f"{v:g}" for v in FULL_LAMBDAS)
    tune_lams = ", ".join(f"{v:g}" for v in STUDY_LAMBDAS)
    repeated_line = (
        f"  repeated: {repeated.resolve()}   # the repeated set ({data.n_repeated} responses)"
        if repeated is not None
        else f"  repeated: null         # the repeated set: set {repeated_set} of the triplets file"
    )
    return f"""\
# A model-recovery study of your own models and data (written by `modelrecovery init`).
# Would crowning the best-fitting model with a flexible probe pick the right one? Each
# model is fitted to your human triplets at four flexibility levels, data are simulated
# from each fitted model at your noise level, every model is refitted, and the report
# says how often the generating model wins. Check it:  modelrecovery check --config <this file>
# Run it:             modelrecovery recover --config <this file>
study: {study}                   # the MLflow experiment and the results' folder name
rules: platform          # platform | study_scripts (the published scripts' every choice)
reference: none          # none | paper (the paper's THINGS figures beside the results)

data:
  kind: files            # your files (world: the embedded simulated THINGS)
  triplets: {triplets.resolve()}   # training triplets ({data.n_train}, {data.triplets_format})
  format: null           # null: guessed from the file (things2023 | things2020 | csv | npz)
{repeated_line}
  repeated_set: {repeated_set}        # a THINGS 2023 noise_ceiling set (if repeated is null)
  n_concepts: {data.n_concepts}        # concepts (rows of every feature file)
  features_dir: {features.resolve()}   # where the model files are
  pca: null              # an integer: every feature file reduced to that many PCA dimensions
  human_embedding: null  # a human embedding (one row per concept) for the geometry analysis

# One model per feature file (name: {{file: ...}}). Optional per model: objective,
# architecture (the report's group analyses), display (name in figures), backbone.
models:
{models}

generators: all          # the models that generate data (all, or a list of names)
candidates: all          # the models refitted in every job
include_uninformative: false  # true: also simulate from models no better than chance

probe:                   # the generators: each model fitted to your triplets, per level
  regulariser: scalar_shrinkage  # scalar_shrinkage (toward a scaled identity) | l2 | l1
  ceiling: null          # null: the noise ceiling of your repeated set
  calibration: loo_matched  # loo_matched: the generators' own noise ceiling = yours
                           # | study (their expected accuracy = it: noisier data)
  dtype: float32         # float32 | float64
  workers: 2             # generators built side by side (threads)
  stopping: study        # study (the paper's early stop) | converged (the optimum)
  device: cpu            # cpu | cuda | cuda:<n> | auto

tune:                    # λ of the generators, by cross-validation on your training triplets
  method: grid           # grid | tpe
  lams: [{tune_lams}]  # λ tried
  n_folds: 3             # cross-validation folds of your training triplets
  seed: 0                # the folds' seed

grid:                    # the recovery experiment
  sizes: {sizes}  # per-fold training sizes N (below)
  # N from {SMALLEST} up to {largest}: what your {data.n_train} training triplets give one
  # fold (the triplets within its training, validation and test concepts), at most what
  # your {data.n_concepts} concepts hold besides your human triplets
  seeds: [0, 1]          # simulated datasets per size and generator
  levels:                # the flexibility levels, each with its own generators
    - {{family: zero_shot}}
    - {{family: diagonal}}
    - {{family: rectangular, k: {k}}}
    - {{family: full}}
  lams: [{lams}]         # the λ each refit chooses among
  n_folds: 3             # concept-disjoint folds per job
  criterion: accuracy    # how λ is chosen: accuracy | nll
  tie_rule: random       # tied candidates: random (seeded) | first | study
  stopping: study        # the refits' stopping rule: study | converged

executor:
  kind: dask             # inprocess | dask (local workers, or a cluster's scheduler)
  address: null          # a Dask scheduler address for a cluster
  n_workers: 2           # local CPU workers

store: null              # results store folder (null: beside the tracking home)
report: true             # the HTML report with the verdict
"""


def init_study(
    folder: str | Path,
    features: str | Path,
    triplets: str | Path,
    repeated: str | Path | None = None,
    repeated_set: int = 2,
    concepts: str | Path | None = None,
    study: str | None = None,
    force: bool = False,
) -> tuple[Path, OwnData]:
    """Write ``<folder>/study.yaml`` for the given data (checked against the study's
    specification before it is written); returns its path and what was found."""
    folder = Path(folder)
    target = folder / "study.yaml"
    if target.exists() and not force:
        raise ValueError(f"{target} exists (--force overwrites it)")
    features, triplets = Path(features), Path(triplets)
    repeated = Path(repeated) if repeated is not None else None
    data = survey(features, triplets, repeated, repeated_set, Path(concepts) if concepts else None)
    name = study or folder.resolve().name or "own-study"
    text = config_text(name, data, features, triplets, repeated, repeated_set)
    import yaml

    validate_spec(yaml.safe_load(text), str(target))  # what is written loads
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target, data
