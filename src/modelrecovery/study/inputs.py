"""The inputs of a study, resolved from its specification: the human data (training
triplets, the repeated test set, every other set to avoid) and a feature file per model
(building and extracting the embedded world when ``data.kind`` is ``world``), with
per-model metadata and provenance hashes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelrecovery.config import resolve_world_config
from modelrecovery.data.loaders import detect_format, load_things2023_split, load_triplets
from modelrecovery.data.triplets import Triplets, triplet_keys
from modelrecovery.features.io import load_features
from modelrecovery.study.keys import file_hash
from modelrecovery.study.spec import FileModel, StudySpec

THINGS_TEST_SET = 2


@dataclass(frozen=True)
class HumanData:
    """Human training triplets and the repeated (noise-ceiling) test set, with hashes;
    ``other_ids`` holds the triplets of every other set of the file (e.g. THINGS
    noise-ceiling sets 1 and 3), which simulations must avoid too."""

    train: Triplets
    test: Triplets | None
    path: Path
    data_hash: str
    other_ids: np.ndarray | None = None
    # how to give the number of concepts (e.g. "--n-concepts") when it was not given but
    # inferred from the largest concept id of a CSV file; None when it was given or stored
    n_concepts_option: str | None = None


def load_human_data(
    path: str | Path,
    *,
    format: str = "auto",
    sortindex: str | None = None,
    n_concepts: int | None = None,
    test_path: str | Path | None = None,
    test_set: int = THINGS_TEST_SET,
    n_concepts_option: str = "--n-concepts",
) -> HumanData:
    """Read human triplets. A THINGS 2023 file splits by its ``noise_ceiling`` column
    (0 = training, ``test_set`` = the repeated test set); other formats are all training
    data, with the test set from ``test_path``. ``n_concepts_option`` names the setting
    of ``n_concepts`` in error messages, for when a CSV file's largest id is used
    instead."""
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    kwargs = {} if n_concepts is None else {"n_concepts": n_concepts}
    other = []
    if fmt == "things2023":
        sets = load_things2023_split(path, **kwargs)
        if 0 not in sets:
            raise ValueError(f"{path}: no training rows (noise_ceiling = 0)")
        train = sets[0]
        test = sets.get(test_set) if test_path is None else None
        # every other set is avoided by simulations (with a repeated file given: all of them)
        other = [t.ids for key, t in sets.items() if key != 0 and (key != test_set or test is None)]
        if test is None and test_path is None:
            raise ValueError(
                f"{path}: no rows with noise_ceiling = {test_set} (sets present: "
                f"{sorted(sets)}); choose the repeated set with data.repeated_set, or give "
                "a file of repeated triplets as data.repeated"
            )
    else:
        train = load_triplets(path, format=fmt, sortindex=sortindex, n_concepts=n_concepts)
        test = None
    data_hash = file_hash(path)
    if test_path is not None:
        test = load_triplets(test_path, sortindex=sortindex, n_concepts=train.n_concepts)
        data_hash += ":" + file_hash(test_path)
    other_ids = np.concatenate(other) if other else None
    inferred = n_concepts is None and fmt == "csv"
    return HumanData(
        train=train,
        test=test,
        path=path,
        data_hash=data_hash,
        other_ids=other_ids,
        n_concepts_option=n_concepts_option if inferred else None,
    )


def human_exclusion_keys(human: HumanData) -> np.ndarray:
    """Sorted keys of every human triplet (training, test and every other set of the
    file): simulations avoid them."""
    ids = [human.train.ids] + ([human.test.ids] if human.test is not None else [])
    if human.other_ids is not None:
        ids.append(human.other_ids)
    return np.unique(triplet_keys(np.concatenate(ids), human.train.n_concepts))


def load_model_features(
    path: str | Path, n_concepts: int, human: HumanData | None = None
) -> tuple[np.ndarray, str]:
    """Features (validated against the number of concepts) and their file hash.

    When ``human`` had its number of concepts inferred from its largest concept id and the
    features have more rows, the error says so and how to give the number."""
    if human is None or human.n_concepts_option is None:
        features = load_features(path, n_concepts=n_concepts)
        return features, file_hash(Path(path))
    features = load_features(path)
    rows = features.shape[0]
    if rows > n_concepts:
        option = human.n_concepts_option
        setting = f"{option} {rows}" if option.startswith("-") else f"{option}={rows}"
        raise ValueError(
            f"{human.path}: the triplets' largest concept id is {int(human.train.ids.max())} "
            f"(0-based), so n_concepts was inferred as {n_concepts}, but the features {path} "
            f"have {rows} rows (one per concept); give {setting} if the triplets index "
            f"those {rows} concepts"
        )
    if rows < n_concepts:  # a concept id beyond the features' rows: name its line
        from modelrecovery.data.loaders import load_triplets

        try:
            load_triplets(human.path, n_concepts=rows)
        except ValueError as err:
            raise ValueError(
                f"{err}; the features {path} have {rows} rows (one per concept)"
            ) from None
    if rows != n_concepts:
        load_features(path, n_concepts=n_concepts)  # raises the row-count error
    return features, file_hash(Path(path))


@dataclass
class StudyInputs:
    """Human data, feature files per model and (for a world) the human embedding."""

    human: HumanData
    feature_paths: dict[str, Path]
    human_embedding: np.ndarray | None
    provenance: dict[str, Any]
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. n_parameters


def study_inputs(spec: StudySpec, progress: bool = True) -> StudyInputs:
    """Resolve the study's data: build/extract the embedded world, or read given files."""
    data = spec.data
    if data.kind == "world":
        from modelrecovery.world import WorldConfig, build_world
        from modelrecovery.world.models import model_metadata, world_model_features

        world_config = WorldConfig.from_yaml(
            resolve_world_config(data.world_config), data.world_overrides
        )
        used = used_models(spec)  # checked before the world is built
        world = build_world(world_config, data.root)
        models = spec.world_models()
        feature_paths = world_model_features(world, models, progress=progress, only=used)
        human = load_human_data(world.triplets_path, n_concepts=world.n_concepts)
        return StudyInputs(
            human,
            {name: Path(path) for name, path in feature_paths.items()},
            world.human_embedding,
            {"world": str(world.root), "world_temperature": world.temperature},
            model_metadata(models, n_dims=world.human_embedding.shape[1], only=used),
        )
    used = used_models(spec)
    entries = {name: entry for name, entry in spec.file_models().items() if name in used}
    check_study_files(spec)
    folder = Path(data.features_dir or ".")
    feature_paths = {name: folder / entry.file for name, entry in entries.items()}
    triplets = Path(data.triplets)
    human = load_human_data(
        triplets,
        format=data.format or "auto",
        sortindex=data.sortindex,
        n_concepts=data.n_concepts,
        test_path=data.repeated,
        test_set=data.repeated_set,
        n_concepts_option="data.n_concepts",
    )
    provenance: dict[str, Any] = {"triplets": str(triplets)}
    if data.repeated:
        provenance["repeated"] = str(data.repeated)
    if data.pca:
        from modelrecovery.features.pca import pca_feature_file

        k = int(data.pca)
        feature_paths = {
            name: pca_feature_file(
                path, k, folder / f"pca{k}", name, n_concepts=human.train.n_concepts
            )
            for name, path in feature_paths.items()
        }
        provenance["pca"] = k
    embedding = None
    if data.human_embedding:
        embedding = load_human_embedding(data.human_embedding, human.train.n_concepts)
        provenance["human_embedding"] = str(data.human_embedding)
    metadata = {
        name: {
            key: getattr(entry, key)
            for key in ("backbone", "objective", "architecture", "display")
            if getattr(entry, key) is not None
        }
        | dict(entry.labels or {})
        for name, entry in entries.items()
    }
    return StudyInputs(human, feature_paths, embedding, provenance, metadata)


