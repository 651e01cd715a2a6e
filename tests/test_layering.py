"""The package layering: data/ imports nothing above it; features/ never imports world/;
no import circle between the package's modules."""

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


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def module_level_imports(source: str, package: str, modules: set[str]) -> set[str]:
    """Modules of the package that ``source`` imports when it is executed: top-level imports
    (under ``if``/``try``/``with`` and in class bodies included), resolved like
    :func:`imported_modules`. Imports inside functions (run later, on first use) and under
    ``if TYPE_CHECKING:`` (never run) are left out. ``from m import n`` names the module
    ``m.n`` when there is one, else ``m``."""
    names: list[str] = []

    def walk(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                (_, module), *_ = imported_modules(ast.unparse(node), package)
                names.extend(
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                    for alias in node.names
                )
            walk([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    walk(ast.parse(source).body)
    return set(names) & modules


def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(sources: dict[str, str], packages: set[str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level. ``sources``: dotted name ->
    source; ``packages``: the names that are packages (``__init__``). Importing ``a.b.c`` runs
    the packages ``a`` and ``a.b`` too, except the importer's own parent packages (Python runs
    them before the importer, and a package's ``__init__`` importing its submodules is no
    circle); a parent named explicitly (``from . import name``) is kept."""
    modules = set(sources)
    graph = {}
    for name, source in sources.items():
        package = name if name in packages else name.rpartition(".")[0]
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        explicit = module_level_imports(source, package, modules)
        implied = {
            ".".join(target.split(".")[:i])
            for target in explicit
            for i in range(1, target.count(".") + 1)
        }
        graph[name] = (explicit | ((implied & modules) - parents)) - {name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``a -> b -> ... -> a``) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)

    def circle(group: set[str]) -> list[str]:
        start = min(group)
        trail, seen = [start], {start}
        while True:  # walk inside the group until a module repeats
            nxt = min(n for n in graph[trail[-1]] if n in group)
            if nxt in seen:
                return [*trail[trail.index(nxt) :], nxt]
            trail.append(nxt)
            seen.add(nxt)

    return [circle(g) for g in groups]


def test_no_import_circle_between_package_modules() -> None:
    """No two modules of ``modelrecovery`` import each other, directly or through others, at
    module level (when they are imported). Imports inside functions are excluded (they run
    on first use, after every module has loaded: the deliberate lazy imports), and so are
    imports under ``if TYPE_CHECKING:``."""
    files = package_modules()
    assert "modelrecovery.features.backbones" in files
    graph = import_graph(
        {name: path.read_text(encoding="utf-8") for name, path in files.items()},
        {name for name, path in files.items() if path.stem == "__init__"},
    )
    circles = import_circles(graph)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_circle_checker_sees_module_level_circles_only() -> None:
    sources = {
        "pkg": "from pkg.a import f\nfrom pkg.b import g\n",  # a package importing its own
        "pkg.a": "from . import b\nclass C:\n    from pkg.c import x\n",
        "pkg.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
        "def f():\n    from .a import f\n",
        "pkg.c": "try:\n    from .a import f\nexcept ImportError:\n    pass\n",
        "pkg.d": "from pkg import g\n",  # a name defined in the package's __init__
    }
    graph = import_graph(sources, {"pkg"})
    assert graph == {
        "pkg": {"pkg.a", "pkg.b"},
        "pkg.a": {"pkg.b", "pkg.c"},
        "pkg.b": set(),
        "pkg.c": {"pkg.a"},
        "pkg.d": {"pkg"},
    }
    assert import_circles(graph) == [["pkg.a", "pkg.c", "pkg.a"]]
    graph["pkg.b"].add("pkg.d")  # joins everything into one group: one circle reported
    assert import_circles(graph) == [["pkg", "pkg.a", "pkg.b", "pkg.d", "pkg"]]


@pytest.mark.parametrize("layer", SCIENCE)
def test_science_takes_only_the_vocabulary_from_the_study_core(layer: str) -> None:
    """The science packages import the study's vocabulary (``study.spec``) and nothing
    else of the study core: the pipeline, the trackers and the reuse keys sit above them."""
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package_of(path))
        if module.startswith("modelrecovery.study")
        and not module.startswith("modelrecovery.study.spec")
        and module != "modelrecovery.study"
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("layer", "above"), [("study", ("stages", "cli")), ("stages", ("cli",))])
def test_the_core_sits_below_the_edges(layer: str, above: tuple[str, ...]) -> None:
    """The study core never imports the stages or the command line; the stages never
    import the command line."""
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package_of(path))
        if any(module.startswith(f"modelrecovery.{name}") for name in above)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["data", "world", "analysis", "study", "probe", "features"])
def test_no_exported_name_is_also_a_submodule(package: str) -> None:
    """A package's names are imported on first use (lazy_exports); a name that is also a
    submodule's would be replaced by the module once anything imports that submodule
    (``from modelrecovery.data import noise_ceiling`` gave the module)."""
    import importlib
    import pkgutil

    module = importlib.import_module(f"modelrecovery.{package}")
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    clashes = sorted(set(getattr(module, "_SOURCES", {})) & submodules)
    assert clashes == []


def test_the_command_line_exports_no_submodule_name() -> None:
    """``modelrecovery.cli.main`` is the function; no submodule of the CLI is named after
    a name the package exports (the module would be unreachable by its dotted name)."""
    import importlib
    import pkgutil

    cli = importlib.import_module("modelrecovery.cli")
    submodules = {info.name for info in pkgutil.iter_modules(cli.__path__)}
    assert sorted(submodules & set(cli.__all__)) == []
