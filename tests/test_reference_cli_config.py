"""The command-line and study-config reference pages are generated from the code: every
command and option of the real parser, every key of the study schema with its default,
and a change in the parser shows on the page by itself."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from modelrecovery.cli.parser import build_parser
from modelrecovery.reference import cli as cli_reference
from modelrecovery.reference import config as config_reference
from modelrecovery.reference import render
from modelrecovery.study.spec import StudySpec

ROOT = Path(__file__).resolve().parents[1]


# --- helpers: an independent walk of the parser and the schema ---------------------------------


def all_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command by its words after the program's name, groups (``data``) included."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(node: argparse.ArgumentParser, prefix: str) -> None:
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    words = f"{prefix} {name}".strip()
                    found[words] = child
                    walk(child, words)

    walk(parser, "")
    return found


def section_of(markdown: str, command: str) -> str:
    """The part of the CLI page under ``modelrecovery <command>``'s heading, up to the
    next command's heading."""
    heading = re.search(
        rf"^#+ `modelrecovery {re.escape(command)}` \{{ #[\w-]+ \}}$", markdown, re.M
    )
    assert heading, f"no heading for {command}"
    rest = markdown[heading.end() :]
    following = re.search(r"^#+ `modelrecovery ", rest, re.M)
    return rest[: following.start()] if following else rest


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ")]


def cells(row: str) -> list[str]:
    """A table row's cells (``\\|`` is a pipe inside a cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def leaf_fields(model: type[BaseModel], path: str = "") -> list[tuple[str, object]]:
    """(dotted path, field info) of every key that is not a section, walked through
    nested models, lists and mappings of models and unions of models."""
    out: list[tuple[str, object]] = []
    seen_paths: set[str] = set()

    def models_in(annotation: object) -> list[tuple[type[BaseModel], str]]:
        """Models inside an annotation, with the path suffix of their container."""
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [(annotation, "")]
        found = []
        for arg in typing.get_args(annotation):
            for model, suffix in models_in(arg):
                if origin in (tuple, list):
                    suffix = "[]" + suffix
                elif origin is dict:
                    suffix = ".<name>" + suffix
                found.append((model, suffix))
        return found

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if info.exclude:  # a union's tag, set by the study's shape, never written
                continue
            key = f"{prefix}.{name}" if prefix else name
            inner = models_in(info.annotation)
            if not inner:
                if key not in seen_paths:
                    seen_paths.add(key)
                    out.append((key, info))
                continue
            for sub, suffix in inner:
                walk(sub, key + suffix)

    walk(model, path)
    return out


def row_for(markdown: str, path: str) -> list[str]:
    for row in table_rows(markdown):
        first = cells(row)[0]
        if first == f"`{path}`" or first.startswith(f"[`{path}`]("):
            return cells(row)
    raise AssertionError(f"no row for {path}")


def as_plain(value: object) -> object:
    """A default as YAML data (tuples as lists, numbers as floats)."""
    if isinstance(value, (tuple, list)):
        return [as_plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def shown_value(cell: str) -> object:
    """A default cell's value read back as YAML (``1e-06`` as a number, as the schema
    reads it)."""
    assert cell.startswith("`") and cell.endswith("`"), cell
    value = yaml.safe_load(cell[1:-1])

    def number(item: object) -> object:
        if isinstance(item, str):
            try:
                return float(item)
            except ValueError:
                return item
        return as_plain(item)

    return [number(v) for v in value] if isinstance(value, list) else number(value)


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_markdown() -> str:
    return render("cli")


def test_every_command_has_its_section_and_usage(cli_markdown: str) -> None:
    commands = all_commands(build_parser())
    assert {"fit", "recover", "data", "data things", "config", "config list", "config show"} <= set(
        commands
    )
    for name, parser in commands.items():
        section = section_of(cli_markdown, name)
        assert f"usage: {parser.prog}" in section, name
        if parser.description:
            assert cli_reference.prose(parser.description) in section, name


def test_every_option_of_every_command_is_on_the_page(cli_markdown: str) -> None:
    for name, parser in all_commands(build_parser()).items():
        section = section_of(cli_markdown, name)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            for option in action.option_strings or [action.dest]:
                assert f"`{option}`" in section, f"{name}: {option}"
            row = next(
                cells(r)
                for r in table_rows(section)
                if cells(r)[0].split(", ")[0] == f"`{(action.option_strings or [action.dest])[0]}`"
            )
            if action.help:
                assert row[3] == cli_reference.prose(action.help), (name, action.dest)
            if action.choices:
                assert all(f"`{choice}`" in row[1] for choice in action.choices)
            if action.required:
                assert row[2] == "required"
            elif action.nargs != 0 and action.default not in (None, "", [], argparse.SUPPRESS):
                assert str(action.default) in row[2] or f"{action.default:g}" in row[2], row


def test_global_options_appear_once(cli_markdown: str) -> None:
    parser = build_parser()
    head = cli_markdown.split("## Commands")[0]
    for action in parser._actions:
        for option in action.option_strings:
            assert f"`{option}`" in head
    assert cli_markdown.count("| `--traceback` |") == 1


def test_tables_keep_their_columns(cli_markdown: str) -> None:
    """An escaped ``|`` stays inside its cell: every row has the header's cell count."""
    config_markdown = render("config")
    for markdown in (cli_markdown, config_markdown):
        for table in re.findall(r"(?:^\|.*\n)+", markdown, re.M):
            counts = {len(cells(row)) for row in table.splitlines()}
            assert len(counts) == 1, table