def check_study_files(spec: StudySpec) -> None:
    """Before any run is created: a files study's feature files and human triplets exist
    (one line naming what is missing and how to make it)."""
    data = spec.data
    if data.kind != "files":
        return
    used = used_models(spec)
    entries = {name: entry for name, entry in spec.file_models().items() if name in used}
    folder = Path(data.features_dir or ".")
    paths = {name: folder / entry.file for name, entry in entries.items()}
    missing = [n for n, p in paths.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(missing_features_message(entries, paths, missing))
    triplets = Path(data.triplets)
    if not triplets.exists():
        raise FileNotFoundError(
            f"human triplet file not found: {triplets} (THINGS: `modelrecovery data things "
            f"--dest {triplets.parent}` fetches it)"
        )
    if data.repeated:
        if not Path(data.repeated).exists():
            raise FileNotFoundError(
                f"data.repeated: repeated triplet file not found: {data.repeated}"
            )
    else:
        fmt = data.format if data.format not in (None, "auto") else detect_format(triplets)
        if fmt != "things2023":
            raise ValueError(
                f"data.repeated is missing: {triplets} is a {fmt} file, which holds no repeated "
                "set; give data.repeated: <file> (triplets each answered by several people: "
                "the noise ceiling, the generators' calibration and the held-out test)"
            )
    embedding = data.human_embedding
    if embedding and not Path(embedding).exists():
        raise FileNotFoundError(
            f"data.human_embedding not found: {embedding} (THINGS: `modelrecovery data "
            f"things --skip-large --dest {Path(embedding).parent}` fetches the SPoSE "
            "embeddings; or set data.human_embedding=null)"
        )


def missing_features_message(
    entries: dict[str, FileModel], paths: dict[str, Path], missing: list[str]
) -> str:
    """One line: which feature files are missing and, per model, how to make them."""
    parts = []
    for name in missing:
        entry = entries[name]
        if entry.backbone:
            how = f"extract {entry.backbone}"
        elif entry.source:
            how = f"fill from {entry.source}"
        else:
            how = "fill it (1 row per concept)"
        parts.append(f"{name}: {paths[name]} ({how})")
    extractable = any(entries[n].backbone for n in missing)
    hint = (
        "; `modelrecovery extract --config <study> --images <THINGS image folder> --out "
        "<cache>` extracts every model with a backbone"
        if extractable
        else ""
    )
    return f"{len(missing)} feature file(s) not found: {'; '.join(parts)}{hint}"


def load_human_embedding(path: str | Path, n_concepts: int | None = None) -> np.ndarray:
    """A human embedding (e.g. SPoSE ``spose_embedding_66d_sorted.txt``): one row per
    concept, in the study's concept order."""
    from modelrecovery.features.io import load_features

    try:
        return load_features(path, n_concepts=n_concepts).astype(np.float64)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise ValueError(f"data.human_embedding: {err}") from None


def model_names(spec: StudySpec) -> list[str]:
    """The study's model names, known without building anything."""
    if spec.data.kind == "world":
        from modelrecovery.world.models import world_model_names

        return world_model_names(spec.world_models())
    return list(spec.file_models())


def used_models(spec: StudySpec) -> list[str]:
    """The models the study uses, in model order: its generators and its candidates (the
    others are neither extracted nor read)."""
    names = model_names(spec)
    named = set(select_names(spec.generators, names, "generators"))
    named |= set(select_names(spec.candidates, names, "candidates"))
    return [name for name in names if name in named]


def select_names(selection: Any, available: list[str], what: str) -> list[str]:
    """The models a selection (``all`` or names) names, in its order; unknown names are
    an error naming ``what`` (generators, candidates)."""
    if selection in (None, "all"):
        return list(available)
    unknown = [m for m in selection if m not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known models: {available}")
    return list(selection)


def load_cli_inputs(args: argparse.Namespace) -> tuple[HumanData, np.ndarray, dict, str]:
    """Human data, features, their hashes and the model name from the command line's
    ``--features``, ``--triplets`` and format options."""
    human = load_human_data(
        args.triplets,
        format=args.format,
        sortindex=args.sortindex,
        n_concepts=args.n_concepts,
        test_path=args.test_triplets,
    )
    features, feature_hash = load_model_features(args.features, human.train.n_concepts, human)
    hashes = {"features": feature_hash, "triplets": human.data_hash}
    return human, features, hashes, args.model or Path(args.features).stem
