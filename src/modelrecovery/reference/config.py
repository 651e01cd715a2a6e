"""The study config's reference page, generated from its schema
(:class:`modelrecovery.study.spec.StudySpec`).

Every key is read from the pydantic models: its dotted path (``grid.sizes``,
``grid.levels[].k``, ``models.<name>.file``), its type in words (from the annotation and
its constraints), its default (or ``required``) and its meaning (the field's description,
the one vocabulary the config's error messages use too). Nested sections, lists and
mappings of models and tagged unions (a model entry of a files or of a world study) are
walked; nothing is written here about a particular key. ``render("world")`` does the same
for the world config (:class:`modelrecovery.world.config.WorldConfig`, a dataclass whose
docstring describes its fields).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from modelrecovery.reference.cli import escape
from modelrecovery.study.spec import split_description

NONE = "—"


# --- types in words -----------------------------------------------------------------------------


def _bound(value: Any) -> str:
    """A bound as written by a person: ``1/3`` rather than 0.333333."""
    if isinstance(value, float) and not value.is_integer():
        fraction = Fraction(value).limit_denominator(12)
        if abs(float(fraction) - value) < 1e-12 and fraction.denominator > 1:
            return f"{fraction.numerator}/{fraction.denominator}"
        return f"{value:g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _constraints(metadata: list[Any]) -> tuple[list[str], bool]:
    """(the bounds in words, non-empty) of a field's or a type's constraints."""
    words, non_empty, finite = [], False, False
    low = high = None
    for item in metadata:
        if isinstance(item, FieldInfo):
            more, empty = _constraints(list(item.metadata))
            words += more
            non_empty = non_empty or empty
        elif isinstance(item, annotated_types.Ge):
            low = f"≥ {_bound(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            low = f"> {_bound(item.gt)}"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {_bound(item.le)}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {_bound(item.lt)}"
        elif isinstance(item, annotated_types.MinLen) and item.min_length >= 1:
            non_empty = True
        elif type(item).__name__ == "AllowInfNan" and not getattr(item, "allow_inf_nan", True):
            finite = True
    bounds = [b for b in (low, high) if b]
    if bounds:
        words.insert(0, " and ".join(bounds))
    if finite:
        words.insert(0, "finite:")
    return words, non_empty


_PLURAL = {"integer": "integers", "number": "numbers", "text": "texts"}


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(the type, its constraints) of a possibly ``Annotated`` type."""
    metadata: list[Any] = []
    while get_origin(annotation) is typing.Annotated:
        annotation, *more = get_args(annotation)
        metadata = list(more) + metadata
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def model_of(annotation: Any) -> type[BaseModel] | None:
    annotation, _ = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def type_text(annotation: Any, metadata: list[Any] | None = None, plural: bool = False) -> str:
    """A type in words: ``integer ≥ 1``, ``list of numbers > 0``, ``one of `a`, `b```,
    ``null or text``, ``mapping name → model entry``."""
    annotation, inner = _unwrap(annotation)
    metadata = list(metadata or []) + inner
    words, non_empty = _constraints(metadata)
    if _is_union(annotation):
        members = [m for m in get_args(annotation) if m is not type(None)]
        models = [model_of(m) for m in members]
        if len(members) > 1 and all(models):
            text = "model entry"
        else:
            text = " or ".join(type_text(m, metadata, plural) for m in members)
        return ("null or " + text) if type(None) in get_args(annotation) else text
    origin = get_origin(annotation)
    if origin is Literal:
        values = ", ".join(f"`{value}`" for value in get_args(annotation))
        return values if len(get_args(annotation)) == 1 else f"one of {values}"
    if origin in (tuple, list):
        item = get_args(annotation)[0]
        item_text = type_text(item, plural=True)
        prefix = "non-empty list" if non_empty else "list"
        if get_origin(_unwrap(item)[0]) is Literal:
            return f"{prefix}, each {item_text}"
        return f"{prefix} of {item_text}"
    if origin in (dict, Mapping):
        key, value = get_args(annotation)
        if value is Any:
            return "mapping"
        model = model_of(value) or (_union_models(value) and "model entry")
        value_text = "model entry" if model else type_text(value)
        if key is not str:
            return f"mapping {type_text(key)} → {value_text}"
        return f"mapping name → {value_text}"
    if model_of(annotation) is not None:
        return "mappings" if plural else "mapping"
    base = {int: "integer", float: "number", str: "text", bool: "true or false"}.get(
        annotation, "any" if annotation is Any else getattr(annotation, "__name__", "any")
    )
    if plural:
        base = _PLURAL.get(base, base)
    if base == "text" and non_empty:
        base = "non-empty text"
    if words and words[0] == "finite:":
        base, words = f"finite {base}", words[1:]
    return " ".join([base, *words]) if words else base