def test_a_change_in_the_parser_shows_on_the_page() -> None:
    parser = build_parser()
    fit = all_commands(parser)["fit"]
    fit.add_argument(
        "--brand-new", type=int, default=7, choices=[7, 8], help="a new option | with a pipe"
    )
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    extra = sub.add_parser("brand-new-command", help="A new command.", description="A new one.")
    extra.add_argument("thing", help="its argument")
    markdown = cli_reference.render_parser(parser)
    row = next(r for r in table_rows(section_of(markdown, "fit")) if "`--brand-new`" in r)
    assert cells(row) == ["`--brand-new`", "one of `7`, `8`", "`7`", r"a new option \| with a pipe"]
    assert "[`brand-new-command`](#brand-new-command) | A new command. |" in markdown
    assert "`thing`" in section_of(markdown, "brand-new-command")
    assert "--brand-new" not in render("cli")  # the real page is unchanged


def test_help_texts_are_escaped_for_markdown() -> None:
    assert cli_reference.prose("timm:<model> | x_y [a] --k `a|b`") == (
        r"timm:&lt;model&gt; \| x\_y \[a\] `--k` `a\|b`"
    )


# --- the study config ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_markdown() -> str:
    return render("config")


def test_every_key_of_the_schema_is_on_the_page_with_its_default(config_markdown: str) -> None:
    leaves = leaf_fields(StudySpec)
    paths = [path for path, _ in leaves]
    for expected in ("grid.sizes", "grid.levels[].k", "models.<name>.file", "probe.ceiling"):
        assert expected in paths
    for path, info in leaves:
        if path.startswith("extra_models."):
            continue  # the same entries as models.<name> (a file entry): one table
        row = row_for(config_markdown, path)
        assert row[3], f"{path} has no meaning"
        if info.is_required():
            assert row[2] == "required", path
        else:
            assert shown_value(row[2]) == as_plain(info.default), (path, row[2])
    assert "[`models.<name>`, a `file` entry](#models-name-file)" in config_markdown


def test_every_key_has_a_description_that_starts_with_what_is_expected() -> None:
    for path, info in leaf_fields(StudySpec):
        assert info.description, f"{path} has no description"
    expected, meaning = config_reference.split_description(
        StudySpec.model_fields["grid"].annotation.model_fields["n_folds"].description
    )
    assert (expected, meaning) == ("an integer >= 2", "concept-disjoint folds per job")


def test_sections_come_in_schema_order_with_stable_anchors(config_markdown: str) -> None:
    anchors = re.findall(r"^#+ .* \{ #([\w-]+) \}$", config_markdown, re.M)
    order = ["top-level", "data", "models-name-file", "models-name-world", "extra-models-name"]
    order += ["probe", "tune", "grid", "grid-levels", "executor", "example-default"]
    assert [a for a in anchors if a in order] == order


def test_types_read_as_words() -> None:
    rows = {path: row_for(render("config"), path) for path in ("grid.sizes", "probe.ceiling")}
    assert rows["grid.sizes"][1] == "non-empty list of integers ≥ 1"
    assert rows["probe.ceiling"][1] == "null or number &gt; 1/3 and &lt; 1"
    assert row_for(render("config"), "grid.triplet_selection")[1].startswith(
        "non-empty list, each one of `random`"
    )


def test_the_example_is_what_config_show_prints(
    config_markdown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelrecovery.cli.entry import main

    assert main(["config", "show", "default"]) == 0
    shown = capsys.readouterr().out
    block = config_markdown.split("## Example: the default study")[1]
    text = block.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    assert text == shown.rstrip("\n")
    yaml.safe_load(text)


def test_the_world_config_keys() -> None:
    from modelrecovery.world.config import WorldConfig

    markdown = render("config:world")
    for item in dataclasses.fields(WorldConfig):
        row = row_for(markdown, item.name)
        assert shown_value(row[2]) == as_plain(item.default)
        assert row[3], item.name
    assert "## World config { #world-config }" in markdown


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="reference cli takes no argument"):
        render("cli:x")
    with pytest.raises(ValueError, match="unknown argument 'x'"):
        render("config:x")


# --- the site -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_builds_with_both_pages(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config_html = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    for key in ("grid.sizes", "grid.levels[].k", "probe.calibration", "executor.kind"):
        assert f"<code>{key}</code>" in config_html, key
    assert 'id="world-config"' in config_html
    cli_html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert 'id="recover"' in cli_html and "<code>--config</code>" in cli_html
    assert 'id="data-things"' in cli_html


def test_options_that_set_a_spec_key_take_its_meaning_from_the_spec():
    """One vocabulary: the help of --stopping, --reduction, --folds, ... is the spec's meaning
    of the key they set, so the config reference and `--help` cannot drift apart."""
    from modelrecovery.study.spec import ProbeSpec, TuneSpec, split_description

    tune = all_commands(build_parser())["tune"]
    helps = {o: a.help for a in tune._actions for o in a.option_strings}
    expected = {
        "--stopping": (ProbeSpec, "stopping"),
        "--reduction": (ProbeSpec, "reduction"),
        "--folds": (TuneSpec, "n_folds"),
        "--fold-kind": (TuneSpec, "fold_kind"),
        "--trials": (TuneSpec, "n_trials"),
        "--seed": (TuneSpec, "seed"),
    }
    for option, (model, key) in expected.items():
        meaning = split_description(model.model_fields[key].description)[1]
        assert meaning and "(" not in meaning[:1], (option, meaning)
        assert helps[option] == meaning, option
