"""The command line's subcommands as real code: every handler is a function that exists
(its stage function too), building the parser imports no torch, and every subcommand is
run to completion by at least one test (:data:`RUN_BY` names it; the commands that no
other test runs are run here on tiny data, with their own tracking stores)."""

from __future__ import annotations

import ast
import http.server
import importlib
import inspect
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import planted_triplets, repeated_triplets, write_things2023
from modelrecovery.cli import commands, main, subcommands

TESTS = Path(__file__).resolve().parent

#: subcommand -> a test that runs it to completion (exit 0): ``file::test``
RUN_BY = {
    "noise-ceiling": "test_cli.py::test_noise_ceiling_matches_library_on_written_csv",
    "evaluate": "test_cli.py::test_evaluate_prints_zero_shot_scores",
    "data things": "test_cli_commands.py::test_data_things_from_a_local_mirror",
    "config list": "test_packaging.py::test_config_list_and_show",
    "config show": "test_packaging.py::test_config_list_and_show",
    "world": "test_world.py::test_world_command",
    "extract": "test_world.py::test_extract_command",
    "fit": "test_cli_commands.py::test_fit_then_calibrate_commands",
    "tune": "test_cli_commands.py::test_tune_command",
    "dashboard": "test_dashboard.py::test_dashboard_serves_the_tuning_study",
    "stack": "test_cli_commands.py::test_stack_status_and_env_with_the_stack_down",
    "calibrate": "test_cli_commands.py::test_fit_then_calibrate_commands",
    "init": "test_own_data.py::test_init_writes_a_commented_config_that_loads",
    "generators": "test_cli_commands.py::test_files_study_commands",
    "recover": "test_cli_commands.py::test_files_study_commands",
    "plan": "test_plan.py::test_plan_command_records_a_plan_run_and_reuses_jobs_both_ways",
    "analyze": "test_cli_commands.py::test_files_study_commands",
    "simulate": "test_cli_commands.py::test_files_study_commands",
    "check": "test_check.py::test_check_command_prints_the_flags_and_tracks_nothing",
}


# --- the handlers ---


def test_every_subcommand_has_a_real_handler():
    """Each subcommand's handler is a function of :mod:`modelrecovery.cli.commands`, and
    every name it imports exists (a handler naming a missing stage function fails here,
    not when a user runs the command)."""
    found = subcommands()
    assert "data things" in found and "stack" in found
    for name, parser in found.items():
        handler = parser.get_default("handler")
        assert callable(handler), f"{name}: no handler"
        assert handler.__module__ == "modelrecovery.cli.commands", name
        assert getattr(commands, handler.__name__) is handler, name
        assert parser.get_default("stores") is not None, name
        for node in ast.walk(ast.parse(inspect.getsource(handler))):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    found_name = getattr(module, alias.name, None)
                    if found_name is None:  # a submodule
                        found_name = importlib.import_module(f"{node.module}.{alias.name}")
                    assert callable(found_name) or inspect.ismodule(found_name), (
                        f"{name}: {node.module}.{alias.name} is not a function"
                    )


def test_no_handler_is_named_by_a_string():
    """No ``"module:function"`` strings resolved at run time: plain imports only."""
    for path in (TESTS.parent / "src" / "modelrecovery" / "cli").glob("*.py"):
        text = path.read_text()
        assert "importlib" not in text and "__import__" not in text, path
        assert not re.search(r"[\"']modelrecovery\.[\w.]+:\w+[\"']", text), path


