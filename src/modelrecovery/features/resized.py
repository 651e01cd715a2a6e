"""The ``resized:<px>:<backbone>`` wrapper: a backbone fed ``px`` x ``px`` inputs.

Small images (e.g. the embedded world's 128 px ones) gain nothing from upsampling to a
network's native 224 px. Networks that accept any input size keep their weights and get a
``px`` preprocessing; networks with a fixed token grid (ViT, Mixer, LeViT, EfficientViT,
open_clip towers) are rebuilt for ``px`` inputs (random weights only). The wrapper is recorded
in each feature file's sidecar (``backbone.wrapper``, ``backbone.input_px``,
``preprocessing``) and enters the cache key. The prefix is registered when this module is
imported, which :mod:`.registry` does on its first lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .registry import (
    Backbone,
    BackboneWeightsError,
    UnknownBackboneError,
    build_backbone,
    quiet_root_warning,
    register_backbone,
)

__all__ = ["RESIZED_PREFIX", "resized_name"]

RESIZED_PREFIX = "resized"


def resized_name(backbone: str, px: int) -> str:
    """Name of ``backbone`` fed ``px`` x ``px`` inputs: ``resized:<px>:<backbone>``."""
    return f"{RESIZED_PREFIX}:{int(px)}:{backbone}"


def _normalisation(transform: Any) -> tuple[list[float], list[float]]:
    """Mean and std of the Normalize step of a torchvision transform (ImageNet if none)."""
    from torchvision import transforms as T

    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.Normalize):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
    return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class _ToRGB:
    """PIL image -> RGB (picklable, for DataLoader workers)."""

    def __call__(self, image: Any) -> Any:
        return image.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def _square_transform(px: int, mean: Sequence[float], std: Sequence[float]) -> Any:
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(px, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(px),
            _ToRGB(),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float32),
            T.Normalize(mean, std),
        ]
    )


def _feature_dim(model: torch.nn.Module, px: int) -> int:
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, px, px))
    if out.ndim != 2:
        raise RuntimeError(f"backbone output has shape {tuple(out.shape)}; expected (batch, p)")
    return int(out.shape[1])


def _fixed_grid_timm(arch: str, px: int, *, pretrained: bool) -> tuple[torch.nn.Module, dict]:
    """A timm model with a fixed token grid, built for ``px`` inputs (random weights only)."""
    import timm

    if pretrained:
        raise BackboneWeightsError(
            f"timm:{arch} has a fixed input size; resized:{px}:timm:{arch} is only available "
            f"with random weights (pretrained=False); use timm:{arch} at its own size instead"
        )
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=px)
    except TypeError as exc:
        raise UnknownBackboneError(
            f"timm:{arch} cannot be built for {px} px inputs ({exc})"
        ) from exc
    cfg = timm.data.resolve_data_config({}, model=model)
    return model, {"kind": "random", "data_config_mean": cfg["mean"], "data_config_std": cfg["std"]}


class _EncodeImage(torch.nn.Module):
    """``forward`` = an open_clip model's ``encode_image`` (unnormalised embedding)."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x, normalize=False)


def _open_clip_at(arch: str, px: int, *, pretrained: bool) -> tuple[torch.nn.Module, Any]:
    """An open_clip image tower built for ``px`` inputs (random weights only)."""
    import open_clip

    if pretrained:
        raise BackboneWeightsError(
            f"resized:{px}:open_clip:{arch} rebuilds the tower for {px} px inputs and is only "
            f"available with random weights; use open_clip:{arch} at its own size instead"
        )
    if arch not in open_clip.list_models():
        raise UnknownBackboneError(f"open_clip has no architecture {arch!r}")
    with quiet_root_warning("No pretrained weights loaded for model"):  # random: asked for
        clip, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=None, force_image_size=px, pretrained_image=False
        )
    return _EncodeImage(clip.eval()).eval(), preprocess


def _build_resized(
    name: str, spec: str, *, pretrained: bool, seed: int, weights: Path | None
) -> Backbone:
    px_text, sep, inner = spec.partition(":")
    if not sep or not inner or not px_text.isdigit() or not 16 <= int(px_text) <= 1024:
        raise UnknownBackboneError(
            f"{name!r}: expected resized:<px>:<backbone> with 16 <= px <= 1024, e.g. "
            "resized:128:timm:resnet18"
        )
    px = int(px_text)
    arch = inner.partition(":")[2] if inner.startswith("timm:") else ""
    fixed = False
    if arch:
        import timm

        if not timm.is_model(arch):
            raise UnknownBackboneError(f"timm has no model {arch!r} (backbone {name!r})")
        cfg = timm.models.get_pretrained_cfg(arch)
        fixed = bool(getattr(cfg, "fixed_input_size", False))
    if inner.startswith("open_clip:"):
        import open_clip

        clip_arch, _, tag = inner.partition(":")[2].partition(":")
        if tag:
            raise UnknownBackboneError(
                f"{name!r}: pretrained tags are not supported by the resized wrapper"
            )
        model, preprocess = _open_clip_at(clip_arch, px, pretrained=pretrained)
        mean, std = _normalisation(preprocess)
        inner_desc = {
            "name": inner,
            "library": "open_clip",
            "architecture": clip_arch,
            "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
            "pretrained": False,
            "weights": {"kind": "random", "seed": seed},
            "layer": f"image embedding (open_clip encode_image, not normalised, {px} px tower)",
        }
        fixed = True
    elif fixed:
        model, info = _fixed_grid_timm(arch, px, pretrained=pretrained)
        mean, std = list(info["data_config_mean"]), list(info["data_config_std"])
        import timm

        inner_desc: dict[str, Any] = {
            "name": inner,
            "library": "timm",
            "architecture": arch,
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
            "pretrained": False,
            "weights": {"kind": "random", "seed": seed},
            "layer": f"pooled penultimate features (timm num_classes=0, img_size={px})",
        }
    else:
        base = build_backbone(inner, pretrained=pretrained, seed=seed, weights=weights)
        model = base.model
        mean, std = _normalisation(base.transform)
        inner_desc = {k: v for k, v in base.description.items() if k != "feature_dim"}
    model.eval()
    transform = _square_transform(px, mean, std)
    dim = _feature_dim(model, px)
    description = {
        "name": name,
        "wrapper": "resized",
        "input_px": px,
        "inner": inner_desc,
        "library": inner_desc.get("library"),
        "architecture": inner_desc.get("architecture"),
        "versions": inner_desc.get("versions"),
        "pretrained": bool(inner_desc.get("pretrained", pretrained)),
        "weights": inner_desc.get("weights"),
        "layer": inner_desc.get("layer"),
        "feature_dim": dim,
        "preprocessing": (
            f"resize shorter side to {px} px (bicubic), centre crop {px} x {px}, "
            f"normalise mean={mean} std={std}; " + repr(transform)
        ),
        "rebuilt_for_input_px": fixed,
    }
    return Backbone(name, model, transform, dim, description)


register_backbone(RESIZED_PREFIX, _build_resized, prefix=True)
