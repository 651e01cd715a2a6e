"""The embedded default world: a synthetic THINGS in miniature that runs offline.

Everything is a pure function of a :class:`WorldConfig` (seed included):

- :mod:`.config`: :class:`WorldConfig` (the cache key) and the random streams.
- :mod:`.embedding`: readable made-up concept ids and the "human" representation, sparse and
  non-negative with SPoSE-like statistics.
- :mod:`.behaviour`: training triplets and a repeated noise-ceiling set from the embedding's
  dot-product model, its temperature calibrated to the target noise ceiling (0.678, THINGS
  test set 2).
- :mod:`.render`: one procedural image per concept drawn from its embedding (optionally
  jittered exemplars).
- :mod:`.build`: :func:`build_world` writes the files in THINGS' formats into a folder named by
  a hash of the configuration and reuses it; :func:`load_world` reads it back.
- :mod:`.models`: the world's default model set (real networks plus a partial, distorted
  read-out of the human embedding) and its (cached) features.
- :mod:`.model_report`: zero-shot accuracy and RDM similarity of a model set.
- :mod:`.generated`: fast image-free stand-ins for network features (tests and benchmarks).

The package sits above :mod:`modelrecovery.data` and :mod:`modelrecovery.features` and uses
both; neither imports it. The model-set modules (torch, timm) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from modelrecovery.world.behaviour import (
    HumanBehaviour,
    calibrate_temperature,
    expected_noise_ceiling,
    human_behaviour,
    odd_one_out_probabilities,
)
from modelrecovery.world.build import (
    World,
    build_world,
    default_world_root,
    load_world,
    write_things2023,
)
from modelrecovery.world.config import WORLD_FORMAT, WorldConfig, parse_overrides
from modelrecovery.world.embedding import concept_names, human_embedding
from modelrecovery.world.generated import generated_features
from modelrecovery.world.render import (
    ATTRIBUTES,
    jitter_attributes,
    render_image,
    render_world_images,
    visual_attributes,
)

_LAZY = {
    "ModelSpec": "models",
    "Readout": "models",
    "DEFAULT_MODELS": "models",
    "SUGGESTED_RECTANGULAR_K": "models",
    "default_model_set": "models",
    "short_name": "models",
    "resolve_models": "models",
    "readout_features": "models",
    "extract_world_features": "models",
    "world_model_names": "models",
    "world_model_features": "models",
    "model_metadata": "models",
    "rdm": "model_report",
    "rdm_correlations": "model_report",
    "model_set_report": "model_report",
}

__all__ = [
    "WORLD_FORMAT",
    "WorldConfig",
    "parse_overrides",
    "World",
    "HumanBehaviour",
    "build_world",
    "load_world",
    "default_world_root",
    "write_things2023",
    "concept_names",
    "human_embedding",
    "odd_one_out_probabilities",
    "expected_noise_ceiling",
    "calibrate_temperature",
    "human_behaviour",
    "ATTRIBUTES",
    "visual_attributes",
    "jitter_attributes",
    "render_image",
    "render_world_images",
    "generated_features",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Load the model-set names (which import torch) on first use."""
    if name in _LAZY:
        module = importlib.import_module(f"modelrecovery.world.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
