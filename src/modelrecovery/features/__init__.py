"""Network features: one row per concept from a backbone's penultimate / embedding layer.

- :mod:`.io`: load and validate feature files (``.npy``, ``.pt``, text, thingsvision
  folders), save them with a JSON provenance sidecar.
- :mod:`.backbones`: backbones by name (``timm:<model>``, ``open_clip:<arch>[:<tag>]``,
  ``efficientnet_lite0_imagenet``).
- :mod:`.images`: image lists (THINGS names CSV or a ``concept,image`` table).
- :mod:`.resized`: the ``resized:<px>:<backbone>`` wrapper (small inputs, no upsampling).
- :mod:`.extract`: batched, cached extraction.
"""

from .backbones import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    Backbone,
    BackboneWeightsError,
    UnknownBackboneError,
    available_backbones,
    build_backbone,
    efficientnet_lite0_state_dict,
    register_backbone,
)
from .extract import ExtractionResult, extract_features, feature_cache_key
from .images import (
    ImageList,
    ImageListError,
    MissingImageError,
    load_image_list,
    open_image,
    read_image_table,
    read_things_image_list,
    things_concept_id,
)
from .io import (
    FEATURE_SUFFIXES,
    FeatureDataError,
    load_features,
    read_concept_ids,
    read_sidecar,
    save_features,
    sidecar_path,
)
from .resized import RESIZED_PREFIX, resized_name

__all__ = [
    "EFFICIENTNET_LITE0_MEAN",
    "EFFICIENTNET_LITE0_STD",
    "FEATURE_SUFFIXES",
    "Backbone",
    "BackboneWeightsError",
    "ExtractionResult",
    "FeatureDataError",
    "RESIZED_PREFIX",
    "ImageList",
    "ImageListError",
    "MissingImageError",
    "UnknownBackboneError",
    "available_backbones",
    "build_backbone",
    "efficientnet_lite0_state_dict",
    "extract_features",
    "feature_cache_key",
    "load_features",
    "load_image_list",
    "open_image",
    "read_concept_ids",
    "read_image_table",
    "read_sidecar",
    "read_things_image_list",
    "register_backbone",
    "resized_name",
    "save_features",
    "sidecar_path",
    "things_concept_id",
]
