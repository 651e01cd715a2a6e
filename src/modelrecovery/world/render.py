"""Procedural images of the embedded default world, drawn from each concept's embedding.

A fixed (seeded) sparse random map turns the non-negative human embedding into bounded
"drives" (``tanh`` of a linear mix), and the drives set visual attributes: foreground and
background colour (hue from the angle of a pair of drives, a circular non-linearity), shape
(number of vertices and star-ness, discrete and continuous), size, number of objects, layout,
rotation, elongation, stripe texture, background dot pattern and outline. Concepts that share
embedding dimensions share drives and therefore look alike; the map is not linear (``tanh``,
angles, rounding to counts, rendering). Everything is a pure function of the embedding, the
seed and the image size; jittered exemplars take an explicit seed.
:func:`render_world_images` writes a world's PNG files.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from modelrecovery.data.sampling import SeedLike
from modelrecovery.world.config import STREAM_EXEMPLARS, WorldConfig

__all__ = [
    "ATTRIBUTES",
    "visual_attributes",
    "jitter_attributes",
    "render_image",
    "render_world_images",
]

ATTRIBUTES: tuple[str, ...] = (
    "fg_hue",
    "fg_saturation",
    "fg_value",
    "bg_hue",
    "bg_saturation",
    "bg_value",
    "n_vertices",
    "star",
    "size",
    "count",
    "spread",
    "rotation",
    "aspect",
    "stripe_frequency",
    "stripe_angle",
    "dots",
    "outline",
    "offset_x",
    "offset_y",
)
"""Columns of :func:`visual_attributes`, in order."""

_N_DRIVES = 20
_LINKS_PER_DIM = 4  # drives each embedding dimension feeds
_MAX_VERTICES = 8  # 8 means "round" (a 40-gon)


def visual_attributes(embedding: np.ndarray, seed: int) -> pd.DataFrame:
    """Visual attributes of every concept, a deterministic non-linear map of its embedding.

    Parameters
    ----------
    embedding : (n_concepts, n_dims) non-negative human embedding.
    seed : seed of the random map from embedding dimensions to drives.

    Returns
    -------
    DataFrame with one row per concept and the columns :data:`ATTRIBUTES` (floats; ``count``
    and ``n_vertices`` hold whole numbers).
    """
    e = np.asarray(embedding, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
        raise ValueError(f"embedding must be a non-empty 2-D array, got shape {e.shape}")
    n_dims = e.shape[1]
    positive = e[e > 0]
    scale = float(np.percentile(positive, 75)) if positive.size else 1.0
    rng = np.random.default_rng([int(seed), 0x5EED])
    mix = np.zeros((n_dims, _N_DRIVES))
    for d in range(n_dims):
        links = rng.choice(_N_DRIVES, size=min(_LINKS_PER_DIM, _N_DRIVES), replace=False)
        mix[d, links] = rng.normal(0.0, 1.0, size=links.size) + np.sign(rng.normal(size=links.size))
    bias = rng.normal(0.0, 0.25, size=_N_DRIVES)
    pre = (e / scale) @ mix
    # standardise each drive over the concepts so that every attribute uses its range
    pre = (pre - pre.mean(axis=0)) / np.where(pre.std(axis=0) > 0, pre.std(axis=0), 1.0)
    h = np.tanh(1.2 * pre + bias)  # (n, drives) in (-1, 1)
    u = (h + 1.0) / 2.0  # in (0, 1)
    # salience: concepts with more total weight get larger, more saturated objects
    norm = np.linalg.norm(e, axis=1)
    salience = (np.argsort(np.argsort(norm, kind="stable"), kind="stable") + 0.5) / len(norm)

    def angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (np.arctan2(a, b) / (2 * math.pi)) % 1.0

    n_vertices = 3 + np.minimum(np.floor(u[:, 8] * (_MAX_VERTICES - 2)), _MAX_VERTICES - 3)
    count = 1 + np.minimum(np.floor(u[:, 11] ** 1.5 * 5), 4)
    columns = {
        "fg_hue": angle(h[:, 0], h[:, 1]),
        "fg_saturation": 0.3 + 0.7 * (0.5 * salience + 0.5 * u[:, 2]),
        "fg_value": 0.35 + 0.65 * u[:, 3],
        "bg_hue": angle(h[:, 4], h[:, 5]),
        "bg_saturation": 0.05 + 0.55 * u[:, 6],
        "bg_value": 0.15 + 0.85 * u[:, 7],
        "n_vertices": n_vertices,
        "star": np.clip((u[:, 9] - 0.35) / 0.65, 0.0, 1.0),
        "size": 0.16 + 0.44 * (0.65 * salience + 0.35 * u[:, 10]),
        "count": count,
        "spread": u[:, 12],
        "rotation": u[:, 13],
        "aspect": 0.55 + 0.9 * u[:, 14],
        "stripe_frequency": np.clip((u[:, 15] - 0.4) / 0.6, 0.0, 1.0) * 9.0,
        "stripe_angle": u[:, 16],
        "dots": np.clip((u[:, 17] - 0.3) / 0.7, 0.0, 1.0),
        "outline": np.clip((u[:, 18] - 0.3) / 0.7, 0.0, 1.0),
        "offset_x": (u[:, 19] - 0.5) * 0.3,
        "offset_y": (u[:, 1] * u[:, 19] - 0.25) * 0.3,
    }
    return pd.DataFrame(columns, columns=list(ATTRIBUTES))


def jitter_attributes(
    attributes: Mapping[str, float], seed: SeedLike, amount: float = 1.0
) -> dict[str, float]:
    """A jittered exemplar's attributes: small random changes of the continuous attributes.

    Parameters
    ----------
    attributes : one concept's attributes (a row of :func:`visual_attributes`).
    seed : seed of the jitter.
    amount : scale of the jitter (0: none).

    Returns
    -------
    New attribute dict (shape, count and texture kind unchanged).
    """
    rng = np.random.default_rng(seed)
    a = {k: float(attributes[k]) for k in ATTRIBUTES}
    s = float(amount)
    a["fg_hue"] = (a["fg_hue"] + rng.normal(0, 0.02 * s)) % 1.0
    a["bg_hue"] = (a["bg_hue"] + rng.normal(0, 0.02 * s)) % 1.0
    for key in ("fg_saturation", "fg_value", "bg_saturation", "bg_value", "spread", "dots"):
        a[key] = float(np.clip(a[key] + rng.normal(0, 0.05 * s), 0.0, 1.0))
    a["size"] = float(a["size"] * math.exp(rng.normal(0, 0.1 * s)))
    a["aspect"] = float(a["aspect"] * math.exp(rng.normal(0, 0.08 * s)))
    a["rotation"] = (a["rotation"] + rng.normal(0, 0.08 * s)) % 1.0
    a["stripe_angle"] = (a["stripe_angle"] + rng.normal(0, 0.05 * s)) % 1.0
    a["offset_x"] = float(a["offset_x"] + rng.normal(0, 0.06 * s))
    a["offset_y"] = float(a["offset_y"] + rng.normal(0, 0.06 * s))
    return a


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0.0), 1.0), min(value, 1.0))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _polygon(
    cx: float, cy: float, radius: float, a: Mapping[str, float]
) -> list[tuple[float, float]]:
    """Vertices of one object: regular polygon or star, stretched and rotated."""
    n = int(a["n_vertices"])
    round_shape = n >= _MAX_VERTICES
    k = 40 if round_shape else n
    star = 0.0 if round_shape else float(a["star"])
    points = 2 * k if star > 0 else k
    turn = 2 * math.pi * float(a["rotation"]) / max(k, 1)
    aspect = math.sqrt(float(a["aspect"]))
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    out = []
    for v in range(points):
        theta = 2 * math.pi * v / points
        r = radius * (1.0 - 0.6 * star if (star > 0 and v % 2) else 1.0)
        x, y = r * math.cos(theta) * aspect, r * math.sin(theta) / aspect
        out.append((cx + x * cos_t - y * sin_t, cy + x * sin_t + y * cos_t))
    return out


def _centres(a: Mapping[str, float], s: float, radius: float) -> list[tuple[float, float]]:
    """Object centres: one in the middle, or a row (low spread) / ring (high spread)."""
    count = int(a["count"])
    cx = s * (0.5 + float(a["offset_x"]))
    cy = s * (0.5 + float(a["offset_y"]))
    if count == 1:
        return [(cx, cy)]
    spread = float(a["spread"])
    if spread < 0.5:  # a row, tilted by the rotation
        step = min(radius * (1.2 + 1.6 * spread), 0.8 * s / count)  # keep the row in view
        tilt = math.pi * float(a["rotation"])
        first = -(count - 1) / 2
        return [
            (cx + (first + i) * step * math.cos(tilt), cy + (first + i) * step * math.sin(tilt))
            for i in range(count)
        ]
    ring = s * (0.14 + 0.16 * (spread - 0.5))
    start = 2 * math.pi * float(a["rotation"])
    return [
        (cx + ring * math.cos(start + 2 * math.pi * i / count),
         cy + ring * math.sin(start + 2 * math.pi * i / count))
        for i in range(count)
    ]  # fmt: skip


def render_image(attributes: Mapping[str, float], size: int, supersample: int = 2) -> Image.Image:
    """Draw one image from a concept's visual attributes.

    Parameters
    ----------
    attributes : a row of :func:`visual_attributes` (or of :func:`jitter_attributes`).
    size : width and height in pixels.
    supersample : draw at ``size * supersample`` and downsample (anti-aliasing).

    Returns
    -------
    RGB PIL image of ``size x size`` pixels; a pure function of its arguments.
    """
    a = attributes
    s = int(size) * int(supersample)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s

    # background: colour with a soft vertical gradient and a lattice of dots
    bg = np.array(_rgb(a["bg_hue"], a["bg_saturation"], a["bg_value"]), dtype=np.float32)
    shade = (1.0 - 0.25 * (yy - 0.5))[..., None]
    pixels = np.clip(bg[None, None, :] * shade, 0, 255)
    dots = float(a["dots"])
    if dots > 0:
        cells = 3.0 + 9.0 * dots
        fx, fy = (xx * cells) % 1.0 - 0.5, (yy * cells) % 1.0 - 0.5
        dot = (fx**2 + fy**2) < (0.12 + 0.18 * dots) ** 2
        dot_colour = np.array(
            _rgb(a["bg_hue"] + 0.5, a["bg_saturation"] * 0.8 + 0.2, 1.0 - 0.7 * a["bg_value"]),
            dtype=np.float32,
        )
        pixels[dot] = 0.5 * pixels[dot] + 0.5 * dot_colour

    # objects: a mask of all shapes, filled with the foreground colour and stripes
    count = int(a["count"])
    radius = s * float(a["size"]) / 2.0 / count**0.4
    polygons = [_polygon(cx, cy, radius, a) for cx, cy in _centres(a, s, radius)]
    mask_image = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask_image)
    for poly in polygons:
        draw.polygon(poly, fill=255)
    mask = np.asarray(mask_image) > 127
    fg = np.array(_rgb(a["fg_hue"], a["fg_saturation"], a["fg_value"]), dtype=np.float32)
    pixels[mask] = fg
    freq = float(a["stripe_frequency"])
    if freq >= 1.0:
        theta = math.pi * float(a["stripe_angle"])
        phase = (xx * math.cos(theta) + yy * math.sin(theta)) * (2.0 + 2.5 * freq)
        stripe = mask & ((phase % 1.0) < 0.5)
        stripe_colour = np.array(
            _rgb(a["fg_hue"] + 0.12, a["fg_saturation"], 0.35 * a["fg_value"] + 0.05),
            dtype=np.float32,
        )
        pixels[stripe] = stripe_colour
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    width = int(round(float(a["outline"]) * s * 0.03))
    if width > 0:
        draw = ImageDraw.Draw(image)
        edge = _rgb(a["fg_hue"], 0.5 * a["fg_saturation"], 0.25 * a["fg_value"])
        for poly in polygons:
            draw.polygon(poly, outline=edge, width=width)
    if supersample > 1:
        image = image.resize((int(size), int(size)), Image.Resampling.LANCZOS)
    return image


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
                    base, np.random.default_rng([config.seed, STREAM_EXEMPLARS, i, e]),
                    config.exemplar_jitter,
                )  # fmt: skip
            name = f"{cid}_{e + 1:02d}.png"
            render_image(a, config.image_size).save(folder / name, optimize=False)
            rows.append((cid, name))
    return rows
