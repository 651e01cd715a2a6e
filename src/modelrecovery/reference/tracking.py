"""MLflow's names as markdown, from :mod:`modelrecovery.study.tracking_names`.

``tracking`` renders the whole reference: the kinds of run, the tags most of them carry,
then per kind its own tags, parameters, metrics and artifacts. ``tracking:kinds`` renders
the table of kinds alone, ``tracking:shared`` the shared tags, ``tracking:<stage>`` one
kind (e.g. ``tracking:recover``).
"""

from __future__ import annotations

from modelrecovery.study.tracking_names import KINDS, SHARED_TAGS, Entry, RunKind

HEADINGS = {"tags": "Tags", "params": "Parameters", "metrics": "Metrics", "artifacts": "Artifacts"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _entries(entries: tuple[Entry, ...] | list[Entry], what: str) -> list[str]:
    """A table of entries: name, meaning, and when it is logged."""
    lines = [f"| {what} | meaning | logged |", "|---|---|---|"]
    lines += [
        f"| `{e.name}` | {_cell(e.meaning)} | {_cell(e.when) if e.when else 'always'} |"
        for e in entries
    ]
    return lines


def render_kinds() -> str:
    """One row per kind: its ``stage`` tag, run name, parents and what it is."""
    lines = ["| `stage` | run name | parent | what it is |", "|---|---|---|---|"]
    lines += [
        f"| [`{k.stage}`](#{_anchor(k)}) | `{k.name}` | {_cell(k.parents)} | {_cell(k.what)} |"
        for k in KINDS.values()
    ]
    return "\n".join(lines) + "\n"


def render_shared() -> str:
    """The tags most kinds carry, and which kinds carry each."""
    lines = ["| tag | meaning | logged | on |", "|---|---|---|---|"]
    for entry in SHARED_TAGS:
        on = [k.stage for k in KINDS.values() if entry in k.tags]
        missing = [k.stage for k in KINDS.values() if entry not in k.tags]
        where = (
            "every run"
            if not missing
            else (
                f"all but {', '.join(f'`{s}`' for s in missing)}"
                if len(missing) < len(on)
                else ", ".join(f"`{s}`" for s in on)
            )
        )
        when = _cell(entry.when) if entry.when else "always"
        lines.append(f"| `{entry.name}` | {_cell(entry.meaning)} | {when} | {where} |")
    return "\n".join(lines) + "\n"


def _anchor(kind: RunKind) -> str:
    return f"run-{kind.stage.replace('_', '-')}"


def render_kind(kind: RunKind, level: int = 3) -> str:
    """One kind: its name, what it is, then its own tags, parameters, metrics, artifacts."""
    hashes = "#" * level
    lines = [
        f"{hashes} `{kind.stage}` runs {{#{_anchor(kind)}}}",
        "",
        f"Run name `{kind.name}`; parent: {kind.parents}.",
        f"{kind.what[0].upper()}{kind.what[1:]}.",
        "",
    ]
    own_tags = [e for e in kind.tags if e not in SHARED_TAGS]
    parts = {
        "tags": own_tags,
        "params": list(kind.params),
        "metrics": list(kind.metrics),
        "artifacts": list(kind.artifacts),
    }
    for part, entries in parts.items():
        if not entries:
            continue
        label = HEADINGS[part]
        if part == "tags":
            label = "Tags (besides the shared ones)"
        lines += [f"**{label}**", ""]
        lines += _entries(entries, part.rstrip("s") if part != "params" else "parameter")
        lines.append("")
    return "\n".join(lines)


def render(argument: str | None) -> str:
    """``tracking``: everything; ``tracking:kinds``, ``tracking:shared`` or
    ``tracking:<stage>``: one part."""
    if argument == "kinds":
        return render_kinds()
    if argument == "shared":
        return render_shared()
    if argument is not None:
        if argument not in KINDS:
            known = ["kinds", "shared", *KINDS]
            raise ValueError(f"reference tracking:{argument}: unknown (one of {known})")
        return render_kind(KINDS[argument])
    parts = [
        "### Kinds of run",
        "",
        render_kinds(),
        "### Tags most runs carry",
        "",
        "Every run also carries `stage` (its kind, the first column above).",
        "",
        render_shared(),
    ]
    parts += [render_kind(kind) for kind in KINDS.values()]
    return "\n".join(parts)
