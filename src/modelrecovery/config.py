"""YAML configuration files with command-line overrides (``key.sub=value``); the
study's typed specification is checked by :func:`modelrecovery.study.spec.load_spec`."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file: a path, or a name looked up as ``conf/<name>.yaml``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = CONF_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {name_or_path!r} not found (known in {CONF_DIR}: {known})")


def split_overrides(texts: Iterable[str] | None) -> list[str]:
    """Overrides from command-line words; a word may hold several (MLflow passes all of an
    entry point's ``overrides`` parameter as one word): split before each ``key=``."""
    out = []
    for text in texts or []:
        out += [part for part in re.split(r"\s+(?=[A-Za-z_][\w.]*=)", text.strip()) if part]
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    if not key:
        raise ValueError(f"override {text!r} has an empty key")
    try:
        return key.split("."), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({err})") from err


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``key.sub=value`` set. A key the file does not give is
    added (the study's specification then checks it: an unknown key is refused there,
    with the keys its section knows)."""
    out = copy.deepcopy(dict(config))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for depth, key in enumerate(keys[:-1]):
            if node.get(key) is None:
                node[key] = {}
            if not isinstance(node[key], dict):
                raise ValueError(
                    f"override {text!r}: {'.'.join(keys[: depth + 1])} is not a section"
                )
            node = node[key]
        node[keys[-1]] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}:" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config {shown(path)}:{line} not valid YAML ({problem})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a mapping, got {type(config).__name__}")
    return config


def read_config(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping, before overrides and checks. ``base: <name or path>``
    starts from another config (looked up as :func:`resolve_config_path` does, relative
    paths from this file's folder): this file's sections are merged into the base's key by
    key, other values replace the base's. With ``rules: study_scripts`` the keys that rule
    sets are the rule's (:func:`~modelrecovery.study.spec.apply_study_scripts`)."""
    config = _read_yaml(path)
    base_name = config.pop("base", None)
    if base_name is None:
        return config
    if not isinstance(base_name, str) or not base_name:
        raise ValueError(f"config {shown(path)}: base = {base_name!r}: expected a config name")
    local = path.parent / base_name
    base_path = local if local.suffix in (".yaml", ".yml") and local.exists() else None
    if base_path is None:
        try:
            base_path = resolve_config_path(base_name)
        except FileNotFoundError as err:
            raise ValueError(f"config {shown(path)}: base = {base_name!r}: {err}") from None
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ValueError(f"config {shown(path)}: base = {base_name!r} refers back to itself")
    base = read_config(base_path, (*_seen, path.resolve()))
    return _merge(base, config)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def shown(path: Path) -> str:
    """A path as shown in messages: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
