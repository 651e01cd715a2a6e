"""The embedded default world: a synthetic THINGS in miniature that runs offline.

Everything is a pure function of a :class:`WorldConfig` (seed included):

- :func:`concept_names`: readable made-up concept ids (``balomir``, ``tesku_vane``, ...).
- :func:`human_embedding`: the "human" representation, sparse and non-negative with
  SPoSE-like statistics (each concept loads strongly on one dimension and weakly on a few
  more, heavy-tailed weights, dimensions of decreasing prevalence, sorted by total weight).
- images (:mod:`modelrecovery.data.render`): one reference image per concept drawn from its
  embedding, optionally jittered exemplars.
- :func:`human_behaviour`: training triplets and a repeated noise-ceiling set whose responses
  come from the embedding's dot-product model, P(odd = i) = softmax((S_jk, S_ik, S_ij) / T),
  with T the root of "expected noise ceiling of the set = target" (0.678, THINGS test set 2).

:func:`build_world` writes the files in THINGS' formats (the triplet file reads unchanged with
:func:`~modelrecovery.data.loaders.load_things2023_split`) into a folder named by a hash of
the configuration and reuses it when asked again. :func:`generated_features` is a fast,
image-free stand-in for network features (tests and benchmarks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln

from modelrecovery.data.loaders import THINGS2023_COLUMNS, load_things2023_split
from modelrecovery.data.noise_ceiling import noise_ceiling
from modelrecovery.data.render import ATTRIBUTES, jitter_attributes, render_image, visual_attributes
from modelrecovery.data.sampling import sample_responses, sample_triplets
from modelrecovery.data.triplets import Triplets

if TYPE_CHECKING:
    from modelrecovery.features.images import ImageList

__all__ = [
    "WORLD_FORMAT",
    "WorldConfig",
    "World",
    "HumanBehaviour",
    "build_world",
    "load_world",
    "default_world_root",
    "concept_names",
    "human_embedding",
    "odd_one_out_probabilities",
    "expected_noise_ceiling",
    "calibrate_temperature",
    "human_behaviour",
    "render_world_images",
    "write_things2023",
    "generated_features",
]

logger = logging.getLogger(__name__)

WORLD_FORMAT = "modelrecovery.world/1"
"""Version of the generator; part of the cache key, bump it when the output changes."""

# Independent random streams: np.random.default_rng([seed, stream, ...]).
_NAMES, _EMBEDDING, _TRAIN, _TRAIN_RESPONSES, _CEILING, _CEILING_RESPONSES = 1, 2, 3, 4, 5, 6
_SUBJECTS, _EXEMPLARS, _RENDER = 7, 8, 9

TRIPLETS_FILE = "triplets.tsv"
CONCEPT_IDS_FILE = "unique_id.txt"
EMBEDDING_FILE = "human_embedding.npy"
IMAGE_TABLE_FILE = "images.csv"
IMAGES_DIR = "images"
ATTRIBUTES_FILE = "visual_attributes.csv"
METADATA_FILE = "world.json"


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

        values: dict[str, Any] = {}
        source = "world config"
        if path is not None:
            path = Path(path)
            source = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: world config file not found")
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
    import yaml

    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


# ----------------------------------------------------------------------------------------------
# Concepts and the human embedding
# ----------------------------------------------------------------------------------------------

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "s", "m")


def concept_names(n_concepts: int, seed: int) -> tuple[str, ...]:
    """Distinct readable made-up concept ids (lowercase, some with an underscore), seeded."""
    rng = np.random.default_rng([int(seed), _NAMES])

    def word(n_syllables: int) -> str:
        parts = [
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(n_syllables)
        ]
        return "".join(parts) + _CODAS[rng.integers(len(_CODAS))]

    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_concepts:
        name = word(int(rng.integers(2, 4)))
        if rng.random() < 0.15:
            name = f"{name}_{word(int(rng.integers(1, 3)))}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return tuple(names)


def human_embedding(config: WorldConfig) -> np.ndarray:
    """The sparse, non-negative "human" embedding (SPoSE-like), seeded.

    Each concept loads strongly on one dimension (lognormal weight around 1, dimensions drawn
    with prevalence decaying like ``(d + 1) ** -0.7``) and weakly on a Poisson number of others
    (mean ``dims_per_concept - 1``, heavy-tailed lognormal weights around 0.25); columns are
    then sorted by total weight, as SPoSE reports them.

    Returns
    -------
    (n_concepts, n_dims) float64 array, every row non-zero, rows distinct.
    """
    rng = np.random.default_rng([config.seed, _EMBEDDING])
    n, d = config.n_concepts, config.n_dims
    prevalence = (np.arange(d) + 1.0) ** -0.7
    prevalence /= prevalence.sum()
    e = np.zeros((n, d))
    primary = rng.choice(d, size=n, p=prevalence)
    e[np.arange(n), primary] = rng.lognormal(0.0, 0.3, size=n)
    n_secondary = np.minimum(rng.poisson(config.dims_per_concept - 1.0, size=n), d - 1)
    for i in range(n):
        p = prevalence.copy()
        p[primary[i]] = 0.0
        others = rng.choice(d, size=n_secondary[i], replace=False, p=p / p.sum())
        e[i, others] = rng.lognormal(math.log(0.25), 0.8, size=others.size)
    order = np.argsort(-e.sum(axis=0), kind="stable")
    return e[:, order]


# ----------------------------------------------------------------------------------------------
# Behaviour
# ----------------------------------------------------------------------------------------------


def odd_one_out_probabilities(
    embedding: np.ndarray, ids: np.ndarray, temperature: float
) -> np.ndarray:
    """Dot-product model: P(odd = position a) = softmax over (S_jk, S_ik, S_ij) / T.

    Parameters
    ----------
    embedding : (n, d) representation; S = embedding @ embedding.T.
    ids : (m, 3) concept indices.
    temperature : T > 0.

    Returns
    -------
    (m, 3) float64 probabilities, rows summing to 1.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    x = np.asarray(embedding, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    a, b, c = x[ids[:, 0]], x[ids[:, 1]], x[ids[:, 2]]
    logits = np.stack(
        [(b * c).sum(axis=1), (a * c).sum(axis=1), (a * b).sum(axis=1)], axis=1
    ) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _compositions(total: int) -> np.ndarray:
    """Every (a, b, c) of non-negative integers with a + b + c = total."""
    rows = [(a, b, total - a - b) for a in range(total + 1) for b in range(total - a + 1)]
    return np.asarray(rows, dtype=np.int64)


def expected_noise_ceiling(
    probabilities: np.ndarray, n_repeats: int, *, per_triplet: bool = False
) -> float | np.ndarray:
    """Expected leave-one-out majority agreement of ``n_repeats`` responses per triplet.

    The responses of a triplet are i.i.d. draws from its probabilities. For a held-out response
    x the other ``n_repeats - 1`` are multinomial; the credit is 1 / #winners when x is among
    the most frequent of the others (as in :func:`~modelrecovery.data.noise_ceiling`). The
    expectation is computed exactly by enumerating the multinomial outcomes.

    Parameters
    ----------
    probabilities : (m, 3) response probabilities.
    n_repeats : responses per triplet (>= 2).
    per_triplet : return the (m,) values instead of their mean.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"probabilities must have shape (m, 3), got {p.shape}")
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be at least 2, got {n_repeats}")
    rest = _compositions(n_repeats - 1)  # (K, 3) counts of the other responses
    log_coef = gammaln(n_repeats) - gammaln(rest + 1).sum(axis=1)  # (K,)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p)
        terms = rest[None, :, :] * log_p[:, None, :]
    terms[:, rest == 0] = 0.0  # 0 * log 0 = 0
    pmf = np.exp(log_coef[None, :] + terms.sum(axis=2))  # (m, K)
    winners = rest == rest.max(axis=1, keepdims=True)
    credit = winners / winners.sum(axis=1, keepdims=True)  # (K, 3)
    values = (p * (pmf @ credit)).sum(axis=1)
    return values if per_triplet else float(values.mean())


def calibrate_temperature(
    embedding: np.ndarray, ids: np.ndarray, n_repeats: int, target: float
) -> tuple[float, float]:
    """Temperature whose expected noise ceiling on the triplets ``ids`` equals ``target``.

    The expected ceiling (:func:`expected_noise_ceiling`) falls from near 1 (T -> 0) to 1/3
    (T -> infinity); the root is found on log T with :func:`scipy.optimize.brentq`.

    Returns
    -------
    (temperature, expected ceiling at that temperature).
    """

    def gap(log_t: float) -> float:
        probs = odd_one_out_probabilities(embedding, ids, math.exp(log_t))
        return float(expected_noise_ceiling(probs, n_repeats)) - target

    x = np.asarray(embedding, dtype=np.float64)
    spread = float(np.std(x @ x.T))
    lo = hi = math.log(spread if spread > 0 else 1.0)
    for _ in range(60):
        if gap(lo) > 0:
            break
        lo -= 1.0
    else:
        raise ValueError(
            f"no temperature reaches a noise ceiling of {target}: the triplets are too ambiguous "
            "(too many ties in the embedding's similarities)"
        )
    for _ in range(60):
        if gap(hi) < 0:
            break
        hi += 1.0
    else:  # pragma: no cover - the ceiling tends to 1/3 < target
        raise ValueError(f"no temperature brings the noise ceiling down to {target}")
    log_t = brentq(gap, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=200)
    t = math.exp(log_t)
    return t, gap(log_t) + target


@dataclass(frozen=True, eq=False)
class HumanBehaviour:
    """Simulated human odd-one-out data.

    Attributes
    ----------
    train : unique training triplets with one response each.
    ceiling_set : the repeated noise-ceiling set (each triplet ``n_ceiling_repeats`` times,
        every presentation in its own random order).
    temperature : T of the dot-product model.
    expected_ceiling : expected noise ceiling of the set at T.
    realised_ceiling : noise ceiling of the drawn responses.
    ceiling_draws : response draws of the set until the realised ceiling was within tolerance.
    """

    train: Triplets
    ceiling_set: Triplets
    temperature: float
    expected_ceiling: float
    realised_ceiling: float
    ceiling_draws: int


_MAX_CEILING_DRAWS = 200


def human_behaviour(config: WorldConfig, embedding: np.ndarray) -> HumanBehaviour:
    """Training triplets and a repeated noise-ceiling set from the embedding, seeded.

    1. ``n_ceiling_triplets`` unique triplets for the noise-ceiling set; T is calibrated so
       that their expected noise ceiling with ``n_ceiling_repeats`` responses is the target.
    2. The set's responses are drawn (each presentation in a random order); if the realised
       ceiling misses the target by more than the tolerance, the responses are drawn again
       from the next random stream (deterministic; the number of draws is recorded).
    3. ``n_train_triplets`` unique training triplets (none in the noise-ceiling set), one
       response each at the same T; subject ids uniform in 1..n_subjects.
    """
    n = config.n_concepts
    concepts = np.arange(n)
    seed = config.seed
    base = sample_triplets(
        concepts, config.n_ceiling_triplets, seed=np.random.default_rng([seed, _CEILING]),
        n_concepts=n,
    )  # fmt: skip
    temperature, expected = calibrate_temperature(
        embedding, base, config.n_ceiling_repeats, config.target_ceiling
    )
    repeated = np.repeat(base, config.n_ceiling_repeats, axis=0)
    best: tuple[float, Triplets, int] | None = None
    for draw in range(_MAX_CEILING_DRAWS):
        rng = np.random.default_rng([seed, _CEILING_RESPONSES, draw])
        shown = rng.permuted(repeated, axis=1)
        shown = shown[rng.permutation(shown.shape[0])]
        probs = odd_one_out_probabilities(embedding, shown, temperature)
        odd = sample_responses(probs, rng)
        subject = rng.integers(1, config.n_subjects + 1, size=shown.shape[0])
        candidate = Triplets(shown, odd, n, subject=subject)
        realised = noise_ceiling(candidate)
        if best is None or abs(realised - config.target_ceiling) < abs(
            best[0] - config.target_ceiling
        ):
            best = (realised, candidate, draw + 1)
        if abs(realised - config.target_ceiling) <= config.ceiling_tolerance:
            break
    assert best is not None
    realised, ceiling_set, draws = best
    if abs(realised - config.target_ceiling) > config.ceiling_tolerance:
        warnings.warn(
            f"world: realised noise ceiling {realised:.4f} misses the target "
            f"{config.target_ceiling} by more than {config.ceiling_tolerance} after "
            f"{_MAX_CEILING_DRAWS} draws; use more noise-ceiling triplets or repeats",
            stacklevel=2,
        )
    train_ids = sample_triplets(
        concepts, config.n_train_triplets, seed=np.random.default_rng([seed, _TRAIN]),
        n_concepts=n, exclude=base,
    )  # fmt: skip
    rng = np.random.default_rng([seed, _TRAIN_RESPONSES])
    odd = sample_responses(odd_one_out_probabilities(embedding, train_ids, temperature), rng)
    subject = np.random.default_rng([seed, _SUBJECTS]).integers(
        1, config.n_subjects + 1, size=train_ids.shape[0]
    )
    train = Triplets(train_ids, odd, n, subject=subject)
    return HumanBehaviour(train, ceiling_set, temperature, expected, realised, draws)


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


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def render_world_images(
    config: WorldConfig,
    embedding: np.ndarray,
    concept_ids: Sequence[str],
    folder: str | os.PathLike[str],
) -> list[tuple[str, str]]:
    """Render every concept's images into ``folder`` as PNG files.

    Exemplar 1 is the reference image; exemplars 2.. are jittered (seed ``(seed, concept,
    exemplar)``).

    Returns
    -------
    (concept id, file name) per image, in concept order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    attrs = visual_attributes(embedding, seed=config.seed)
    rows: list[tuple[str, str]] = []
    for i, cid in enumerate(concept_ids):
        base = attrs.iloc[i].to_dict()
        for e in range(config.n_exemplars):
            a = base
            if e > 0:
                a = jitter_attributes(
                    base, np.random.default_rng([config.seed, _EXEMPLARS, i, e]),
                    config.exemplar_jitter,
                )  # fmt: skip
            name = f"{cid}_{e + 1:02d}.png"
            render_image(a, config.image_size).save(folder / name, optimize=False)
            rows.append((cid, name))
    return rows


# ----------------------------------------------------------------------------------------------
# The world on disk
# ----------------------------------------------------------------------------------------------


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
    from modelrecovery.data.loaders import load_concept_ids

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


# ----------------------------------------------------------------------------------------------
# Feature generator (no images)
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS = ("relu", "tanh", "softplus", "square")


def generated_features(
    human_embedding: np.ndarray,
    dims: Sequence[int] = (512, 1024, 2048, 4096),
    *,
    seed: int = 0,
    noise: float = 0.5,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Candidate representations made from the human embedding, without images.

    Model ``m`` sees a random subset of the human dimensions (each kept with a probability
    drawn in [0.5, 1]), mixes them through a random hidden layer (64-256 units, a random
    activation among relu, tanh, softplus, square), projects to ``dims[m]`` features and adds
    Gaussian noise (``noise`` x a random factor in [0.5, 1.5], relative to the signal's
    standard deviation) plus a model-specific nuisance representation. Models therefore
    differ in how well they predict the human triplets.

    Parameters
    ----------
    human_embedding : (n_concepts, n_dims) array.
    dims : feature dimension of each model.
    seed : seed; model ``m`` uses the stream ``(seed, m)``.
    noise : overall noise level (0: none).
    names : model names (default ``gen00_p512``, ``gen01_p1024``, ...).

    Returns
    -------
    Ordered dict name -> (n_concepts, dims[m]) float32 array.
    """
    e = np.asarray(human_embedding, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"human_embedding must be 2-D, got shape {e.shape}")
    if names is None:
        names = [f"gen{m:02d}_p{int(p)}" for m, p in enumerate(dims)]
    if len(names) != len(dims) or len(set(names)) != len(names):
        raise ValueError("names must be distinct and one per entry of dims")
    n, d = e.shape
    e = e / (np.std(e) or 1.0)
    out: dict[str, np.ndarray] = {}
    for m, (name, p) in enumerate(zip(names, dims, strict=True)):
        if int(p) < 1:
            raise ValueError(f"dims[{m}] = {p}: feature dimensions must be positive")
        rng = np.random.default_rng([int(seed), m])
        keep = rng.random(d) < rng.uniform(0.5, 1.0)
        if not keep.any():
            keep[rng.integers(d)] = True
        hidden = int(rng.integers(64, 257))
        a1 = rng.normal(0, 1 / math.sqrt(keep.sum()), size=(int(keep.sum()), hidden))
        b1 = rng.normal(0, 0.5, size=hidden)
        pre = e[:, keep] @ a1 + b1
        act = _ACTIVATIONS[int(rng.integers(len(_ACTIVATIONS)))]
        if act == "relu":
            h = np.maximum(pre, 0)
        elif act == "tanh":
            h = np.tanh(pre)
        elif act == "softplus":
            h = np.logaddexp(0, pre)
        else:
            h = pre**2
        h -= h.mean(axis=0)
        signal = h @ rng.normal(0, 1 / math.sqrt(hidden), size=(hidden, int(p)))
        scale = float(np.std(signal)) or 1.0
        level = noise * rng.uniform(0.5, 1.5)
        nuisance = rng.normal(size=(n, 8)) @ rng.normal(size=(8, int(p))) / math.sqrt(8)
        x = signal + level * scale * (0.5 * nuisance + rng.normal(size=(n, int(p))))
        out[name] = x.astype(np.float32)
    return out
