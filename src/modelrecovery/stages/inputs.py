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
        models = config.get("models") or {}
        if not models:
            raise ValueError("data.kind=files needs a 'models' mapping: name -> feature file")
        folder = Path(data.get("features_dir") or ".")
        feature_paths = {name: folder / file for name, file in models.items()}
        missing = {n: str(p) for n, p in feature_paths.items() if not p.exists()}
        if missing:
            raise FileNotFoundError(f"feature files not found: {missing}")
        triplets = Path(data["triplets"])
        if not triplets.exists():
            raise FileNotFoundError(f"human triplet file not found: {triplets}")
        human = load_human_data(
            triplets, n_concepts=data.get("n_concepts"), n_concepts_option="data.n_concepts"
        )
        return StudyInputs(human, feature_paths, None, {"triplets": str(triplets)})
    raise ValueError(f"data.kind must be 'world' or 'files', got {data['kind']!r}")


def model_names(config: dict[str, Any]) -> list[str]:
    """The study's model names, known without building anything."""
    if config["data"]["kind"] == "world":
        from modelrecovery.world.models import world_model_names

        return world_model_names(config.get("models"))
    return list(config.get("models") or {})


def select_names(selection: Any, available: list[str], what: str) -> list[str]:
    if selection in (None, "all"):
        return list(available)
    unknown = [m for m in selection if m not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known models: {available}")
    return list(selection)
