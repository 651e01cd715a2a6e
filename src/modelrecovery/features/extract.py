"""Extract one feature row per concept from images through a backbone, with a disk cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .images import ImageList, load_image_list, open_image
from .io import FeatureDataError, load_features, read_sidecar, save_features, sidecar_path
from .registry import Backbone, build_backbone

__all__ = ["ExtractionResult", "extract_features", "feature_cache_key"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = "modelrecovery.feature_cache/1"


@dataclass(frozen=True)
class ExtractionResult:
    """Outcome of :func:`extract_features`; unpacks as ``features, path = result``.

    Attributes
    ----------
    features : (n_concepts, feature_dim) float32 array, rows in image-list concept order.
    path : the ``.npy`` file in the cache (its JSON sidecar lies next to it).
    from_cache : True when the features were loaded from the cache, nothing recomputed.
    cache_key : hex key built from the backbone description and the image-list hash.
    """

    features: np.ndarray
    path: Path
    from_cache: bool
    cache_key: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.features, self.path))


def feature_cache_key(description: dict[str, Any], image_list_hash: str) -> str:
    """Cache key of a request: backbone (name, library versions, weights, layer,
    preprocessing) plus the image-list hash.

    Returns
    -------
    Hex SHA-256 digest.
    """
    payload = {"format": _CACHE_FORMAT, "backbone": description, "images": image_list_hash}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_file(cache_dir: Path, backbone_name: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone_name).strip("_") or "backbone"
    return cache_dir / f"{slug}-{key[:16]}.npy"


class _Images(Dataset):
    def __init__(self, images: ImageList, backbone: Backbone) -> None:
        self.items = images.items()
        self.concepts = images.concept_ids
        self.transform = backbone.transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        concept, path = self.items[k]
        return self.transform(open_image(path, self.concepts[concept])), concept


def _run(
    backbone: Backbone,
    images: ImageList,
    *,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    num_workers: int,
) -> np.ndarray:
    """Features of every image, averaged over the exemplars of each concept."""
    n, p = len(images), backbone.feature_dim
    sums = np.zeros((n, p), dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    model = backbone.model.to(device).eval()
    loader = DataLoader(
        _Images(images, backbone), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    with (
        torch.inference_mode(),
        tqdm(total=images.n_images, desc=backbone.name, unit="img", disable=not progress) as bar,
    ):
        for x, concept in loader:
            out = model(x.to(device))
            if out.ndim != 2 or out.shape[1] != p:
                raise RuntimeError(
                    f"{backbone.name}: output shape {tuple(out.shape)}, expected (batch, {p})"
                )
            out_np = out.float().cpu().numpy()
            idx = concept.numpy()
            bad = ~np.isfinite(out_np).all(axis=1)
            if bad.any():
                c = images.concept_ids[int(idx[np.flatnonzero(bad)[0]])]
                raise RuntimeError(f"{backbone.name}: non-finite features for concept {c!r}")
            np.add.at(sums, idx, out_np)
            np.add.at(counts, idx, 1)
            bar.update(len(idx))
    if (counts == 0).any():  # pragma: no cover - ImageList guarantees an image per concept
        raise RuntimeError("some concepts received no image")
    return (sums / counts[:, None]).astype(np.float32)


def extract_features(
    backbone_name: str,
    image_list: ImageList | str | os.PathLike[str],
    *,
    pretrained: bool,
    cache_dir: str | os.PathLike[str],
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    weights: str | os.PathLike[str] | None = None,
    num_workers: int = 0,
    recompute: bool = False,
) -> ExtractionResult:
    """Features (one row per concept) of a backbone on an image list, cached on disk.

    Each image goes through the backbone's preprocessing and network (batched, under
    ``torch.inference_mode``); the features of a concept's exemplars are averaged. The result is
    saved with :func:`save_features` under ``cache_dir`` with a key built from the backbone
    description (name, library versions, weights, layer, preprocessing) and the image-list
    hash; the same request again loads that file and runs nothing.

    Parameters
    ----------
    backbone_name : a name for :func:`build_backbone` (``timm:resnet18``, ...).
    image_list : an :class:`ImageList` or an image table for :func:`load_image_list`.
    pretrained : trained (True) or seeded random (False) weights.
    cache_dir : folder of the feature cache (created if needed).
    batch_size : images per forward pass.
    seed : seed of random weights.
    device : torch device for the forward passes.
    progress : show a tqdm progress bar.
    weights : local checkpoint file (see :func:`build_backbone`).
    num_workers : DataLoader worker processes for image decoding (0: in this process).
    recompute : ignore (and overwrite) a cached result.

    Returns
    -------
    ExtractionResult; ``features, path = result`` works, ``result.from_cache`` says whether it
    came from the cache.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = image_list if isinstance(image_list, ImageList) else load_image_list(image_list)
    images_hash = images.fingerprint()
    cache_dir = Path(cache_dir)
    backbone = build_backbone(backbone_name, pretrained=pretrained, seed=seed, weights=weights)
    key = feature_cache_key(backbone.description, images_hash)
    path = _cache_file(cache_dir, backbone_name, key)

    if not recompute and path.is_file():
        try:
            meta = read_sidecar(path)
            if meta is not None and meta.get("cache_key") == key:
                features = load_features(
                    path, n_concepts=len(images), concept_ids=images.concept_ids
                )
                logger.info("features of %s loaded from cache %s", backbone_name, path)
                return ExtractionResult(features, path, True, key)
        except FeatureDataError as exc:
            logger.warning("ignoring unreadable cache file %s (%s); recomputing", path, exc)

    features = _run(
        backbone,
        images,
        batch_size=batch_size,
        device=device,
        progress=progress,
        num_workers=num_workers,
    )
    metadata = {
        "model": backbone_name,
        "weights": backbone.description.get("weights"),
        "preprocessing": backbone.description.get("preprocessing"),
        "image_list_hash": images_hash,
        "image_list": images.source,
        "n_images": images.n_images,
        "exemplars_averaged": images.n_images > len(images),
        "cache_key": key,
        "backbone": backbone.description,
    }
    saved = save_features(path, features, concept_ids=images.concept_ids, metadata=metadata)
    if not saved.is_file() or not sidecar_path(saved).is_file():
        raise RuntimeError(f"features of {backbone_name} were not saved to {saved}")
    check = np.load(saved, mmap_mode="r")
    if check.shape != features.shape:
        raise RuntimeError(f"{saved}: saved shape {check.shape} != computed {features.shape}")
    logger.info("features of %s saved to %s", backbone_name, saved)
    return ExtractionResult(features, saved, False, key)
