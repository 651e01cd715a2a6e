"""Shared pieces of the stages: loading human data and features with provenance."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelrecovery.data.loaders import detect_format, load_things2023_split, load_triplets
from modelrecovery.data.triplets import Triplets, triplet_keys
from modelrecovery.devices import DEVICE_HELP
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


def load_human_data(
    path: str | Path,
    *,
    format: str = "auto",
    sortindex: str | None = None,
    n_concepts: int | None = None,
    test_path: str | Path | None = None,
    test_set: int = THINGS_TEST_SET,
) -> HumanData:
    """Read human triplets. A THINGS 2023 file splits by its ``noise_ceiling`` column
    (0 = training, ``test_set`` = the repeated test set); other formats are all training
    data, with the test set from ``test_path``."""
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
    return HumanData(train=train, test=test, path=path, data_hash=data_hash, other_ids=other_ids)


def human_exclusion_keys(human: HumanData) -> np.ndarray:
    """Sorted keys of every human triplet (training, test and every other set of the
    file): simulations avoid them."""
    ids = [human.train.ids] + ([human.test.ids] if human.test is not None else [])
    if human.other_ids is not None:
        ids.append(human.other_ids)
    return np.unique(triplet_keys(np.concatenate(ids), human.train.n_concepts))


def load_model_features(path: str | Path, n_concepts: int) -> tuple[np.ndarray, str]:
    """Features (validated against the number of concepts) and their file hash."""
    features = load_features(path, n_concepts=n_concepts)
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
    features, feature_hash = load_model_features(args.features, human.train.n_concepts)
    hashes = {"features": feature_hash, "triplets": human.data_hash}
    return human, features, hashes, args.model or Path(args.features).stem


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--features``, ``--triplets`` and their format options."""
    parser.add_argument("--features", required=True, help="feature file (.npy, .pt, text)")
    parser.add_argument("--triplets", required=True, help="human triplet file")
    parser.add_argument("--test-triplets", default=None, help="test triplets (non-THINGS files)")
    parser.add_argument("--format", default="auto", help="triplet file format")
    parser.add_argument("--sortindex", default=None, help="THINGS 2020 sortindex file")
    parser.add_argument(
        "--n-concepts", type=int, default=None, help="number of concepts (THINGS: 1854)"
    )
    parser.add_argument("--model", default=None, help="model name (default: feature file stem)")
    parser.add_argument("--experiment", default="default", help="MLflow experiment (study)")


def add_probe_args(parser: argparse.ArgumentParser) -> None:
    """Flexibility level, penalty, dtype, device and stopping options."""
    parser.add_argument("--family", default="full")
    parser.add_argument("--k", type=int, default=None, help="rank of rectangular W")
    parser.add_argument("--regulariser", default="scalar_shrinkage")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    parser.add_argument(
        "--stopping",
        default="converged",
        choices=["converged", "study"],
        help="L-BFGS stopping rule: converged (the optimum) or study (the paper's early stop)",
    )
