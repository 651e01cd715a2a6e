"""YAML configuration files with command-line overrides (``key.sub=value``); the
study's typed specification is checked by :func:`modelrecovery.study.spec.load_spec`."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key repeated in one mapping (the plain loader
    keeps the last silently: ``models: {a: a.npy, a: b.npy}`` ran two identical models)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML's hook
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} repeats in one mapping (first at line "
                    f"{seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: Any) -> Any:
    """``yaml.safe_load`` that refuses a key repeated in a mapping (:class:`StrictLoader`)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


#: the packaged configs (``modelrecovery/conf``, shipped in the wheel as package data; a
#: checkout's top-level ``conf`` links here)
CONF_DIR = Path(str(resources.files("modelrecovery").joinpath("conf")))
WORLD_CONF_DIR = CONF_DIR / "world"

#: the keys of a study config that hold paths. In a config file given by its path, a
#: relative path is relative to that file's folder; in a packaged config (given by its
#: name) it is relative to the current folder (``data/things/...`` where ``modelrecovery
#: data things`` puts the files). ``--set`` values are relative to the current folder.
PATH_KEYS = (
    ("data", "world_config"),
    ("data", "root"),
    ("data", "triplets"),
    ("data", "repeated"),
    ("data", "sortindex"),
    ("data", "features_dir"),
    ("data", "human_embedding"),
    ("store",),
)


def packaged_configs(folder: Path = CONF_DIR) -> list[str]:
    """The names of the packaged study configs (``modelrecovery config list``)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def packaged_config_file(name: str) -> Path:
    """A packaged config's file by its name: ``default`` (a study) or ``world/default``."""
    folder, _, stem = name.rpartition("/")
    base = {"": CONF_DIR, "world": WORLD_CONF_DIR}.get(folder)
    path = base / f"{stem}.yaml" if base is not None and _looks_like_name(stem) else None
    if path is None or not path.is_file():
        known = packaged_configs() + [f"world/{n}" for n in packaged_configs(WORLD_CONF_DIR)]
        raise FileNotFoundError(f"no packaged config {name!r} (known: {', '.join(known)})")
    return path


def describe_packaged_configs() -> dict[str, str]:
    """Every packaged config's name (``world/<name>`` for world configs) and the first
    line of its leading comment."""
    names = packaged_configs() + [f"world/{n}" for n in packaged_configs(WORLD_CONF_DIR)]
    described = {}
    for name in names:
        lines = packaged_config_file(name).read_text(encoding="utf-8").splitlines()
        first = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "")
        described[name] = first
    return described


def is_packaged(path: Path) -> bool:
    """True for a config file shipped inside the package."""
    try:
        path.resolve().relative_to(CONF_DIR.resolve())
    except ValueError:
        return False
    return True


def _looks_like_name(text: str) -> bool:
    return bool(text) and os.sep not in text and "/" not in text and not Path(text).suffix


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A study config file: a packaged config's name (``default``: ``conf/default.yaml`` in
    the package) or the path of a file (any name; its content must be YAML)."""
    text = str(name_or_path)
    if _looks_like_name(text) and (CONF_DIR / f"{text}.yaml").is_file():
        return CONF_DIR / f"{text}.yaml"
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(f"config {text!r} is a folder, expected a config file")
    known = ", ".join(packaged_configs())
    raise FileNotFoundError(
        f"config {text!r} not found: no such file, nor a packaged config ({known})"
    )


def resolve_world_config(name_or_path: str | Path | None) -> Path:
    """A world config file: None (the packaged default), a packaged world config's name
    (``default``), a path, or a checkout's ``conf/world/<name>.yaml`` from anywhere (the
    packaged file of that name)."""
    if name_or_path is None:
        return WORLD_CONF_DIR / "default.yaml"
    text = str(name_or_path)
    if _looks_like_name(text) and (WORLD_CONF_DIR / f"{text}.yaml").is_file():
        return WORLD_CONF_DIR / f"{text}.yaml"
    path = Path(text).expanduser()
    if path.is_file():
        return path
    parts = Path(text).parts
    if not path.is_absolute() and parts[:2] == ("conf", "world") and len(parts) == 3:
        packaged = WORLD_CONF_DIR / parts[2]
        if packaged.is_file():
            return packaged
    known = ", ".join(packaged_configs(WORLD_CONF_DIR))
    what = "is a folder, expected a file" if path.is_dir() else "not found"
    raise FileNotFoundError(
        f"world config {text!r} {what} (a path, or a packaged world config: {known})"
    )


def _relative_to_file(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """``config`` with the relative paths of :data:`PATH_KEYS` made relative to the
    folder of its file ``path`` (absolute when that is not the current folder). A world
    config that names a packaged one (``default``) stays a name."""
    folder = path.parent
    if folder.resolve() == Path.cwd().resolve():
        return config
    for keys in PATH_KEYS:
        node: Any = config
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
            continue
        if keys == ("data", "world_config") and not (folder / value).exists():
            continue  # a packaged name, or conf/world/<name>.yaml (resolve_world_config)
        node[keys[-1]] = os.path.abspath(folder / value)
    return config


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
        return key.split("."), load_yaml(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"override {text!r}: the value is not valid YAML ({problem})") from err


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
            config = load_yaml(f) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}:" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config {shown(path)}:{line} not valid YAML ({problem})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a mapping, got {type(config).__name__}")
    return config


def read_config(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping, before overrides and checks (the relative paths of a file
    that is not packaged made relative to its folder: :data:`PATH_KEYS`).
    ``base: <name or path>`` starts from another config (looked up as
    :func:`resolve_config_path` does, relative paths from this file's folder): this file's
    sections are merged into the base's key by
    key, other values replace the base's. With ``rules: study_scripts`` the keys that rule
    sets are the rule's (:func:`~modelrecovery.study.spec.apply_study_scripts`)."""
    config = _read_yaml(path)
    if not is_packaged(path):
        config = _relative_to_file(config, path)
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
    """A path as shown in messages: a packaged config as ``conf/<name>.yaml``, another
    path relative to the working folder when inside it."""
    if is_packaged(path):
        return f"conf/{path.resolve().relative_to(CONF_DIR.resolve()).as_posix()}"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
