"""The world on disk: :func:`build_world` writes it, :func:`load_world` reads it back.

:func:`build_world` writes the files in THINGS' formats (the triplet file reads unchanged with
:func:`~modelrecovery.data.loaders.load_things2023_split`) into a folder named by a hash of
the configuration and reuses it when asked again; the folder is written beside its final
place and renamed into it, so an interrupted build never leaves a half world.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelrecovery.data.loaders import (
    THINGS2023_COLUMNS,
    load_concept_ids,
    load_things2023_split,
)
from modelrecovery.data.triplets import Triplets
from modelrecovery.world.behaviour import human_behaviour
from modelrecovery.world.config import WORLD_FORMAT, WorldConfig
from modelrecovery.world.embedding import concept_names, human_embedding
from modelrecovery.world.render import ATTRIBUTES, render_world_images, visual_attributes

if TYPE_CHECKING:  # features/ pulls in torch; imported when images are asked for
    from modelrecovery.features.images import ImageList

__all__ = [
    "World",
    "build_world",
    "load_world",
    "default_world_root",
    "write_things2023",
    "TRIPLETS_FILE",
    "CONCEPT_IDS_FILE",
    "EMBEDDING_FILE",
    "IMAGE_TABLE_FILE",
    "IMAGES_DIR",
    "ATTRIBUTES_FILE",
    "METADATA_FILE",
]

logger = logging.getLogger(__name__)

TRIPLETS_FILE = "triplets.tsv"
CONCEPT_IDS_FILE = "unique_id.txt"
EMBEDDING_FILE = "human_embedding.npy"
IMAGE_TABLE_FILE = "images.csv"
IMAGES_DIR = "images"
ATTRIBUTES_FILE = "visual_attributes.csv"
METADATA_FILE = "world.json"


def write_things2023(path: str | os.PathLike[str], sets: Mapping[int, Triplets]) -> Path:
    """Write triplets in THINGS' 2023 format (tab-separated, 1-based ids and choice).

    Parameters
    ----------
    path : destination file.
    sets : ``noise_ceiling`` value (0 = training, 2 = the repeated set, ...) -> triplets;
        written in the mapping's order.
    """
    path = Path(path)
    lines = ["\t".join(THINGS2023_COLUMNS)]
    for set_id, t in sets.items():
        subject = t.subject if t.subject is not None else np.zeros(len(t), dtype=np.int64)
        table = np.column_stack(
            [
                t.ids.astype(np.int64) + 1,
                t.odd.astype(np.int64) + 1,
                subject,
                np.full(len(t), set_id),
            ]
        )
        lines.extend("\t".join(map(str, row)) for row in table.tolist())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, eq=False)
class World:
    """A built world: its files and the arrays loaded from them.

    Attributes
    ----------
    root : the world's folder.
    config : its configuration.
    concept_ids : concept names in index order.
    human_embedding : (n_concepts, n_dims) float64.
    train : training triplets (``noise_ceiling`` = 0 rows).
    ceiling_set : the repeated noise-ceiling set (``noise_ceiling`` = 2 rows).
    temperature : T of the human model.
    expected_ceiling, realised_ceiling : noise ceiling of the set, expected and drawn.
    metadata : the content of ``world.json``.
    """

    root: Path
    config: WorldConfig
    concept_ids: tuple[str, ...]
    human_embedding: np.ndarray
    train: Triplets
    ceiling_set: Triplets
    temperature: float
    expected_ceiling: float
    realised_ceiling: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        """Number of concepts."""
        return len(self.concept_ids)

    @property
    def triplets_path(self) -> Path:
        """THINGS 2023-format triplet file."""
        return self.root / TRIPLETS_FILE

    @property
    def concept_ids_path(self) -> Path:
        """``unique_id.txt``: one concept id a line."""
        return self.root / CONCEPT_IDS_FILE

    @property
    def embedding_path(self) -> Path:
        """The human embedding (``.npy``)."""
        return self.root / EMBEDDING_FILE

    @property
    def image_table_path(self) -> Path:
        """``concept,image`` table (paths relative to the world folder)."""
        return self.root / IMAGE_TABLE_FILE

    @property
    def images_dir(self) -> Path:
        """Folder of the PNG images."""
        return self.root / IMAGES_DIR

    @property
    def attributes_path(self) -> Path:
        """Visual attributes per concept (CSV), for inspection."""
        return self.root / ATTRIBUTES_FILE

    @property
    def metadata_path(self) -> Path:
        """``world.json``."""
        return self.root / METADATA_FILE

    def image_list(self) -> ImageList:
        """The images as a :class:`~modelrecovery.features.images.ImageList`."""
        from modelrecovery.features.images import read_image_table

        return read_image_table(self.image_table_path, self.root, concept_ids=self.concept_ids)

    def paths(self) -> dict[str, Path]:
        """Every file of the world by role."""
        return {
            "root": self.root,
            "triplets": self.triplets_path,
            "concept_ids": self.concept_ids_path,
            "human_embedding": self.embedding_path,
            "image_table": self.image_table_path,
            "images": self.images_dir,
            "visual_attributes": self.attributes_path,
            "metadata": self.metadata_path,
        }


def default_world_root() -> Path:
    """Where worlds go by default: ``$MODELRECOVERY_DATA/worlds`` if set, else the project's
    ``data/worlds`` (git-ignored) when running from a checkout, else ``./data/worlds``."""
    env = os.environ.get("MODELRECOVERY_DATA")
    if env:
        return Path(env).expanduser() / "worlds"
    project = Path(__file__).resolve().parents[3]
    if (project / "pyproject.toml").is_file():
        return project / "data" / "worlds"
    return Path.cwd() / "data" / "worlds"


def load_world(folder: str | os.PathLike[str]) -> World:
    """Read a world written by :func:`build_world`."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a world folder (no {METADATA_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != WORLD_FORMAT:
        raise ValueError(
            f"{meta_path}: world format {meta.get('format')!r}, this code reads {WORLD_FORMAT!r}"
        )
    config = WorldConfig.from_dict(meta["config"], source=str(meta_path))
    ids = load_concept_ids(folder / CONCEPT_IDS_FILE)
    sets = load_things2023_split(
        folder / TRIPLETS_FILE, n_concepts=config.n_concepts, concept_ids=ids
    )
    empty = Triplets(np.empty((0, 3)), np.empty(0), config.n_concepts, concept_ids=ids)
    embedding = np.load(folder / EMBEDDING_FILE, allow_pickle=False)
    if embedding.shape != (config.n_concepts, config.n_dims):
        raise ValueError(
            f"{folder / EMBEDDING_FILE}: shape {embedding.shape}, expected "
            f"({config.n_concepts}, {config.n_dims})"
        )
    return World(
        root=folder,
        config=config,
        concept_ids=ids,
        human_embedding=embedding,
        train=sets.get(0, empty),
        ceiling_set=sets.get(2, empty),
        temperature=float(meta["temperature"]),
        expected_ceiling=float(meta["expected_ceiling"]),
        realised_ceiling=float(meta["realised_ceiling"]),
        metadata=meta,
    )


