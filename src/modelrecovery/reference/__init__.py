"""Reference pages generated from the code (the docs site's `<!-- reference: NAME -->`).

NAME is ``<part>`` or ``<part>:<argument>``; each part is a module of this package with a
``render(argument: str | None) -> str`` returning markdown:

- ``cli`` (:mod:`.cli`): the command line, from the parser;
- ``config`` (:mod:`.config`): the study config, every key from the schema;
- ``tables`` (:mod:`.tables`): the results tables' columns;
- ``tracking`` (:mod:`.tracking`): MLflow run names, tags, parameters and metrics.
"""

from __future__ import annotations

import importlib

PARTS = ("cli", "config", "tables", "tracking")


def render(name: str) -> str:
    """The markdown for a reference marker ``part[:argument]``; ValueError if unknown."""
    part, _, argument = name.partition(":")
    if part not in PARTS:
        raise ValueError(f"reference {name!r}: unknown part {part!r} (expected one of {PARTS})")
    module = importlib.import_module(f"{__name__}.{part}")
    return module.render(argument or None)
