"""The package layering: data/ imports nothing above it; features/ never imports world/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modelrecovery"

FORBIDDEN = {
    "data": ("modelrecovery.features", "modelrecovery.world"),
    "features": ("modelrecovery.world",),
}


def package_of(path: Path) -> str:
    """Dotted package a module file belongs to (``src/modelrecovery/data/x.py`` ->
    ``modelrecovery.data``)."""
    return ".".join(path.relative_to(PACKAGE.parent).parts[:-1])


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute name) of every import in ``source``: relative ones resolved against
    ``package``, those under ``if TYPE_CHECKING:`` or inside functions included; for
    ``from m import n`` both ``m`` and ``m.n``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{module}" if module else base
            out.append((node.lineno, module))
            out.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules under {PACKAGE / layer}"
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package_of(path))
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_and_guarded_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..world import World\n"
        "def f():\n    import modelrecovery.world.build\n    from . import io\n"
    )
    modules = {m for _, m in imported_modules(source, "modelrecovery.features")}
    assert {
        "modelrecovery.world.World",
        "modelrecovery.world.build",
        "modelrecovery.features.io",
    } <= modules


SCIENCE = ("data", "features", "world", "probe", "recovery", "analysis")


@pytest.mark.parametrize("layer", SCIENCE)
def test_science_never_imports_the_stages(layer: str) -> None:
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package_of(path))
        if module.startswith("modelrecovery.stages") or module.startswith("modelrecovery.cli")
    ]
    assert not bad, "\n".join(bad)


def test_stage_modules_import_no_circle() -> None:
    stages = {p.stem: p for p in (PACKAGE / "stages").glob("*.py") if p.stem != "__init__"}
    graph = {
        name: {
            module.split(".")[2]
            for _, module in imported_modules(path.read_text(encoding="utf-8"), package_of(path))
            if module.startswith("modelrecovery.stages.") and module.split(".")[2] in stages
        }
        - {name}
        for name, path in stages.items()
    }
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        assert node not in visiting, "import circle: " + " -> ".join([*trail, node])
        if node in done:
            return
        visiting.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
