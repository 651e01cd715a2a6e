"""Stage ``extract``: network features (one row per concept) of images, cached.

``modelrecovery extract --models NAME [NAME ...] | --default-set --images TABLE_OR_WORLD_DIR
--out DIR [--pretrained] [--batch-size N] [--seed S]`` prints the feature file of each model
(a float32 ``.npy`` with a JSON sidecar); a repeated request reuses the cached files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def image_source(path: str | Path) -> tuple[Any, Any]:
    """(world or None, image list) of ``--images``: a world folder (with ``world.json``) or an
    image table (``concept,image`` CSV or THINGS ``image_name`` list)."""
    from modelrecovery.features.images import load_image_list
    from modelrecovery.world.build import METADATA_FILE, load_world

    path = Path(path)
    if path.is_dir():
        if not (path / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"{path}: a folder given as --images must be a world folder (with "
                f"{METADATA_FILE}); otherwise pass an image table (concept,image CSV)"
            )
        world = load_world(path)
        return world, world.image_list()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image table or world folder not found")
    return None, load_image_list(path)


def cmd_extract(args: argparse.Namespace) -> dict[str, Any]:
    """Extract features of backbones (or the default model set) from images, cached."""
    from modelrecovery.features.extract import extract_features
    from modelrecovery.world.models import extract_world_features, resolve_models

    world, images = image_source(args.images)
    specs = resolve_models(None if args.default_set else args.models, args.pretrained)
    out = Path(args.out)
    progress = not args.no_progress
    if world is not None:
        paths = extract_world_features(
            world,
            specs,
            out,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            progress=progress,
            recompute=args.recompute,
        )
    else:
        paths = {}
        for spec in specs:
            result = extract_features(
                spec.name,
                images,
                pretrained=spec.pretrained,
                cache_dir=out,
                batch_size=args.batch_size,
                seed=args.seed,
                device=args.device,
                progress=progress,
                recompute=args.recompute,
            )
            paths[spec.name] = result.path
    result: dict[str, Any] = {"images": str(args.images), "n_concepts": len(images)}
    result.update({name: str(path) for name, path in paths.items()})
    return result