def _write_world(config: WorldConfig, folder: Path) -> None:
    """Compute every part of the world and write it into ``folder`` (which exists)."""
    t0 = time.perf_counter()
    ids = concept_names(config.n_concepts, config.seed)
    embedding = human_embedding(config)
    behaviour = human_behaviour(config, embedding)
    t_behaviour = time.perf_counter() - t0
    (folder / CONCEPT_IDS_FILE).write_text("\n".join(ids) + "\n", encoding="utf-8")
    np.save(folder / EMBEDDING_FILE, embedding, allow_pickle=False)
    write_things2023(folder / TRIPLETS_FILE, {0: behaviour.train, 2: behaviour.ceiling_set})
    t1 = time.perf_counter()
    rows = render_world_images(config, embedding, ids, folder / IMAGES_DIR)
    t_images = time.perf_counter() - t1
    table = ["concept,image"] + [f"{c},{IMAGES_DIR}/{name}" for c, name in rows]
    (folder / IMAGE_TABLE_FILE).write_text("\n".join(table) + "\n", encoding="utf-8")
    attrs = visual_attributes(embedding, seed=config.seed)
    attrs.insert(0, "concept", ids)
    attrs.to_csv(folder / ATTRIBUTES_FILE, index=False, float_format="%.6g")
    meta = {
        "format": WORLD_FORMAT,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "temperature": behaviour.temperature,
        "expected_ceiling": behaviour.expected_ceiling,
        "realised_ceiling": behaviour.realised_ceiling,
        "ceiling_within_tolerance": abs(behaviour.realised_ceiling - config.target_ceiling)
        <= config.ceiling_tolerance,
        "ceiling_draws": behaviour.ceiling_draws,
        "n_train_triplets": len(behaviour.train),
        "n_ceiling_responses": len(behaviour.ceiling_set),
        "n_images": len(rows),
        "visual_attributes": list(ATTRIBUTES),
        "files": {
            "triplets": TRIPLETS_FILE,
            "triplets_format": "things2023 (noise_ceiling 0 = training, 2 = repeated set)",
            "concept_ids": CONCEPT_IDS_FILE,
            "human_embedding": EMBEDDING_FILE,
            "image_table": IMAGE_TABLE_FILE,
            "images": IMAGES_DIR,
            "visual_attributes": ATTRIBUTES_FILE,
        },
        "build_seconds": {
            "behaviour": round(t_behaviour, 3),
            "images": round(t_images, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _is_complete(folder: Path, config: WorldConfig) -> bool:
    """Whether ``folder`` holds a finished world of ``config`` (its ``world.json`` is written
    last, so a present and matching one marks a complete world)."""
    try:
        meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("format") == WORLD_FORMAT and meta.get("config_hash") == config.hash()


def build_world(
    config: WorldConfig | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    recompute: bool = False,
) -> World:
    """Build the world of ``config`` under ``root`` (or reuse it if it is already there).

    The folder is ``root / config.folder_name()`` (the name holds a hash of the config and the
    generator version). A new world is written into a temporary folder beside it and renamed
    into place at the end, so an interrupted build never leaves a half world.

    Parameters
    ----------
    config : the configuration (default: :class:`WorldConfig` defaults).
    root : parent folder (default :func:`default_world_root`).
    recompute : rebuild even if the world exists.

    Returns
    -------
    The :class:`World` loaded from disk.
    """
    config = config if config is not None else WorldConfig()
    root = Path(root) if root is not None else default_world_root()
    target = root / config.folder_name()
    if target.is_dir() and not recompute:
        try:
            world = load_world(target)
            if world.metadata.get("config_hash") == config.hash():
                logger.info("world %s reused", target)
                return world
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("rebuilding unreadable world %s (%s)", target, exc)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
    try:
        _write_world(config, tmp)
        if target.exists() and not recompute and _is_complete(target, config):
            shutil.rmtree(tmp)  # another process finished the same world first
            return load_world(target)
        old = None
        if target.exists():  # stale, unreadable or to be recomputed: move it aside first
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=root))
            os.replace(target, old / "world")
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("world %s built", target)
    return load_world(target)
