"""The command line's reference page, generated from the real parser
(:func:`modelrecovery.cli.parser.build_parser`).

Nothing here is written about a particular command: every heading, usage line, argument,
choice, default and help text is read from the parser, so an option added there appears
on the page by itself. Commands come in the parser's order; a command with subcommands
(``data``, ``config``) gets its own heading and its subcommands one level below it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass

#: the width the usage lines are wrapped at (fixed: the page must not depend on the
#: terminal that builds it)
USAGE_WIDTH = 70
NONE = "—"


@dataclass(frozen=True)
class Command:
    """One node of the command tree: its words after the program's name (``data things``),
    its parser, its one-line help, and its depth (1 for a top-level command)."""

    name: str
    parser: argparse.ArgumentParser
    help: str
    depth: int

    @property
    def anchor(self) -> str:
        """A stable HTML id: the words joined by ``-`` (``data-things``)."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    @property
    def children(self) -> list[Command]:
        return list(_children(self.parser, self.name, self.depth + 1))


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _children(parser: argparse.ArgumentParser, prefix: str, depth: int) -> Iterator[Command]:
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    for name, child in sub.choices.items():
        yield Command(f"{prefix} {name}".strip(), child, helps.get(name, ""), depth)


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command and subcommand, depth first, in the parser's order."""
    out: list[Command] = []

    def walk(node: Command) -> None:
        out.append(node)
        for child in node.children:
            walk(child)

    for top in _children(parser, "", 1):
        walk(top)
    return out


# --- text ------------------------------------------------------------------------------------

_CODE = re.compile(r"(`[^`]*`)")
_SPECIAL = re.compile(r"([\\|*_\[\]$])")


def escape(text: str) -> str:
    """``text`` as markdown that shows it as it is, inside a table cell: ``|``, ``<``,
    ``>``, ``*``, ``_``, brackets and ``$`` escaped; spans in backticks kept as code (a
    ``|`` inside one is still escaped, as tables need)."""
    parts = []
    for piece in _CODE.split(text):
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            parts.append(piece.replace("|", r"\|"))
        else:
            piece = _SPECIAL.sub(r"\\\1", piece)
            parts.append(piece.replace("<", "&lt;").replace(">", "&gt;"))
    return "".join(parts)


_OPTION = re.compile(r"(?<![\w`-])(--[a-z][a-z0-9-]*)")


def prose(text: str) -> str:
    """A help text as markdown: :func:`escape`, with option names (``--k``) as code."""
    return escape(_OPTION.sub(r"`\1`", text))


def _code(value: object) -> str:
    return "`" + str(value).replace("`", "'") + "`"


def usage(parser: argparse.ArgumentParser) -> str:
    """A parser's usage line(s), wrapped at :data:`USAGE_WIDTH` columns."""
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


_EXPECTED = re.compile(r"(?:expected|must be) (?P<what>.+?), got ")


def value_type(action: argparse.Action) -> str:
    """What an argument's value is, in words: its choices, else what its type expects
    (asked of the type itself: the parser's types name it in their error), else its
    metavar; with how many values it takes."""
    if action.nargs == 0:
        return "flag"
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        what = "one of " + ", ".join(_code(choice) for choice in action.choices)
    else:
        what = _type_text(action)
    if action.nargs == "*":
        what += " (any number of values)"
    elif action.nargs == "+":
        what += " (one or more values)"
    elif isinstance(action.nargs, int) and action.nargs > 1:
        what += f" ({action.nargs} values)"
    return what


def _type_text(action: argparse.Action) -> str:
    kind = action.type
    if kind is int:
        return "integer"
    if kind is float:
        return "number"
    if callable(kind) and kind is not str:
        try:
            kind("?")
        except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
            found = _EXPECTED.search(str(err))
            if found:
                return escape(found.group("what"))
    if action.metavar is not None and not isinstance(action.metavar, tuple):
        return _code(action.metavar)
    return "text"