def _union_models(annotation: Any) -> list[type[BaseModel]]:
    annotation, _ = _unwrap(annotation)
    if not _is_union(annotation):
        return []
    found = [model_of(m) for m in get_args(annotation) if m is not type(None)]
    return [m for m in found if m is not None] if all(found) else []


def _discriminator(annotation: Any) -> str | None:
    _, metadata = _unwrap(annotation)
    for item in metadata:
        if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
            return item.discriminator
    return None


# --- defaults -----------------------------------------------------------------------------------


def value_text(value: Any) -> str:
    """A value as YAML shows it: ``null``, ``true``, ``[40, 400]``, ``1e-06``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.12g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return "its keys' defaults"
    if default == "":
        return '`""`'
    return f"`{value_text(default)}`"


# --- the walk -----------------------------------------------------------------------------------


@dataclass
class Key:
    """One row: a dotted path, its type, its default and its meaning."""

    path: str
    type: str
    default: str
    meaning: str
    link: str | None = None  # the anchor of the section that holds its keys


@dataclass
class Section:
    """A heading: a model's keys under ``path`` (``grid``, ``grid.levels[]``)."""

    path: str
    model: type[BaseModel]
    depth: int
    tag: str | None = None  # a tagged union's member
    keys: list[Key] = field(default_factory=list)
    same_as: Section | None = None  # a model already described elsewhere

    @property
    def anchor(self) -> str:
        text = self.path + (f"-{self.tag}" if self.tag else "")
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "top-level"

    @property
    def title(self) -> str:
        if not self.path:
            return "Top-level keys"
        tagged = f", a `{self.tag}` entry" if self.tag else ""
        return f"`{self.path}`{tagged}"


def _child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def sections(model: type[BaseModel], path: str = "", depth: int = 0) -> list[Section]:
    """The model's section and, after it, every nested model's, in field order; a model
    met a second time (``extra_models`` holds the same entries as ``models``) points to
    its first section."""
    out: list[Section] = []
    seen: dict[type[BaseModel], Section] = {}

    def walk(model: type[BaseModel], path: str, depth: int, tag: str | None, skip: str | None):
        section = Section(path, model, depth, tag)
        if model in seen:
            section.same_as = seen[model]
        else:
            seen[model] = section
        out.append(section)
        nested: list[tuple[type[BaseModel], str, str | None, str | None]] = []
        for name, info in model.model_fields.items():
            if name == skip:
                continue  # a tagged union's tag: set from the data's kind, not written
            key_path = _child_path(path, name)
            annotation, _ = _unwrap(info.annotation)
            if _is_union(annotation):  # X | None
                members = [m for m in get_args(annotation) if m is not type(None)]
                annotation = members[0] if len(members) == 1 else annotation
            origin = get_origin(_unwrap(annotation)[0])
            row = Key(
                key_path,
                type_text(info.annotation, list(info.metadata)),
                default_text(info),
                info.description or "",
            )
            section.keys.append(row)
            if model_of(annotation) is not None:
                nested.append((model_of(annotation), key_path, None, None))
            elif origin in (tuple, list, dict) and get_args(annotation):
                item = get_args(annotation)[-1 if origin is dict else 0]
                item_path = f"{key_path}[]" if origin in (tuple, list) else f"{key_path}.<name>"
                tag_name = _discriminator(item)
                members = _union_models(item) or ([model_of(item)] if model_of(item) else [])
                for member in members:
                    tag = None
                    if tag_name and len(members) > 1:
                        tag = str(member.model_fields[tag_name].default)
                    nested.append((member, item_path, tag, tag_name))
        first = len(out)
        for member, member_path, tag, tag_name in nested:
            walk(member, member_path, depth + 1, tag, tag_name)
        anchors: dict[str, str] = {}
        for child in out[first:]:
            if child.depth == depth + 1:
                anchors.setdefault(child.path, child.anchor)  # a union: its first member
        for row in section.keys:
            for candidate in (row.path, f"{row.path}[]", f"{row.path}.<name>"):
                if candidate in anchors:
                    row.link = anchors[candidate]

    walk(model, path, depth, None, None)
    return out


def leaf_keys(model: type[BaseModel]) -> Iterator[Key]:
    """Every key of every section (what the reference lists)."""
    for section in sections(model):
        if section.same_as is None:
            yield from section.keys


# --- markdown -----------------------------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+:`~?(?P<target>[^`]+)`")


