"""The command line as a new user meets it: bad inputs and faults, each driven through the
real console entry point in a subprocess. Every case exits with the expected code and one
line on stderr naming what was wrong; none prints a traceback or leaves a run behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import planted_triplets, repeated_triplets, write_things2023

HANG_GUARD_S = 60  # a case that hangs fails instead of blocking the suite


def run_cli(argv: list[str], cwd: Path, env: dict[str, str] | None = None):
    """Run ``python -m modelrecovery.cli argv`` in ``cwd``; (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", *argv],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line(stderr: str, *fragments: str) -> str:
    """stderr is one line (no traceback) holding every fragment."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with small valid inputs (features, a THINGS 2023 file) and bad ones."""
    root = tmp_path_factory.mktemp("catalogue")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    np.save(root / "x.npy", x.astype(np.float32))
    np.save(root / "x_short.npy", x[:20].astype(np.float32))
    write_things2023(
        root / "human.tsv", planted_triplets(x, 300, seed=1), repeated_triplets(x, 20, 5, seed=2)
    )
    (root / "few_ids.csv").write_text("i,j,k,odd\n0,1,9,0\n2,3,4,1\n")
    (root / "empty.tsv").write_text("")
    (root / "garbage.tsv").write_bytes(bytes(range(256)) * 4)
    (root / "header_only.csv").write_text("image1,image2,image3,choice\n")
    (root / "a_folder").mkdir()
    from PIL import Image

    for name in ("cat", "dog"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / f"{name}.png")
    (root / "images.csv").write_text("concept,image\ncat,cat.png\ndog,dog.png\n")
    (root / "bad.yaml").write_text("grid: [unclosed\n")
    return root


def local_stores(root: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{root}/optuna.db",
        "MODELRECOVERY_DATA": str(root / "data"),
    }


DATA = ["--features", "x.npy", "--triplets", "human.tsv", "--n-concepts", "30"]

# (id, argv, fragments of the one error line); every one exits 2 before any work
ARGUMENT_ERRORS = [
    ("no-command", [], ["the following arguments are required: COMMAND"]),
    ("unknown-command", ["fitt"], ["invalid choice: 'fitt'"]),
    ("fit-missing-lam", ["fit", *DATA], ["--lam"]),
    ("fit-family", ["fit", *DATA, "--lam", "1", "--family", "rect"], ["--family", "'rect'"]),
    (
        "fit-regulariser",
        ["fit", *DATA, "--lam", "1", "--regulariser", "ridge"],
        ["--regulariser", "'ridge'"],
    ),
    (
        "fit-k-zero",
        ["fit", *DATA, "--lam", "1", "--family", "rectangular", "--k", "0"],
        ["argument --k", "integer >= 1", "got 0"],
    ),
    (
        "fit-k-missing",
        ["fit", *DATA, "--lam", "1", "--family", "rectangular"],
        ["--k", "family rectangular needs --k"],
    ),
    ("fit-k-unused", ["fit", *DATA, "--lam", "1", "--k", "3"], ["--k", "only family rectangular"]),
    ("fit-lam-text", ["fit", *DATA, "--lam", "abc"], ["argument --lam", "'abc'"]),
    ("fit-lam-negative", ["fit", *DATA, "--lam", "-1"], ["argument --lam", ">= 0", "-1"]),
    ("fit-lam-nan", ["fit", *DATA, "--lam", "nan"], ["argument --lam", "finite"]),
    ("fit-lam-zero-full", ["fit", *DATA, "--lam", "0"], ["--lam", "> 0 for family full"]),
    ("fit-device", ["fit", *DATA, "--lam", "1", "--device", "gpu"], ["--device", "'gpu'"]),
    ("fit-dtype", ["fit", *DATA, "--lam", "1", "--dtype", "float16"], ["--dtype", "float16"]),
    ("fit-n-concepts", ["fit", *DATA[:4], "--n-concepts", "x", "--lam", "1"], ["--n-concepts"]),
    ("tune-folds", ["tune", *DATA, "--folds", "1"], ["argument --folds", "integer >= 2"]),
    ("tune-lams", ["tune", *DATA, "--lams", "1", "0"], ["argument --lams", "> 0", "got 0"]),
    ("tune-method", ["tune", *DATA, "--method", "random"], ["--method", "'random'"]),
    (
        "simulate-n-train-zero",
        ["simulate", "--generator", "g", "--n-train", "0", "--out", "o"],
        ["argument --n-train", "integer >= 1", "got 0"],
    ),
    (
        "simulate-n-train-negative",
        ["simulate", "--generator", "g", "--n-train", "-5", "--out", "o"],
        ["argument --n-train", "got -5"],
    ),
    (
        "simulate-n-train-text",
        ["simulate", "--generator", "g", "--n-train", "many", "--out", "o"],
        ["argument --n-train", "'many'"],
    ),
    (
        "calibrate-ceiling",
        ["calibrate", "--run-id", "r", "--triplets", "human.tsv", "--ceiling", "0.2"],
        ["argument --ceiling", "> 0.333333"],
    ),
    ("recover-executor", ["recover", "--executor", "slurm"], ["--executor", "'slurm'"]),
    (
        "extract-batch",
        ["extract", "--default-set", "--images", "i", "--out", "o", "--batch-size", "0"],
        ["--batch-size"],
    ),
    ("extract-which", ["extract", "--images", "i", "--out", "o"], ["--models", "--default-set"]),
    ("dashboard-port", ["dashboard", "--port", "http"], ["argument --port"]),
]


@pytest.mark.parametrize(
    "argv,fragments", [c[1:] for c in ARGUMENT_ERRORS], ids=[c[0] for c in ARGUMENT_ERRORS]
)
def test_argument_errors_exit_2_with_one_line_and_no_run(files, argv, fragments):
    code, out, err = run_cli(argv, files, local_stores(files))
    assert code == 2, (code, out, err)
    line = assert_one_line(err, *fragments)
    assert line.startswith("modelrecovery"), line
    assert not (files / "mlflow.db").exists()  # no store touched, no run left behind


def test_help_and_argument_errors_import_no_heavy_library(files):
    """``--help`` and argument errors stay light: no torch, MLflow, Lightning, numpy."""
    probe = (
        "import sys\n"
        "from modelrecovery.cli import main\n"
        "codes = [main(['--help']), main(['fit', '--help']), main(['fit', '--lam', 'x'])]\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'lightning', 'numpy', 'pandas') "
        "if m in sys.modules)\n"
        "print(codes, heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert proc.stderr.strip().splitlines()[-1] == "[0, 0, 2] []", proc.stderr


def test_every_subcommand_has_help(files):
    from modelrecovery.cli import subcommands

    code, out, _ = run_cli(["--help"], files)
    assert code == 0
    found = subcommands()
    assert "data things" in found and "stack" in found
    for command in found:
        assert command.split()[0] in out
        code, text, err = run_cli([*command.split(), "--help"], files)
        assert code == 0 and "usage: modelrecovery " + command in text, err


def test_option_choices_match_the_library():
    """The parser's choices are the names the library accepts (one vocabulary)."""
    from typing import get_args

    from modelrecovery.cli import subcommands
    from modelrecovery.data.loaders import TripletFormat
    from modelrecovery.probe.families import FAMILIES, REGULARISERS

    choices = {a.dest: tuple(a.choices) for a in subcommands()["fit"]._actions if a.choices}
    assert choices["family"] == FAMILIES
    assert choices["regulariser"] == REGULARISERS
    assert choices["format"] == get_args(TripletFormat)


# (id, argv, fragments) on files: exit 2, one line, before any run is created
INPUT_ERRORS = [
    ("ceiling-missing-file", ["noise-ceiling", "nope.tsv"], ["nope.tsv"]),
    ("ceiling-folder", ["noise-ceiling", "a_folder"], ["a_folder", "folder"]),
    ("ceiling-empty", ["noise-ceiling", "empty.tsv"], ["empty.tsv"]),
    ("ceiling-garbage", ["noise-ceiling", "garbage.tsv"], ["garbage.tsv"]),
    ("ceiling-header-only", ["noise-ceiling", "header_only.csv"], ["header_only.csv"]),
    (
        "evaluate-missing-features",
        ["evaluate", "--features", "nope.npy", "--triplets", "human.tsv"],
        ["nope.npy"],
    ),
    (
        "recover-dask-scheduler-down",
        ["recover", "--set", "executor.address=tcp://127.0.0.1:9"],
        ["executor.address=tcp://127.0.0.1:9", "no Dask scheduler answers"],
    ),
    ("analyze-unknown-run", ["analyze", "--run-ids", "abc"], ["Run with id=abc not found"]),
    (
        "extract-weights-missing",
        [
            "extract",
            "--models",
            "timm:resnet10t",
            "--pretrained",
            "--images",
            "images.csv",
            "--out",
            "feats",
        ],
        ["timm:resnet10t"],
    ),
    (
        "simulate-unknown-generator",
        ["simulate", "--generator", "nobody", "--n-train", "10", "--out", "o"],
        ["--generator 'nobody'", "not a model of the study"],
    ),
    (
        "evaluate-more-rows",
        ["evaluate", "--features", "x.npy", "--triplets", "few_ids.csv"],
        ["few_ids.csv", "largest concept id is 9", "30 rows", "--n-concepts 30"],
    ),
    (
        "fit-short-features",
        [
            "fit",
            "--features",
            "x_short.npy",
            "--triplets",
            "human.tsv",
            "--n-concepts",
            "30",
            "--lam",
            "1",
        ],
        ["x_short.npy", "20"],
    ),
    ("recover-config-missing", ["recover", "--config", "nope"], ["nope", "not found"]),
    ("recover-config-bad-yaml", ["recover", "--config", "bad.yaml"], ["bad.yaml"]),
    ("recover-unknown-key", ["recover", "--set", "grid.sizez=[4]"], ["grid.sizez"]),
    ("recover-bad-override", ["recover", "--set", "grid.sizes"], ["grid.sizes"]),
    ("recover-sizes-text", ["recover", "--set", "grid.sizes=abc"], ["grid.sizes", "abc"]),
    ("recover-folds-text", ["recover", "--set", "grid.n_folds=abc"], ["grid.n_folds", "abc"]),
    ("tune-lams-text", ["recover", "--set", "tune.lams=abc"], ["tune.lams", "abc"]),
    ("world-unknown-key", ["world", "--set", "n_concept=12"], ["n_concept"]),
    (
        "calibrate-unknown-run",
        ["calibrate", "--run-id", "0123456789abcdef", "--triplets", "human.tsv"],
        ["0123456789abcdef", "no such run"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,fragments", [c[1:] for c in INPUT_ERRORS], ids=[c[0] for c in INPUT_ERRORS]
)
def test_input_errors_exit_2_with_one_line(files, tmp_path, argv, fragments):
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{tmp_path}/optuna.db",
        "MODELRECOVERY_DATA": str(tmp_path / "data"),
    }
    code, out, err = run_cli(argv, files, env)
    assert code == 2, (code, out, err)
    assert_one_line(err, *fragments)
    if (tmp_path / "mlflow.db").exists():
        with sqlite3.connect(tmp_path / "mlflow.db") as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0
    assert not (tmp_path / "data").exists()  # no world built


# (id, environment, argv, fragments): the store is checked before any work
STORE_FAULTS = [
    (
        "mlflow-server-down",
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9/"},
        ["fit", *DATA, "--lam", "1"],
        ["MLFLOW_TRACKING_URI=http://127.0.0.1:9/", "no MLflow server answers"],
    ),
    (
        "mlflow-folder-path",
        {"MLFLOW_TRACKING_URI": "{root}/mlruns"},
        ["fit", *DATA, "--lam", "1"],
        ["MLFLOW_TRACKING_URI=", "a folder path", "sqlite:///"],
    ),
    (
        "mlflow-sqlite-missing-folder",
        {"MLFLOW_TRACKING_URI": "sqlite:///{root}/nope/mlflow.db"},
        ["analyze"],
        ["MLFLOW_TRACKING_URI=", "does not exist"],
    ),
    (
        "mlflow-sqlite-is-folder",
        {"MLFLOW_TRACKING_URI": "sqlite:///{root}/a_folder"},
        ["fit", *DATA, "--lam", "1"],
        ["MLFLOW_TRACKING_URI=", "is a folder"],
    ),
    (
        "mlflow-postgres-down",
        {"MLFLOW_TRACKING_URI": "postgresql://user:secret@127.0.0.1:9/mlflow"},
        ["fit", *DATA, "--lam", "1"],
        ["MLFLOW_TRACKING_URI=postgresql://user:***@127.0.0.1:9/mlflow"],
    ),
    (
        "optuna-plain-path",
        {"OPTUNA_STORAGE": "{root}/optuna"},
        ["tune", *DATA],
        ["OPTUNA_STORAGE=", "expected a database URL"],
    ),
    (
        "optuna-missing-folder",
        {"OPTUNA_STORAGE": "sqlite:///{root}/nope/optuna.db"},
        ["recover"],
        ["OPTUNA_STORAGE=", "does not exist"],
    ),
    (
        "optuna-same-file-as-mlflow",
        {"OPTUNA_STORAGE": "sqlite:///{root}/mlflow.db"},
        ["generators"],
        ["same SQLite file"],
    ),
    (
        "dashboard-storage-option",
        {},
        ["dashboard", "--storage", "postgresql+psycopg2://u:secret@127.0.0.1:9/optuna"],
        ["--storage=postgresql+psycopg2://u:***@127.0.0.1:9/optuna", "cannot connect"],
    ),
    (
        "dashboard-bad-storage",
        {"OPTUNA_STORAGE": "redis://127.0.0.1:9"},
        ["dashboard"],
        ["OPTUNA_STORAGE=redis://127.0.0.1:9", "expected a database URL"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "env,argv,fragments", [c[1:] for c in STORE_FAULTS], ids=[c[0] for c in STORE_FAULTS]
)
def test_store_faults_fail_fast_with_one_line(files, tmp_path, env, argv, fragments):
    full = {**local_stores(tmp_path), **{k: v.format(root=tmp_path) for k, v in env.items()}}
    (tmp_path / "a_folder").mkdir()
    code, out, err = run_cli(argv, files, full)
    assert code == 2, (code, out, err)
    line = assert_one_line(err, *fragments)
    assert "secret" not in line and "secret" not in out
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_sqlite_folder_fails_fast(files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        env = {**local_stores(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/m.db"}
        code, _, err = run_cli(["fit", *DATA, "--lam", "1"], files, env)
    finally:
        folder.chmod(0o755)
    assert code == 2
    assert_one_line(err, "MLFLOW_TRACKING_URI=", "cannot write")


def test_read_only_sqlite_file_fails_fast(tmp_path):
    """A database file that cannot be written (here: locked by another writer, which also
    blocks root) fails the check within its timeout, naming the variable."""
    from modelrecovery.store_checks import StoreError, check_tracking_uri

    path = tmp_path / "mlflow.db"
    holder = sqlite3.connect(path)
    holder.execute("create table t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=r"MLFLOW_TRACKING_URI=sqlite:///.*cannot write"):
            check_tracking_uri(f"sqlite:///{path}", timeout=0.2)
    finally:
        holder.rollback()
        holder.close()
    check_tracking_uri(f"sqlite:///{path}", timeout=0.2)  # free again: accepted


def test_results_print_significant_digits():
    from modelrecovery.cli import format_value

    assert format_value(4.5e-10) == "4.5e-10"
    assert format_value(0.123456789) == "0.123457"
    assert format_value(1234567.0) == "1.23457e+06"
    assert format_value(3) == "3"


def test_database_server_down_fails_within_the_timeout():
    """Nothing listens on port 9: one connection attempt, a one-line error, no password."""
    import importlib.util
    import time

    from modelrecovery.store_checks import StoreError, check_optuna_url

    driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d)), None)
    if driver is None:
        pytest.skip("no PostgreSQL driver installed")
    url = f"postgresql+{driver}://user:secret@127.0.0.1:9/optuna"
    t0 = time.perf_counter()
    with pytest.raises(StoreError) as info:
        check_optuna_url(url, timeout=2)
    message = str(info.value)
    assert "cannot connect" in message and "user:***@" in message and "secret" not in message
    assert "\n" not in message
    assert time.perf_counter() - t0 < HANG_GUARD_S


def test_missing_driver_is_named():
    import importlib.util

    from modelrecovery.store_checks import StoreError, check_database_server

    if importlib.util.find_spec("pg8000"):
        pytest.skip("pg8000 is installed")
    with pytest.raises(StoreError, match="driver is not installed.*No module named 'pg8000'"):
        check_database_server("postgresql+pg8000://u@127.0.0.1/db", "X=...")
    with pytest.raises(StoreError, match="not a usable database URL"):
        check_database_server("postgresql+nosuchdriver_xyz://u@127.0.0.1/db", "X=...")


@pytest.mark.parametrize(
    "status,body,fragment",
    [
        (500, b'{"error_code": "INTERNAL_ERROR", "message": "connection refused"}', "HTTP 500"),
        (404, b"not found", "not an MLflow tracking server"),
        (200, b'{"experiments": []}', None),
    ],
)
def test_mlflow_server_check_reads_the_rest_api(status, body, fragment):
    """A server whose database is down answers 5xx on its REST API (its /health still
    says OK); a web server that is not MLflow answers 404."""
    import http.server
    import threading

    from modelrecovery.store_checks import StoreError, check_tracking_uri

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append(self.path)
            code = 200 if self.path == "/health" else status
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"OK" if self.path == "/health" else body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}"
        if fragment is None:
            check_tracking_uri(uri)
        else:
            with pytest.raises(StoreError, match=fragment):
                check_tracking_uri(uri)
    finally:
        server.shutdown()
    assert seen == ["/api/2.0/mlflow/experiments/search?max_results=1"]
