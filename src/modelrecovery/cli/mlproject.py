"""``MLproject``, generated from the command line's parser (whose choices and defaults come
from the study's vocabulary, :mod:`modelrecovery.study.spec`): each entry point runs one
``modelrecovery`` command, and each parameter's default is that option's default, so
the two never drift. ``python -m modelrecovery.cli.mlproject > MLproject`` writes it
(``make mlproject``); a test checks the committed file equals this output.

Options the command line requires but an entry point should not (``--n-concepts`` of
THINGS, ``simulate``'s size and folder) get the entry point's own defaults, listed in
:data:`ENTRY_DEFAULTS`; ``recover``'s executor defaults to the default study's.
"""

from __future__ import annotations

import argparse

#: entry point -> (command, parameters in order); a parameter is the option's dest
ENTRY_POINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "main": ("recover", ("config", "set")),
    "recover": ("recover", ("config", "executor", "set")),
    "plan": ("plan", ("config", "target", "max_ratio", "set")),
    "fit": (
        "fit",
        (
            "features",
            "triplets",
            "lam",
            "family",
            "regulariser",
            "n_concepts",
            "device",
            "experiment",
        ),
    ),
    "tune": (
        "tune",
        (
            "features",
            "triplets",
            "family",
            "regulariser",
            "method",
            "folds",
            "fold_kind",
            "n_concepts",
            "device",
            "experiment",
        ),
    ),
    "calibrate": ("calibrate", ("run_id", "triplets", "device", "experiment")),
    "generators": ("generators", ("config", "set")),
    "noise_ceiling": ("noise-ceiling", ("triplets", "format")),
    "analyze": ("analyze", ("experiment",)),
    "simulate": ("simulate", ("config", "generator", "n_train", "seed", "out")),
    "world": ("world", ("set",)),
    "extract": ("extract", ("images", "out")),
    "extract_models": ("extract", ("images", "models", "out")),
}

#: defaults of an entry point where the command line has none (or another one)
ENTRY_DEFAULTS: dict[tuple[str, str], str] = {
    ("fit", "n_concepts"): "1854",  # THINGS
    ("tune", "n_concepts"): "1854",
    ("simulate", "n_train"): "1600",
    ("simulate", "out"): "data/simulated",
    ("extract", "out"): "data/features",
    ("extract_models", "out"): "data/features",
}

#: the MLflow parameter name of an option (``--set`` is the ``overrides`` parameter)
NAMES = {"set": "overrides"}
#: fixed flags of an entry point's command
FLAGS = {"extract": "--default-set"}
PATHS = {"features", "triplets"}

HEADER = """\
# Generated from the command line by `python -m modelrecovery.cli.mlproject > MLproject`
# (`make mlproject`): every default is the option's default. Do not edit by hand.
# Every stage is an entry point; each logs parameters, metrics and artifacts to MLflow.
# Run with the project's environment active:  mlflow run . -e <entry> --env-manager local
# (or let MLflow build conda.yaml's environment by leaving out --env-manager local).
# mlflow run's own run goes to MLflow's default store (./mlflow.db) unless
# MLFLOW_TRACKING_URI is set; to have it in the tracking home with the study, launch with
#   python -m modelrecovery.cli.mlflow_run -e <entry> [-P name=value ...]
name: modelrecovery
conda_env: conda.yaml

entry_points:
"""


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions}


def _default(entry: str, dest: str, action: argparse.Action) -> str | None:
    if (entry, dest) in ENTRY_DEFAULTS:
        return ENTRY_DEFAULTS[(entry, dest)]
    if dest == "set":
        return ""
    if dest == "executor":
        from modelrecovery.study.spec import load_spec

        return load_spec("default").executor.kind
    if action.required or (action.default is None and not action.option_strings):
        return None
    if action.default is None:
        return None
    return str(action.default)


def render() -> str:
    """The text of ``MLproject``."""
    from modelrecovery.cli.parser import build_parser, subcommands

    commands = subcommands(build_parser())
    out = [HEADER]
    for entry, (command, params) in ENTRY_POINTS.items():
        actions = _actions(commands[command])
        out.append(f"  {entry}:\n    parameters:\n")
        words = [f"modelrecovery {command}"] + ([FLAGS[entry]] if entry in FLAGS else [])
        for dest in params:
            action = actions[dest]
            name = NAMES.get(dest, dest)
            kind = "path" if dest in PATHS else "float" if dest == "lam" else "string"
            default = _default(entry, dest, action)
            if default is None:
                out.append(f"      {name}: {kind}\n")
            else:
                out.append(f'      {name}: {{type: {kind}, default: "{default}"}}\n')
            if not action.option_strings:
                words.append(f"{{{name}}}")
            else:
                flag = max(action.option_strings, key=len)
                words.append(f"{flag} {{{name}}}")
        out.append(f'    command: "{" ".join(words)}"\n\n')
    return "".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