def docstring_markdown(text: str | None) -> str:
    """A docstring's paragraphs as markdown (Sphinx roles and ````code```` as code)."""
    if not text:
        return ""
    text = _ROLE.sub(lambda m: f"`{m.group('target').rsplit('.', 1)[-1]}`", text)
    text = text.replace("``", "`")
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in text.split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _table(section: Section) -> str:
    rows = []
    for key in section.keys:
        name = f"`{key.path}`"
        if key.link:
            name = f"[{name}](#{key.link})"
        meaning = escape(split_description(key.meaning)[1])
        rows.append(f"| {name} | {escape(key.type)} | {key.default} | {meaning} |")
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def _section_markdown(section: Section, base_level: int) -> str:
    level = "#" * (base_level + min(section.depth, 2))
    out = [f"{level} {section.title} {{ #{section.anchor} }}\n"]
    if section.same_as is not None:
        first = section.same_as
        out.append(
            f"Each entry has the keys of [{first.title}](#{first.anchor}) "
            f"(`{first.path}` there, `{section.path}` here).\n"
        )
        return "\n".join(out)
    described = docstring_markdown(section.model.__doc__)
    if described:
        out.append(described + "\n")
    out.append(_table(section))
    return "\n".join(out)


def render_model(model: type[BaseModel], base_level: int = 2) -> str:
    """Every section of ``model`` as markdown (headings from level ``base_level``)."""
    return "\n".join(_section_markdown(s, base_level) for s in sections(model))


def summary(text: str) -> str:
    """The first sentence of a config file's leading comment (up to a blank comment line
    or a list)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if not body or body.startswith("-"):
            break
        lines.append(body)
    joined = ""
    for body in lines:
        joined += body if joined.endswith("/") or not joined else " " + body
    found = re.search(r"[.?](?=\s|$)", joined)
    return (joined[: found.end()] if found else joined).rstrip(":")


def _packaged() -> str:
    from modelrecovery.config import describe_packaged_configs, packaged_config_file

    rows = [
        f"| `{name}` | {escape(summary(packaged_config_file(name).read_text('utf-8')))} |"
        for name in describe_packaged_configs()
    ]
    return (
        "## Packaged configs { #packaged-configs }\n\n"
        "`modelrecovery config list` lists them, `modelrecovery config show NAME` prints "
        "one.\n\n| name | what it is |\n|---|---|\n" + "\n".join(rows) + "\n"
    )


def _example(name: str, title: str, anchor: str) -> str:
    """A packaged config's text, read as ``modelrecovery config show NAME`` reads it."""
    from modelrecovery.config import packaged_config_file

    text = packaged_config_file(name).read_text(encoding="utf-8").rstrip("\n")
    return (
        f"## {title} {{ #{anchor} }}\n\n"
        f"`modelrecovery config show {name}` prints it:\n\n```yaml\n{text}\n```\n"
    )


# --- the world config ---------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r"^(?P<names>[\w, ]+?) : (?P<text>.*)$")


def attributes(doc: str | None) -> dict[str, str]:
    """The ``Attributes`` section of a NumPy-style docstring: name -> text (continuation
    lines joined; ``a, b : text`` gives both names the text)."""
    found: dict[str, str] = {}
    if not doc or "Attributes\n" not in doc:
        return found
    body = doc.split("Attributes\n", 1)[1]
    lines = body.splitlines()[1:]  # the ---- line
    names: list[str] = []
    for line in lines:
        if not line.strip():
            if names:
                break
            continue
        match = _ATTRIBUTE.match(line.strip())
        if match and not line.startswith(" " * 8):
            names = [n.strip() for n in match.group("names").split(",")]
            for name in names:
                found[name] = match.group("text").strip()
        elif names:
            for name in names:
                found[name] += " " + line.strip()
    return found


def render_world() -> str:
    """The world config's keys (:class:`~modelrecovery.world.config.WorldConfig`) and the
    packaged default world."""
    from modelrecovery.world.config import WorldConfig

    meanings = attributes(WorldConfig.__doc__)
    kinds = {int: "integer", float: "number", "int": "integer", "float": "number"}
    rows = []
    for item in dataclasses.fields(WorldConfig):
        kind = kinds.get(item.type, str(item.type))
        rows.append(
            f"| `{item.name}` | {kind} | `{value_text(item.default)}` | "
            f"{escape(docstring_markdown(meanings.get(item.name, '')))} |"
        )
    summary = docstring_markdown(WorldConfig.__doc__.split("\n\n", 1)[0])
    out = [
        "## World config { #world-config }\n",
        f"{summary} A world config is a YAML mapping of these keys (a file, or a packaged "
        "world config's name such as `default`); a study names it in `data.world_config` "
        "and overrides keys with `data.world_overrides`, and `modelrecovery world --set "
        "KEY=VALUE` overrides them on the command line.\n",
        "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n",
        _example("world/default", "Example: the default world", "example-world"),
    ]
    return "\n".join(out)


def render(argument: str | None = None) -> str:
    """The study config's reference (``<!-- reference: config -->``): the packaged
    configs, every key by section, and the packaged default study; ``config:world``: the
    world config's keys."""
    if argument == "world":
        return render_world()
    if argument is not None:
        raise ValueError(f"reference config: unknown argument {argument!r} (expected world)")
    from modelrecovery.study.spec import StudySpec

    return "\n".join(
        [
            _packaged(),
            render_model(StudySpec),
            _example("default", "Example: the default study", "example-default"),
        ]
    )