def test_building_the_parser_imports_no_heavy_library():
    probe = (
        "import sys\n"
        "import modelrecovery.cli\n"
        "modelrecovery.cli.build_parser()\n"
        "heavy = ('torch', 'mlflow', 'lightning', 'optuna', 'numpy', 'pandas')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_choices_and_defaults_come_from_the_study_vocabulary():
    from modelrecovery.study import spec

    found = subcommands()

    def option(command: str, dest: str):
        (action,) = [a for a in found[command]._actions if a.dest == dest]
        return action

    expected = {
        "family": spec.FAMILIES,
        "regulariser": spec.REGULARISERS,
        "dtype": spec.DTYPES,
        "stopping": spec.STOPPING_RULES,
        "reduction": spec.REDUCTIONS,
        "format": spec.TRIPLET_FORMATS,
    }
    for dest, names in expected.items():
        assert tuple(option("fit", dest).choices) == names, dest
    assert tuple(option("tune", "method").choices) == spec.TUNE_METHODS
    assert tuple(option("tune", "fold_kind").choices) == spec.FOLD_KINDS
    assert tuple(option("recover", "executor").choices) == spec.EXECUTORS
    probe, tune = spec.ProbeSpec.model_fields, spec.TuneSpec.model_fields
    for dest in ("regulariser", "dtype", "stopping", "reduction", "device"):
        assert option("tune", dest).default == probe[dest].default, dest
    assert option("tune", "folds").default == tune["n_folds"].default
    assert option("tune", "trials").default == tune["n_trials"].default
    assert option("tune", "method").default == tune["method"].default
    assert option("tune", "fold_kind").default == tune["fold_kind"].default
    # every default is one of its choices (argparse does not check defaults)
    for name, parser in found.items():
        for action in parser._actions:
            if action.choices and action.default is not None and not action.required:
                assert action.default in action.choices, (name, action.dest)


def test_every_subcommand_is_run_by_a_test():
    """:data:`RUN_BY` lists every subcommand of the parser, and each test it names exists."""
    assert sorted(RUN_BY) == sorted(subcommands())
    for command, where in RUN_BY.items():
        file, test = where.split("::")
        text = (TESTS / file).read_text()
        assert f"def {test}(" in text, f"{command}: {where} not found"


# --- runs of the commands no other test runs ---


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A working folder with its own MLflow and Optuna stores (nothing in the repository)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    monkeypatch.setenv("MODELRECOVERY_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.end_run()


N_CONCEPTS = 24


@pytest.fixture
def files(home) -> Path:
    """Two feature files and a THINGS 2023 style triplet file (training + repeated set)."""
    rng = np.random.default_rng(0)
    human = np.abs(rng.normal(size=(N_CONCEPTS, 4)))
    features = home / "features"
    features.mkdir()
    for m, dim in enumerate((5, 7)):
        x = np.tanh(human @ rng.normal(size=(4, dim))) + 0.2 * rng.normal(size=(N_CONCEPTS, dim))
        np.save(features / f"m{m}.npy", x.astype(np.float32))
    write_things2023(
        home / "human.tsv",
        planted_triplets(human, 400, seed=1, temperature=0.3),
        repeated_triplets(human, 20, 5, seed=2, temperature=0.3),
    )
    return home


def run_json(capsys, argv: list[str]) -> dict:
    code = main(["--json", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    # recover prints its recovery table before the JSON result
    lines = out.out.splitlines()
    return json.loads("\n".join(lines[lines.index("{") :]))


def data_args(files: Path) -> list[str]:
    return [
        "--features",
        str(files / "features" / "m0.npy"),
        "--triplets",
        str(files / "human.tsv"),
        "--n-concepts",
        str(N_CONCEPTS),
        "--experiment",
        "cli-commands",
    ]


def test_stack_status_and_env_with_the_stack_down(tmp_path, monkeypatch, capsys):
    """``stack status`` with no stack: every service down, exit 0; ``stack env``: the
    variables to source."""
    monkeypatch.setenv("MODELRECOVERY_STACK_DIR", str(tmp_path / "stack"))
    assert main(["stack", "status"]) == 0
    out = capsys.readouterr().out
    for service in ("postgres", "s3", "mlflow", "dashboard"):
        assert any(line.split()[:2] == [service, "down"] for line in out.splitlines()), out
    report = run_json(capsys, ["stack", "status"])
    assert set(report) == {"postgres", "s3", "mlflow", "dashboard"}
    assert not any(entry["healthy"] or entry["pid"] for entry in report.values())
    assert main(["stack", "env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "export MLFLOW_TRACKING_URI",
        "export OPTUNA_STORAGE",
        "export PGPASSFILE",
    ]
    assert str(tmp_path / "stack" / "pgpass") in lines[-1]
    assert not (tmp_path / "stack").exists()  # status and env start nothing


def test_data_things_from_a_local_mirror(tmp_path, monkeypatch, capsys):
    """``data things --base-url`` against a local HTTP mirror of two small files (the
    file list replaced: the real one is fetched in test_data_fetch.py when the shared
    THINGS copies are there)."""
    import hashlib

    from modelrecovery.data import fetch

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    contents = {"unique_id.txt": b"aardvark\nabacus\n", "sortindex.txt": b"0\n1\n"}
    for name, data in contents.items():
        (mirror / name).write_bytes(data)
    listed = tuple(
        fetch.RemoteFile(name, None, hashlib.sha256(data).hexdigest(), len(data))
        for name, data in contents.items()
    )
    monkeypatch.setattr(fetch, "THINGS_FILES", listed)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(mirror), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        argv = ["data", "things", "--dest", str(tmp_path / "things"), "--base-url", url]
        result = run_json(capsys, [*argv, "--skip-large", "--no-progress"])
        again = run_json(capsys, [*argv, "--skip-large", "--no-progress"])
    finally:
        server.shutdown()
        server.server_close()
    assert result == {
        "dest": str(tmp_path / "things"),
        "unique_id.txt": "downloaded",
        "sortindex.txt": "downloaded",
    }
    assert set(again.values()) == {str(tmp_path / "things"), "present"}
    for name, data in contents.items():
        assert (tmp_path / "things" / name).read_bytes() == data


def test_tune_command(files, capsys):
    result = run_json(
        capsys,
        ["tune", *data_args(files), "--family", "diagonal", "--lams", "0.1", "10", "--folds", "2"],
    )
    assert result["best_lam"] in (0.1, 10.0)
    assert result["run_id"] and 0.0 <= result["refit_test_accuracy"] <= 1.0


def test_fit_then_calibrate_commands(files, capsys):
    fit = run_json(capsys, ["fit", *data_args(files), "--family", "diagonal", "--lam", "1"])
    calibrated = run_json(
        capsys,
        [
            "calibrate",
            "--run-id",
            fit["run_id"],
            "--triplets",
            str(files / "human.tsv"),
            "--experiment",
            "cli-commands",
        ],
    )
    assert calibrated["temperature"] > 0


@pytest.mark.slow
def test_files_study_commands(files, capsys):
    """A files study of two feature files: generators, recover (which reuses them),
    analyze, simulate."""
    config = {
        "study": "cli-study",
        "data": {
            "kind": "files",
            "triplets": str(files / "human.tsv"),
            "n_concepts": N_CONCEPTS,
            "features_dir": str(files / "features"),
        },
        "models": {"m0": "m0.npy", "m1": "m1.npy"},
        "probe": {"workers": 1},
        "tune": {"lams": [1.0], "n_folds": 2},
        "grid": {
            "sizes": [30],
            "seeds": [0],
            "levels": [{"family": "zero_shot"}, {"family": "diagonal"}],
            "lams": [1.0],
            "n_folds": 2,
        },
        "executor": {"kind": "inprocess"},
        "store": str(files / "store"),
        "report": False,
        "include_uninformative": True,  # its planted generators are near chance
    }
    path = files / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    study = ["--config", str(path)]
    generators = run_json(capsys, ["generators", *study, "--no-progress"])
    assert set(generators) == {
        f"{m}/{lv}" for m in ("m0", "m1") for lv in ("zero_shot", "diagonal")
    }
    summary = run_json(capsys, ["recover", *study, "--no-progress"])
    assert summary["jobs"] == summary["jobs_run_now"] == 2 * 2
    report = run_json(capsys, ["analyze", "--experiment", "cli-study", "--out", "report"])
    assert report["run_id"] and (files / "report").is_dir()
    simulated = run_json(
        capsys,
        ["simulate", *study, "--generator", "m1", "--n-train", "20", "--out", "sim"],
    )
    assert simulated and (files / "sim" / "simulation.json").is_file()


def test_mlproject_is_generated_from_the_parser() -> None:
    """MLproject's entry points and defaults derive from the command line (and so from
    the spec): the committed file is what the generator writes, and every command it
    runs parses with its defaults."""
    import shlex

    import yaml

    from modelrecovery.cli import build_parser
    from modelrecovery.cli.mlproject import render

    root = Path(__file__).resolve().parents[1]
    text = (root / "MLproject").read_text()
    assert text == render(), "MLproject is stale: run `make mlproject`"
    project = yaml.safe_load(text)
    parser = build_parser()
    for name, entry in project["entry_points"].items():
        values = {
            key: str(p["default"]) if isinstance(p, dict) else "1"
            for key, p in entry["parameters"].items()
        }
        args = parser.parse_args(shlex.split(entry["command"].format(**values))[1:])
        for key, p in entry["parameters"].items():
            dest = "set" if key == "overrides" else key
            if isinstance(p, dict) and p["default"] not in ("", None):
                assert str(getattr(args, dest)) == p["default"], (name, key)
