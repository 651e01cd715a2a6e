"""Network features: one row per concept from a backbone's penultimate / embedding layer.

- :mod:`.io`: load and validate feature files (``.npy``, ``.pt``, text, thingsvision
  folders), save them with a JSON provenance sidecar.
- :mod:`.registry`: the backbone registry (:func:`build_backbone` by name,
  :func:`register_backbone`), which the providers below register with.
- :mod:`.backbones`: backbones by name (``timm:<model>``, ``open_clip:<arch>[:<tag>]``,
  ``efficientnet_lite0_imagenet``).
- :mod:`.images`: image lists (THINGS names CSV or a ``concept,image`` table).
- :mod:`.resized`: the ``resized:<px>:<backbone>`` wrapper (small inputs, no upsampling).
- :mod:`.extract`: batched, cached extraction.

The names are imported on first use (PEP 562): reading a feature file (:mod:`.io`) does
not import torch, which the backbones need.
"""

from __future__ import annotations

from modelrecovery.lazy import lazy_exports

_SOURCES = {
    "Backbone": "registry",
    "BackboneWeightsError": "registry",
    "EFFICIENTNET_LITE0_MEAN": "backbones",
    "EFFICIENTNET_LITE0_STD": "backbones",
    "ExtractionResult": "extract",
    "FEATURE_SUFFIXES": "io",
    "FeatureDataError": "io",
    "ImageList": "images",
    "ImageListError": "images",
    "MissingImageError": "images",
    "RESIZED_PREFIX": "resized",
    "UnknownBackboneError": "registry",
    "available_backbones": "registry",
    "build_backbone": "registry",
    "efficientnet_lite0_state_dict": "backbones",
    "extract_features": "extract",
    "feature_cache_key": "extract",
    "load_features": "io",
    "load_image_list": "images",
    "open_image": "images",
    "read_concept_ids": "io",
    "read_image_table": "images",
    "read_sidecar": "io",
    "read_things_image_list": "images",
    "register_backbone": "registry",
    "resized_name": "resized",
    "save_features": "io",
    "sidecar_path": "io",
    "things_concept_id": "images",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
