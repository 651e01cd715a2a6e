"""MkDocs hook: a line ``<!-- reference: NAME -->`` becomes the page part that
:func:`modelrecovery.reference.render` generates from the code (NAME e.g. ``cli``,
``config``, ``tables:jobs``, ``tracking``). An unknown NAME fails the build."""

from __future__ import annotations

import re

from modelrecovery.reference import render

MARKER = re.compile(r"^<!-- reference: (?P<name>[\w:.\-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' API)
    """Replace every reference marker of the page with its generated markdown."""
    return MARKER.sub(lambda m: render(m.group("name")), markdown)
