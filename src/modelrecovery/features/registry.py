"""The backbone registry: names -> builders, the :class:`Backbone` they return, and lookup.

Providers (:mod:`.backbones`: ``timm:``, ``open_clip:``, ``efficientnet_lite0_imagenet``;
:mod:`.resized`: ``resized:<px>:<backbone>``) import this module and register their builders
when they are imported; neither imports the other. The lookups (:func:`build_backbone`,
:func:`available_backbones`) import the built-in providers on first use, so every built-in name
is known however the caller reached this module.

The helpers :func:`fork_rng` and :func:`quiet_root_warning` are shared by the providers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

__all__ = [
    "Backbone",
    "BackboneBuilder",
    "BackboneWeightsError",
    "UnknownBackboneError",
    "available_backbones",
    "build_backbone",
    "fork_rng",
    "quiet_root_warning",
    "register_backbone",
]


class UnknownBackboneError(ValueError):
    """The backbone name is not registered or the library does not know the architecture."""


class BackboneWeightsError(ValueError):
    """Pretrained weights could not be loaded; the message says how to supply them (a
    request the machine cannot serve: the command line reports it as bad input, exit 2)."""


@dataclass(eq=False)
class Backbone:
    """A feature extractor.

    Attributes
    ----------
    name : the registry name it was built from (e.g. ``timm:resnet18``).
    model : module in eval mode mapping a (B, 3, H, W) float batch to (B, feature_dim).
    transform : PIL image -> (3, H, W) tensor (resize, crop, normalise).
    feature_dim : number of features per image.
    description : JSON-serialisable provenance (library and version, architecture, weights,
        layer, preprocessing); recorded in feature sidecars and used in cache keys.
    """

    name: str
    model: nn.Module
    transform: Callable[[Any], torch.Tensor]
    feature_dim: int
    description: dict[str, Any] = field(default_factory=dict)


class BackboneBuilder(Protocol):
    """Builds a backbone: ``builder(name, spec, *, pretrained, seed, weights)``."""

    def __call__(
        self, name: str, spec: str, *, pretrained: bool, seed: int, weights: Path | None
    ) -> Backbone: ...


_PREFIX_BUILDERS: dict[str, BackboneBuilder] = {}
_NAMED_BUILDERS: dict[str, BackboneBuilder] = {}


def register_backbone(name: str, builder: BackboneBuilder, *, prefix: bool = False) -> None:
    """Register a backbone builder.

    Parameters
    ----------
    name : a full name (``efficientnet_lite0_imagenet``) or, with ``prefix=True``, a library
        prefix (``timm``) that handles every ``<prefix>:<spec>`` name.
    builder : called as ``builder(name, spec, pretrained=..., seed=..., weights=...)``.
    prefix : whether ``name`` is a prefix.
    """
    (_PREFIX_BUILDERS if prefix else _NAMED_BUILDERS)[name] = builder


def _load_builtin_providers() -> None:
    """Import the built-in providers (each registers its builders when imported; a no-op
    once they are in ``sys.modules``)."""
    from . import backbones, resized  # noqa: F401


def available_backbones() -> list[str]:
    """Registered names and prefix patterns (``timm:<model>``, ...)."""
    _load_builtin_providers()
    return sorted(_NAMED_BUILDERS) + [f"{p}:<spec>" for p in sorted(_PREFIX_BUILDERS)]


def build_backbone(
    name: str,
    *,
    pretrained: bool,
    seed: int = 0,
    weights: str | os.PathLike[str] | None = None,
) -> Backbone:
    """Build a backbone by name (see :mod:`.backbones` and :mod:`.resized` for the names).

    Parameters
    ----------
    name : ``timm:<model>``, ``open_clip:<arch>[:<tag>]``, ``resized:<px>:<backbone>`` or a
        registered name.
    pretrained : load trained weights (True) or use seeded random weights (False).
    seed : seed for ``torch.manual_seed`` before construction (random weights only).
    weights : local checkpoint file to load instead of the library's download (implies
        ``pretrained=True``).

    Returns
    -------
    Backbone on the CPU, in eval mode.

    Raises
    ------
    UnknownBackboneError
        Unknown name or architecture.
    BackboneWeightsError
        Pretrained weights unavailable (offline and not cached) or incompatible.
    """
    _load_builtin_providers()
    weights_path = None
    if weights is not None:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise BackboneWeightsError(f"{name}: weights file {weights_path} not found")
        pretrained = True
    if name in _NAMED_BUILDERS:
        builder, spec = _NAMED_BUILDERS[name], ""
    else:
        prefix, sep, spec = name.partition(":")
        if not sep or prefix not in _PREFIX_BUILDERS or not spec:
            raise UnknownBackboneError(
                f"unknown backbone {name!r}; expected one of {', '.join(available_backbones())}"
            )
        builder = _PREFIX_BUILDERS[prefix]
    with fork_rng():
        torch.manual_seed(seed)
        backbone = builder(name, spec, pretrained=pretrained, seed=seed, weights=weights_path)
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    return backbone


# --------------------------------------------------------------------------------------------
# helpers shared by the providers


@contextlib.contextmanager
def fork_rng() -> Iterator[None]:
    """Restore torch's global CPU RNG state afterwards (building must not disturb callers)."""
    state = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


@contextlib.contextmanager
def quiet_root_warning(prefix: str) -> Iterator[None]:
    """Drop root-logger records starting with ``prefix`` while the block runs."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
