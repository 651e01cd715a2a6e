"""The results tables' columns as markdown, from :mod:`modelrecovery.recovery.columns`.

``tables:<name>`` renders one table (``jobs``, ``scores``, ``fits``, ``models``): its
columns that are always present, then those present only under a condition; ``tables``
alone renders all four, each under a heading.
"""

from __future__ import annotations

from modelrecovery.recovery.columns import TABLES, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(table: Table) -> str:
    """One table's columns: the always-present ones, then the conditional ones."""
    lines = [f"One row per {table.row.removeprefix('one row per ')}.", ""]
    lines += ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {_cell(c.meaning)} |" for c in table.columns if c.always]
    optional = [c for c in table.columns if not c.always]
    if optional:
        lines += ["", "Present only under a condition (a missing column means the default):", ""]
        lines += ["| column | type | present when | meaning |", "|---|---|---|---|"]
        lines += [
            f"| `{c.name}` | {c.type} | {_cell(c.when)} | {_cell(c.meaning)} |" for c in optional
        ]
    return "\n".join(lines) + "\n"


def render(argument: str | None) -> str:
    """``tables:<name>``: one table; ``tables``: all four under headings."""
    if argument is None:
        return "\n".join(f"## `{name}`\n\n{render_table(table)}" for name, table in TABLES.items())
    if argument not in TABLES:
        raise ValueError(f"reference tables:{argument}: no such table (one of {list(TABLES)})")
    return render_table(TABLES[argument])
