"""Stage ``world``: write the embedded default world's files (or reuse them).

``modelrecovery world [--config default|PATH] [--set key=value ...] [--root DIR]``
prints the paths of the files, the temperature of the human model and the noise ceiling.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from modelrecovery.config import resolve_world_config

DEFAULT_WORLD_CONFIG = resolve_world_config(None)


def world_config_path(path: str | Path | None) -> Path:
    """The world config file: a path, a packaged world config's name, or (None) the
    packaged default ``conf/world/default.yaml``."""
    return resolve_world_config(path)


def cmd_world(args: argparse.Namespace) -> dict[str, Any]:
    """Build the embedded world (procedural images, human embedding and triplets)."""
    from modelrecovery.world import WorldConfig, build_world

    overrides = [item for text in (args.set or []) for item in text.split()]
    config = WorldConfig.from_yaml(world_config_path(args.config), overrides)
    t0 = time.perf_counter()
    world = build_world(config, args.root, recompute=args.recompute)
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {name: str(path) for name, path in world.paths().items()}
    result.update(
        {
            "n_concepts": world.n_concepts,
            "n_dims": config.n_dims,
            "n_train_triplets": len(world.train),
            "n_ceiling_responses": len(world.ceiling_set),
            "temperature": world.temperature,
            "expected_ceiling": world.expected_ceiling,
            "realised_ceiling": world.realised_ceiling,
            "target_ceiling": config.target_ceiling,
            "build_seconds": float(world.metadata.get("build_seconds", {}).get("total", seconds)),
            "seconds": seconds,
        }
    )
    return result
