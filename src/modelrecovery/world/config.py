"""Configuration of the embedded default world and its random streams.

A :class:`WorldConfig` defines a world completely (seed included); its :meth:`~WorldConfig.hash`
together with :data:`WORLD_FORMAT` names the world's folder and is the cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WORLD_FORMAT", "WorldConfig", "parse_overrides"]

WORLD_FORMAT = "modelrecovery.world/1"
"""Version of the generator; part of the cache key, bump it when the output changes."""

# Independent random streams: np.random.default_rng([seed, stream, ...]).
STREAM_NAMES, STREAM_EMBEDDING, STREAM_TRAIN, STREAM_TRAIN_RESPONSES = 1, 2, 3, 4
STREAM_CEILING, STREAM_CEILING_RESPONSES, STREAM_SUBJECTS, STREAM_EXEMPLARS = 5, 6, 7, 8
STREAM_MODELS = 10  # the default model set's human read-outs (modelrecovery.world.models)


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a world; equal configurations give identical files.

    Attributes
    ----------
    n_concepts : number of concepts (THINGS: 1854; the default is small so that the default
        study runs in minutes on two cores).
    n_dims : dimensions of the human embedding (SPoSE on THINGS: 49).
    seed : seed of every random choice.
    dims_per_concept : mean number of dimensions a concept loads on (one strong + Poisson).
    n_train_triplets : unique training triplets, one response each (``noise_ceiling`` = 0).
    n_ceiling_triplets : triplets of the repeated noise-ceiling set (``noise_ceiling`` = 2).
    n_ceiling_repeats : responses per noise-ceiling triplet.
    n_subjects : simulated participants (``subject_id`` 1..n_subjects).
    target_ceiling : noise ceiling the temperature is calibrated to (THINGS set 2: 0.678).
    ceiling_tolerance : allowed distance of the realised ceiling from the target.
    image_size : image width and height in pixels.
    n_exemplars : images per concept (the first is the reference image, the others jittered).
    exemplar_jitter : strength of the exemplars' jitter.
    """

    n_concepts: int = 240
    n_dims: int = 24
    seed: int = 0
    dims_per_concept: float = 4.0
    n_train_triplets: int = 30_000
    n_ceiling_triplets: int = 200
    n_ceiling_repeats: int = 20
    n_subjects: int = 100
    target_ceiling: float = 0.678
    ceiling_tolerance: float = 0.01
    image_size: int = 128
    n_exemplars: int = 1
    exemplar_jitter: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _FIELD_TYPES[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"WorldConfig.{f.name} must be a number, got {value!r}")
            if kind is int:
                if float(value) != int(value):
                    raise ValueError(f"WorldConfig.{f.name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            else:
                object.__setattr__(self, f.name, float(value))
        checks = [
            (self.n_concepts >= 10, "n_concepts must be at least 10"),
            (self.n_dims >= 2, "n_dims must be at least 2"),
            (
                1.0 <= self.dims_per_concept <= self.n_dims,
                "dims_per_concept must be in [1, n_dims]",
            ),
            (self.n_train_triplets >= 0, "n_train_triplets must be >= 0"),
            (self.n_ceiling_triplets >= 1, "n_ceiling_triplets must be >= 1"),
            (self.n_ceiling_repeats >= 2, "n_ceiling_repeats must be >= 2"),
            (self.n_subjects >= 1, "n_subjects must be >= 1"),
            (1 / 3 < self.target_ceiling < 1, "target_ceiling must lie in (1/3, 1)"),
            (self.ceiling_tolerance > 0, "ceiling_tolerance must be positive"),
            (self.image_size >= 16, "image_size must be at least 16"),
            (self.n_exemplars >= 1, "n_exemplars must be at least 1"),
            (self.exemplar_jitter >= 0, "exemplar_jitter must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"WorldConfig: {message} ({self.describe()})")
        available = math.comb(self.n_concepts, 3)
        if self.n_train_triplets + self.n_ceiling_triplets > available:
            raise ValueError(
                f"WorldConfig: {self.n_train_triplets} + {self.n_ceiling_triplets} triplets "
                f"requested but only C({self.n_concepts}, 3) = {available} exist"
            )

    def describe(self) -> str:
        """Short one-line summary."""
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items())

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Hex SHA-256 of the generator version and the fields (the cache key)."""
        text = json.dumps({"format": WORLD_FORMAT, "config": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def folder_name(self) -> str:
        """Name of the world's folder: ``world-n<concepts>-s<seed>-<hash[:12]>``."""
        return f"world-n{self.n_concepts}-s{self.seed}-{self.hash()[:12]}"

    def replace(self, **changes: Any) -> WorldConfig:
        """A copy with some fields changed (unknown names are an error)."""
        return WorldConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "world config") -> WorldConfig:
        """Build from a mapping; unknown keys are an error naming the valid ones."""
        unknown = sorted(set(values) - set(_FIELD_TYPES))
        if unknown:
            raise ValueError(
                f"{source}: unknown world setting(s) {unknown}; valid: {', '.join(_FIELD_TYPES)}"
            )
        return cls(**dict(values))

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> WorldConfig:
        """Read a YAML file (a mapping of fields; a top-level ``world:`` key is allowed).

        Parameters
        ----------
        path : the YAML file; None starts from the defaults.
        overrides : a mapping, or ``key=value`` strings (values parsed as YAML), applied last.
        """
        import yaml

        from modelrecovery.config import load_yaml

        values: dict[str, Any] = {}
        source = "world config"
        if path is not None:
            path = Path(path)
            source = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: world config file not found")
            try:
                loaded = load_yaml(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as err:
                where = getattr(err, "problem_mark", None)
                line = f" line {where.line + 1}:" if where is not None else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"{path}:{line} not valid YAML ({problem})") from None
            if isinstance(loaded, dict) and set(loaded) == {"world"}:
                loaded = loaded["world"]
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of world settings")
            values.update(loaded)
        values.update(parse_overrides(overrides))
        return cls.from_dict(values, source=source)


_FIELD_TYPES: dict[str, type] = {
    f.name: (int if f.type in (int, "int") else float) for f in dataclasses.fields(WorldConfig)
}


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """``key=value`` strings (values parsed as YAML) or a mapping, as a dict."""
    from modelrecovery.config import load_yaml

    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected key=value")
        out[key.strip()] = load_yaml(value)
    return out
