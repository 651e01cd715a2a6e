"""``python -m modelrecovery.cli.mlflow_run -e ENTRY [-P k=v ...] [mlflow run options]``:
``mlflow run`` with its own run in the tracking home.

A bare ``mlflow run . -e recover`` creates its launcher run before the entry point's
command starts, in MLflow's default store (``./mlflow.db``, experiment ``Default``) when
``MLFLOW_TRACKING_URI`` is unset; the command then records the study in the tracking home
and only leaves a note on that run. No entry point can change where MLflow puts its own
run, so this launcher does it first: it points ``MLFLOW_TRACKING_URI`` at the tracking
home (:func:`modelrecovery.tracking.tracking_uri`), creates the entry point's experiment
there with the project's artifact location (the study's name for ``main`` / ``recover`` /
``generators``, ``-P experiment=`` or ``default`` for the others; ``--experiment-name``
wins), and runs ``mlflow run <project> -e ENTRY --experiment-name NAME --env-manager
local ...``: one store holds the launcher's run and the study, which continues it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

#: entry points whose experiment is the study's (from the config)
STUDY_ENTRIES = ("main", "recover", "generators")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's options; everything else is passed on to ``mlflow run``."""
    parser = argparse.ArgumentParser(
        prog="python -m modelrecovery.cli.mlflow_run",
        description="mlflow run, with its own run in the tracking home",
    )
    parser.add_argument("project", nargs="?", default=".", help="the project (default: .)")
    parser.add_argument("-e", "--entry-point", default="main")
    parser.add_argument("-P", "--param-list", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--experiment-name", default=None)
    parser.add_argument("--env-manager", default="local")
    return parser.parse_known_args(argv)


def experiment_of(entry: str, params: dict[str, str]) -> str:
    """The experiment an entry point records into (see the module's docstring)."""
    if entry in STUDY_ENTRIES:
        from modelrecovery.config import split_overrides
        from modelrecovery.study.spec import load_spec

        overrides = split_overrides([params["overrides"]]) if params.get("overrides") else []
        return load_spec(params.get("config", "default"), overrides).study
    return params.get("experiment") or "default"


def command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow run`` command line and its environment (the experiment created)."""
    from modelrecovery import tracking

    args, rest = parse(argv)
    params = {}
    for item in args.param_list:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"-P {item!r}: expected NAME=VALUE")
        params[name] = value
    name = args.experiment_name or experiment_of(args.entry_point, params)
    uri = tracking.tracking_uri()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    tracking.mlflow.set_tracking_uri(uri)
    tracking.ensure_experiment(name)
    words = ["mlflow", "run", args.project, "-e", args.entry_point]
    words += ["--experiment-name", name, "--env-manager", args.env_manager]
    for item in args.param_list:
        words += ["-P", item]
    return words + rest, env


def main(argv: list[str] | None = None) -> int:
    """Run ``mlflow run`` into the tracking home; its exit status."""
    try:
        words, env = command(sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"mlflow_run: error: {err}", file=sys.stderr)
        return 2
    # this environment's mlflow, and its `modelrecovery` for the entry point's command
    # (`--env-manager local` runs it through bash's PATH; the venv need not be activated)
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "mlflow").exists():
        words[0] = str(bin_dir / "mlflow")
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    print(f"modelrecovery: {' '.join(words)}  (MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']})",
          file=sys.stderr)  # fmt: skip
    return subprocess.run(words, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