def default_text(action: argparse.Action) -> str:
    """An argument's default: ``required``, :data:`NONE` (no default, or a flag's
    ``false``), or the value in code."""
    if action.required:
        return "required"
    default = action.default
    if default is None or default is argparse.SUPPRESS or action.nargs == 0:
        return NONE
    if isinstance(default, (list, tuple)):
        return " ".join(_code(item) for item in default) if default else NONE
    if default == "":
        return '`""`'
    return _code(f"{default:g}" if isinstance(default, float) else default)


def argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(_code(option) for option in action.option_strings)
    return _code(action.metavar or action.dest)


def arguments_table(parser: argparse.ArgumentParser, *, with_help: bool = False) -> str:
    """A table of a parser's arguments (positional first, then options, each in the
    parser's order); ``-h`` only when ``with_help``."""
    rows = []
    actions = [
        action
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help is not argparse.SUPPRESS
        and (with_help or not isinstance(action, argparse._HelpAction))
    ]
    actions.sort(key=lambda action: bool(action.option_strings))  # stable: order kept
    for action in actions:
        rows.append(
            f"| {argument_name(action)} | {value_type(action)} | {default_text(action)} | "
            f"{prose(action.help or '')} |"
        )
    if not rows:
        return ""
    head = "| argument | value | default | what it is |\n|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def _groups(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for group in parser._mutually_exclusive_groups:
        names = ", ".join(_code(max(a.option_strings, key=len)) for a in group._group_actions)
        what = "exactly one" if group.required else "at most one"
        lines.append(f"Give {what} of {names}.")
    return lines


def _stores(parser: argparse.ArgumentParser) -> str | None:
    stores = parser.get_default("stores")
    if not stores:
        return None
    names = [name for name, used in zip(("MLflow", "Optuna"), stores, strict=False) if used]
    if not names:
        return None
    return (
        "Tracking stores checked before it starts: " + " and ".join(names) + " "
        "(see [tracking stores](#tracking-stores))."
    )


def _command_section(command: Command) -> str:
    level = "#" * (command.depth + 2)
    out = [f"{level} `modelrecovery {command.name}` {{ #{command.anchor} }}\n"]
    description = command.parser.description or command.help
    if description:
        out.append(prose(description) + "\n")
    out.append(f"```text\n{usage(command.parser)}\n```\n")
    children = command.children
    if children:
        out.append(_commands_table(children))
    table = arguments_table(command.parser)
    if table:
        out.append(table)
    extras = _groups(command.parser)
    stores = _stores(command.parser)
    if stores:
        extras.append(stores)
    if extras:
        out.append(" ".join(extras) + "\n")
    return "\n".join(out)


def _commands_table(children: list[Command]) -> str:
    rows = [f"| [`{child.name}`](#{child.anchor}) | {prose(child.help)} |" for child in children]
    return "| command | what it does |\n|---|---|\n" + "\n".join(rows) + "\n"


def render_parser(parser: argparse.ArgumentParser) -> str:
    """The reference of a whole command line: its global options, a table of its
    commands, and one section per command and subcommand."""
    top = list(_children(parser, "", 1))
    out = [
        "## Global options { #global-options }\n",
        escape(parser.description or "") + "\n" if parser.description else "",
        f"```text\n{usage(parser)}\n```\n",
        "Global options go before the command (`modelrecovery --json fit ...`); every "
        "command also takes `-h` / `--help`.\n",
        arguments_table(parser, with_help=True),
        "## Commands { #commands }\n",
        _commands_table(top),
    ]
    out += [_command_section(command) for command in commands(parser)]
    return "\n".join(part for part in out if part).rstrip("\n") + "\n"


def render(argument: str | None = None) -> str:
    """The command-line reference (``<!-- reference: cli -->``), from the real parser."""
    if argument is not None:
        raise ValueError(f"reference cli takes no argument, got {argument!r}")
    from modelrecovery.cli.parser import build_parser

    return render_parser(build_parser())
