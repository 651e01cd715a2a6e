"""The inputs of a study, resolved from its configuration: the human data and a feature
file per model (building and extracting the embedded world when ``data.kind`` is
``world``), with per-model metadata. Shared by the ``recover``, ``generators`` and
``simulate`` stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelrecovery.config import CONF_DIR
from modelrecovery.stages.common import HumanData, load_human_data


@dataclass
class StudyInputs:
    """Human data, feature files per model and (for a world) the human embedding."""

    human: HumanData
    feature_paths: dict[str, Path]
    human_embedding: np.ndarray | None
    provenance: dict[str, Any]
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. n_parameters


def study_inputs(config: dict[str, Any], progress: bool = True) -> StudyInputs:
    """Resolve the study's data: build/extract the embedded world, or read given files."""
    data = config["data"]
    if data["kind"] == "world":
        from modelrecovery.world import WorldConfig, build_world
        from modelrecovery.world.models import model_metadata, world_model_features

        world_path = Path(data["world_config"])
        if not world_path.is_absolute() and not world_path.exists():
            world_path = CONF_DIR.parent / world_path  # relative to the project
        world_config = WorldConfig.from_yaml(world_path, data.get("world_overrides"))
        world = build_world(world_config, data.get("root"))
        feature_paths = world_model_features(world, config.get("models"), progress=progress)
        human = load_human_data(world.triplets_path, n_concepts=world.n_concepts)
        return StudyInputs(
            human,
            {name: Path(path) for name, path in feature_paths.items()},
            world.human_embedding,
            {"world": str(world.root), "world_temperature": world.temperature},
            model_metadata(config.get("models"), n_dims=world.human_embedding.shape[1]),
        )
    if data["kind"] == "files":
        entries = study_models(config)
        if not entries:
            raise ValueError("data.kind=files needs a 'models' mapping: name -> feature file")
        check_study_files(config)
        folder = Path(data.get("features_dir") or ".")
        feature_paths = {name: folder / entry["file"] for name, entry in entries.items()}
        triplets = Path(data["triplets"])
        human = load_human_data(
            triplets, n_concepts=data.get("n_concepts"), n_concepts_option="data.n_concepts"
        )
        provenance: dict[str, Any] = {"triplets": str(triplets)}
        if data.get("pca"):
            from modelrecovery.features.pca import pca_feature_file

            k = int(data["pca"])
            feature_paths = {
                name: pca_feature_file(
                    path, k, folder / f"pca{k}", name, n_concepts=human.train.n_concepts
                )
                for name, path in feature_paths.items()
            }
            provenance["pca"] = k
        embedding = None
        if data.get("human_embedding"):
            embedding = load_human_embedding(data["human_embedding"], human.train.n_concepts)
            provenance["human_embedding"] = str(data["human_embedding"])
        metadata = {
            name: {
                key: entry[key]
                for key in ("backbone", "objective", "architecture", "display")
                if entry.get(key) is not None
            }
            for name, entry in entries.items()
        }
        return StudyInputs(human, feature_paths, embedding, provenance, metadata)
    raise ValueError(f"data.kind must be 'world' or 'files', got {data['kind']!r}")


def check_study_files(config: dict[str, Any]) -> None:
    """Before any run is created: a files study's feature files and human triplets exist
    (one line naming what is missing and how to make it)."""
    data = config["data"]
    if data["kind"] != "files":
        return
    entries = study_models(config)
    folder = Path(data.get("features_dir") or ".")
    paths = {name: folder / entry["file"] for name, entry in entries.items()}
    missing = [n for n, p in paths.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(missing_features_message(entries, paths, missing))
    triplets = Path(data["triplets"])
    if not triplets.exists():
        raise FileNotFoundError(
            f"human triplet file not found: {triplets} (THINGS: `modelrecovery data things "
            f"--dest {triplets.parent}` fetches it)"
        )
    embedding = data.get("human_embedding")
    if embedding and not Path(embedding).exists():
        raise FileNotFoundError(
            f"data.human_embedding not found: {embedding} (THINGS: `modelrecovery data "
            f"things --skip-large --dest {Path(embedding).parent}` fetches the SPoSE "
            "embeddings; or set data.human_embedding=null)"
        )


def study_models(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A files study's models, each as ``{file, backbone, objective, architecture, display,
    source}`` (a plain file name becomes ``{file: name}``), with ``extra_models`` appended
    when ``include_extra_models`` is true."""
    models = dict(config.get("models") or {})
    if config.get("include_extra_models"):
        extra = dict(config.get("extra_models") or {})
        repeated = sorted(set(models) & set(extra))
        if repeated:
            raise ValueError(f"extra_models repeat models of 'models': {repeated}")
        models.update(extra)
    return {
        str(name): ({"file": entry} if isinstance(entry, str) else dict(entry))
        for name, entry in models.items()
    }


def missing_features_message(
    entries: dict[str, dict[str, Any]], paths: dict[str, Path], missing: list[str]
) -> str:
    """One line: which feature files are missing and, per model, how to make them."""
    parts = []
    for name in missing:
        entry = entries[name]
        if entry.get("backbone"):
            how = f"extract {entry['backbone']}"
        elif entry.get("source"):
            how = f"fill from {entry['source']}"
        else:
            how = "fill it (1 row per concept)"
        parts.append(f"{name}: {paths[name]} ({how})")
    extractable = any(entries[n].get("backbone") for n in missing)
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


def model_names(config: dict[str, Any]) -> list[str]:
    """The study's model names, known without building anything."""
    if config["data"]["kind"] == "world":
        from modelrecovery.world.models import world_model_names

        return world_model_names(config.get("models"))
    return list(study_models(config))


def select_names(selection: Any, available: list[str], what: str) -> list[str]:
    if selection in (None, "all"):
        return list(available)
    unknown = [m for m in selection if m not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known models: {available}")
    return list(selection)
