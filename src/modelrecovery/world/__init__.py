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

from modelrecovery.lazy import lazy_exports

_SOURCES = {
    "HumanBehaviour": "behaviour",
    "calibrate_temperature": "behaviour",
    "expected_noise_ceiling": "behaviour",
    "human_behaviour": "behaviour",
    "odd_one_out_probabilities": "behaviour",
    "World": "build",
    "build_world": "build",
    "default_world_root": "build",
    "load_world": "build",
    "write_things2023": "build",
    "WORLD_FORMAT": "config",
    "WorldConfig": "config",
    "parse_overrides": "config",
    "concept_names": "embedding",
    "human_embedding": "embedding",
    "generated_features": "generated",
    "ATTRIBUTES": "render",
    "jitter_attributes": "render",
    "render_image": "render",
    "render_world_images": "render",
    "visual_attributes": "render",
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

__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
