"""Shared pieces of the stages: loading human data and features with provenance."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelrecovery.data.loaders import detect_format, load_things2023_split, load_triplets
from modelrecovery.data.triplets import Triplets, triplet_keys
from modelrecovery.features.io import load_features
from modelrecovery.tracking import file_hash

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
        test = sets.get(test_set)
        other = [t.ids for key, t in sets.items() if key not in (0, test_set)]
        if test is None and test_path is None:
            raise ValueError(
                f"{path}: no rows with noise_ceiling = {test_set} (sets present: {sorted(sets)})"
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
    if rows != n_concepts:
        load_features(path, n_concepts=n_concepts)  # raises the row-count error
    return features, file_hash(Path(path))


def load_cli_inputs(args: argparse.Namespace) -> tuple[HumanData, np.ndarray, dict, str]:
    """Human data, features, their hashes and the model name from ``add_data_args``."""
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
