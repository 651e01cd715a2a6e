"""The catalogue, continued (issue 26, faults and bad input): read-only and full disks,
unclear messages, studies that cannot mean anything. Each case runs the real command line
in a subprocess (as :mod:`test_cli_catalogue`): the expected exit code and one line on
stderr naming what was wrong, no traceback, no run left behind.

A full disk is a real one where the tests may mount a small tmpfs (root); a read-only
folder is a tmpfs mounted read-only (root, whom ``chmod`` does not stop) or a folder
without write permission (anyone else)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import test_cli_catalogue as catalogue
from test_cli_catalogue import DATA, assert_one_line, local_stores, run_cli

files = catalogue.files  # the catalogue's small valid and bad input files (a fixture)

ROOT = os.geteuid() == 0


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if not ROOT or shutil.which("mount") is None:
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    return proc.returncode == 0


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its file system is full (to the last byte)."""
    for name, size in (("filler", 1 << 16), ("filler2", 1)):
        with open(folder / name, "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * size)


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A real file system with no space left (a 1 MiB tmpfs, filled): needs root."""
    where = tmp_path / "full"
    if not _mount_tmpfs(where, "size=1m"):
        pytest.skip("cannot mount a small tmpfs here (not root); see test_atomic_write_*")
    try:
        yield where
    finally:
        _unmount(where)


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder nobody may write into: a read-only tmpfs (root) or a chmod 555 folder."""
    where = tmp_path / "ro"
    if _mount_tmpfs(where, "ro,size=64k"):
        try:
            yield where
        finally:
            _unmount(where)
        return
    if ROOT:
        pytest.skip("root, and no read-only mount possible: chmod does not stop root")
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema (made once; copied where a test needs it)."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _runs_in(db: Path) -> int:
    """Runs in an MLflow SQLite store, read from a copy (with its WAL) on another disk:
    reading in place needs to write the WAL index, which a full disk refuses."""
    if not db.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            source = Path(f"{db}{suffix}")
            if source.exists():
                shutil.copy(source, Path(tmp) / f"mlflow.db{suffix}")
        with sqlite3.connect(Path(tmp) / "mlflow.db") as con:
            return con.execute("select count(*) from runs").fetchone()[0]


# --- D1: read-only targets and full disks -------------------------------------------------

# (id, argv with {target}, the kind of target, fragments of the one error line)
UNWRITABLE_TARGETS = [
    ("things-dest-under-a-file", ["data", "things", "--dest", "{file}/things"], "file",
     ["is a file, not a folder"]),
    ("things-dest-read-only", ["data", "things", "--dest", "{ro}/things"], "ro", []),
    ("things-dest-full", ["data", "things", "--dest", "{full}/things"], "full",
     ["no space left"]),
    ("analyze-out-existing-file", ["analyze", "--out", "{file}"], "file",
     ["an existing file, expected a folder"]),
    ("analyze-out-read-only", ["analyze", "--out", "{ro}/report"], "ro", []),
    ("analyze-out-full", ["analyze", "--out", "{full}/report"], "full", ["no space left"]),
    ("simulate-out-existing-file",
     ["simulate", "--generator", "resnet50", "--n-train", "10", "--out", "{file}"], "file",
     ["an existing file, expected a folder"]),
    ("simulate-out-read-only",
     ["simulate", "--generator", "resnet50", "--n-train", "10", "--out", "{ro}/sim"], "ro", []),
    ("simulate-out-full",
     ["simulate", "--generator", "resnet50", "--n-train", "10", "--out", "{full}/sim"], "full",
     ["no space left"]),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,kind,fragments",
    [c[1:] for c in UNWRITABLE_TARGETS],
    ids=[c[0] for c in UNWRITABLE_TARGETS],
)
def test_unwritable_targets_exit_2_before_any_run(files, tmp_path, request, argv, kind, fragments):
    where = {"file": str(files / "x.npy")}
    if kind in ("ro", "full"):
        where[kind] = str(request.getfixturevalue({"ro": "read_only", "full": "full_disk"}[kind]))
        if kind == "full":
            _fill(Path(where["full"]))
    env = local_stores(tmp_path)
    code, out, err = run_cli([a.format(**where) for a in argv], files, env)
    assert code == 2, (code, out, err)
    line = assert_one_line(err, "cannot write", *fragments)
    if kind == "ro":
        assert "read-only file system" in line or "permission denied" in line, line
    assert _runs_in(tmp_path / "mlflow.db") == 0  # analyze: no FAILED run for a bad --out
    assert not (tmp_path / "data").exists()  # simulate: no world built
    assert (files / "x.npy").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["fit", *DATA, "--lam", "1"], ["recover", "--set", "models=[timm:resnet10t]"]],
    ids=["fit", "recover"],
)
def test_full_disk_under_the_tracking_store_exits_2(files, full_disk, mlflow_db, argv):
    """The store exists but the disk under it is full: one line, exit 2, no traceback
    (MLflow logs the failed commit with its traceback; that record is dropped)."""
    db = full_disk / "mlflow.db"
    shutil.copy(mlflow_db, db)
    _fill(full_disk)
    env = {**local_stores(full_disk), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    code, out, err = run_cli(argv, files, env)
    assert code == 2, (code, out, err)
    assert_one_line(err, "cannot write", str(full_disk))
    assert _runs_in(db) == 0


def test_atomic_write_on_a_full_disk_leaves_nothing(full_disk):
    """Writers on a really full disk: CannotWrite naming the file, no partial file."""
    from modelrecovery.data import Triplets
    from modelrecovery.data.loaders import save_csv
    from modelrecovery.outputs import CannotWrite, write_text

    (full_disk / "old.txt").write_text("old")
    _fill(full_disk)
    ids = np.tile(np.array([[0, 1, 2]]), (5000, 1))
    with pytest.raises(CannotWrite, match=r"cannot write .*t\.csv: no space left"):
        save_csv(Triplets(ids, np.zeros(5000, dtype=int), 3), full_disk / "t.csv")
    with pytest.raises(CannotWrite, match=r"cannot write .*old\.txt: no space left"):
        write_text(full_disk / "old.txt", "new " * 10_000)
    assert (full_disk / "old.txt").read_text() == "old"  # the old file stays whole
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "filler2", "old.txt"]


def test_atomic_write_failing_midway_leaves_the_old_file(tmp_path, monkeypatch):
    """The same without a real small disk (any user): the write fails after some bytes."""
    from modelrecovery.outputs import CannotWrite, write_with

    target = tmp_path / "report.html"
    target.write_text("old")

    def half_then_full(fh):
        fh.write(b"<html>half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CannotWrite) as info:
        write_with(target, half_then_full)
    assert str(info.value) == f"cannot write {target}: no space left on the device (disk full)"
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_stray_write_errors_become_one_line_exit_2(capsys, monkeypatch):
    """An OSError of a full or read-only disk from any library: ``cannot write``, exit 2."""
    import argparse

    from modelrecovery.cli import entry

    args = argparse.Namespace(stores=(None, None), traceback=False)
    err = OSError(errno.EROFS, "Read-only file system", "/mnt/x/mlflow.db")
    assert entry._report(err, "modelrecovery fit", args) == 2
    assert capsys.readouterr().err == (
        "modelrecovery fit: error: cannot write /mnt/x/mlflow.db: read-only file system\n"
    )


# --- D2: messages that say what is wrong ---------------------------------------------------


@pytest.fixture(scope="module")
def d2_files(files, tmp_path_factory) -> Path:
    """Bad inputs of the unclear-message cases beside the catalogue's files."""
    from modelrecovery.config import resolve_config_path
    from modelrecovery.data.ceiling import noise_ceiling
    from modelrecovery.data.loaders import load_csv

    root = tmp_path_factory.mktemp("d2")
    for name in ("x.npy", "human.tsv"):
        shutil.copy(files / name, root / name)
    rows = [f"{i % 30},{(i + 1) % 30},{(i + 2) % 30},{i % 3}" for i in range(50)]
    rows.insert(50, "0,1,30,2")  # line 52: concept id 30, the features have 30 rows
    (root / "id30.csv").write_text("i,j,k,odd\n" + "\n".join(rows) + "\n")
    (root / "text.npy").write_text("0.1 0.2 0.3\n0.4 0.5 0.6\n")
    (root / "rs_cfg.txt").write_text("grid: [unclosed\n")
    # the packaged default config without grid.device and without the executor section
    text = resolve_config_path("default").read_text()
    lines, skip = [], False
    for line in text.splitlines():
        if line.startswith("executor:"):
            skip = True
            continue
        if skip and line.startswith(" "):
            continue
        skip = False
        if line.startswith("  device:") and "jobs:" in line:
            continue
        lines.append(line)
    (root / "bare.yaml").write_text("\n".join(lines) + "\n")
    assert "executor" not in (root / "bare.yaml").read_text()
    # repeated triplets whose two answers always disagree: a measured ceiling of 0
    rng = np.random.default_rng(3)
    base = np.array([rng.choice(30, 3, replace=False) for _ in range(40)])
    ids = np.repeat(base, 2, axis=0)
    odd = np.tile([0, 1], len(base))
    table = "\n".join(f"{a},{b},{c},{o}" for (a, b, c), o in zip(ids, odd, strict=True))
    (root / "random_repeats.csv").write_text("i,j,k,odd\n" + table + "\n")
    assert noise_ceiling(load_csv(root / "random_repeats.csv", n_concepts=30)) < 1 / 3
    # informative features on a large scale (x 30) with random responses: W = 0 is best
    x = np.load(files / "x.npy")
    np.save(root / "x30.npy", (x * 30).astype(np.float32))
    random_odd = rng.integers(0, 3, 300)
    ids300 = np.array([rng.choice(30, 3, replace=False) for _ in range(300)])
    table = "\n".join(f"{a},{b},{c},{o}" for (a, b, c), o in zip(ids300, random_odd, strict=True))
    (root / "random.csv").write_text("i,j,k,odd\n" + table + "\n")
    return root


def _failed_fit_run(root: Path) -> str:
    """A fit run that FAILED (no probe logged) in the store of ``root``."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.create_experiment("e26")
    run = client.create_run(experiment, tags={"stage": "fit", "model": "x"})
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


# (id, argv, fragments of the one error line, fragments it must not hold)
UNCLEAR = [
    (
        "triplet-id-out-of-range-fit",
        ["fit", "--features", "x.npy", "--triplets", "id30.csv", "--lam", "1"],
        ["id30.csv: line 52", "'k' = 30", "x.npy have 30 rows"],
        ["expected n_concepts=31"],
    ),
    (
        "triplet-id-out-of-range-evaluate",
        ["evaluate", "--features", "x.npy", "--triplets", "id30.csv"],
        ["id30.csv: line 52", "x.npy have 30 rows"],
        ["expected n_concepts=31"],
    ),
    (
        "text-file-as-npy",
        ["evaluate", "--features", "text.npy", "--triplets", "human.tsv"],
        ["text.npy: not a .npy file", "a text file"],
        ["pickle"],
    ),
    (
        "calibrate-failed-run",
        ["calibrate", "--run-id", "{failed}", "--triplets", "human.tsv"],
        ["--run-id {failed}: the run FAILED", "FINISHED fit run"],
        ["download"],
    ),
    (
        "config-other-extension",
        ["recover", "--config", "rs_cfg.txt"],
        ["rs_cfg.txt"],
        ["not found"],
    ),
    (
        "set-executor-address-absent-from-config",
        ["recover", "--config", "bare.yaml", "--set", "executor.address=tcp://127.0.0.1:9"],
        ["executor.address=tcp://127.0.0.1:9", "no Dask scheduler answers"],
        ["unknown key"],
    ),
    (
        "set-grid-device-absent-from-config",
        ["recover", "--config", "bare.yaml", "--set", "grid.device=cuda:7"],
        ["grid.device", "cuda:7"],
        ["unknown key"],
    ),
    (
        "ceiling-measured-below-chance",
        ["calibrate", "--features", "x.npy", "--triplets", "random_repeats.csv"],
        ["measured from the data", "below chance", "--ceiling"],
        [],
    ),
    (
        "analyze-bad-filter",
        ["analyze", "--experiment", "e26", "--filter", "params.x ==== 3"],
        ["--filter 'params.x ==== 3'", "not a filter MLflow can read"],
        [],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,fragments,absent", [c[1:] for c in UNCLEAR], ids=[c[0] for c in UNCLEAR]
)
def test_unclear_messages_name_the_real_problem(d2_files, tmp_path, argv, fragments, absent):
    if "grid.device=cuda:7" in argv:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    env = local_stores(tmp_path)
    failed = _failed_fit_run(tmp_path)
    argv = [a.format(failed=failed) for a in argv]
    code, out, err = run_cli(argv, d2_files, env)
    assert code == 2, (code, out, err)
    line = assert_one_line(err, *[f.format(failed=failed) for f in fragments])
    for fragment in absent:
        assert fragment not in line, line
    assert _runs_in(tmp_path / "mlflow.db") == 1  # only the failed run made here
    assert not (tmp_path / "data").exists()  # no world built


@pytest.mark.slow
def test_no_rescale_advice_where_w_zero_is_the_best_fit(d2_files, tmp_path):
    """Informative features on a large scale with random responses: the fit collapses to
    W = 0, the best fit; no "rescale the features" warning (it blamed the scale)."""
    argv = ["fit", "--features", "x30.npy", "--triplets", "random.csv", "--lam", "1"]
    code, out, err = run_cli([*argv, "--family", "diagonal"], d2_files, local_stores(tmp_path))
    assert code == 0, (code, out, err)
    assert "rescale" not in err and "Traceback" not in err, err


# --- D3: studies that cannot mean anything -------------------------------------------------


@pytest.fixture(scope="module")
def shared_features_study(tmp_path_factory) -> Path:
    """A files study whose models a and b read one file, c a copy of it, d other features."""
    import yaml

    from helpers import planted_triplets, repeated_triplets, write_things2023

    root = tmp_path_factory.mktemp("d3")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 6)), rng.normal(size=(30, 5))
    (root / "features").mkdir()
    np.save(root / "features" / "x.npy", x.astype(np.float32))
    np.save(root / "features" / "y.npy", y.astype(np.float32))
    shutil.copy(root / "features" / "x.npy", root / "features" / "x_copy.npy")
    write_things2023(
        root / "human.tsv",
        planted_triplets(x, 600, seed=1),
        repeated_triplets(x, 40, 5, seed=2),
    )
    config = {
        "study": "d3",
        "data": {
            "kind": "files",
            "triplets": "human.tsv",
            "n_concepts": 30,
            "features_dir": "features",
        },
        "models": {"a": "x.npy", "b": "x.npy", "c": "x_copy.npy", "d": "y.npy"},
        "grid": {
            "sizes": [40],
            "seeds": [0],
            "levels": [{"family": "zero_shot"}],
            "lams": [1.0],
            "n_folds": 2,
        },
        "executor": {"kind": "inprocess"},
        "store": "store",
        "report": False,
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root


SAME_FILE = "same features: models a and b read the same file"
SAME_CONTENT = "same features: models a and c read files of the same content"
ONE_CANDIDATE = "one candidate: a is crowned by every job, so recovery is trivially 1.0"

# (id, argv, lines expected once each on stdout (check) or stderr (recover), lines absent)
MEANINGLESS = [
    ("check-shared-files", ["check"], [SAME_FILE, SAME_CONTENT], [ONE_CANDIDATE]),
    (
        "check-one-candidate",
        ["check", "--set", "generators=[a]", "candidates=[a]"],
        [ONE_CANDIDATE],
        [],
    ),
    (
        "recover-shared-file",
        ["recover", "--no-progress", "--set", "generators=[a]", "candidates=[a,b]"],
        [SAME_FILE],
        [ONE_CANDIDATE, "near-duplicates: a and b"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,expected,absent", [c[1:] for c in MEANINGLESS], ids=[c[0] for c in MEANINGLESS]
)
def test_meaningless_studies_warn_once(shared_features_study, tmp_path, argv, expected, absent):
    """Two models sharing one feature file (by path or by content) and a single
    candidate: one warning line each, from check and from recover; the study still runs."""
    argv = [argv[0], "--config", "study.yaml", *argv[1:]]
    code, out, err = run_cli(argv, shared_features_study, local_stores(tmp_path))
    assert code == 0, (code, out, err)
    text = out if argv[0] == "check" else err
    lines = text.splitlines()
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, text
    for fragment in absent:
        assert fragment not in text, text


# --- D4: a tracking server that does not answer -----------------------------------------


def test_unanswered_tracking_server_is_reported_before_mlflow_is_imported(files, tmp_path):
    """Nothing listens: the command fails on the check, before importing MLflow (1.5 s of
    imports, several seconds on a busy machine; benchmarks/fault_timings.py)."""
    probe = (
        "import sys\n"
        "from modelrecovery.cli import main\n"
        "code = main(['fit', '--features', 'x.npy', '--triplets', 'human.tsv', '--lam', '1'])\n"
        "print(code, 'mlflow' in sys.modules, file=sys.stderr)\n"
    )
    env = {**os.environ, **local_stores(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=files, env=env, capture_output=True, text=True,
        timeout=catalogue.HANG_GUARD_S,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "2 False", proc.stderr
    assert "no MLflow server answers" in lines[0] and "Connection refused" in lines[0]


@pytest.mark.slow
def test_hung_tracking_server_is_one_line_exit_2(files, tmp_path):
    """A server that accepts connections and never answers: one line, exit 2."""
    import socket

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(4)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        env = {**local_stores(tmp_path), "MLFLOW_TRACKING_URI": uri}
        code, out, err = run_cli(["fit", *DATA, "--lam", "1"], files, env)
    assert code == 2, (code, out, err)
    assert_one_line(err, f"MLFLOW_TRACKING_URI={uri}", "no MLflow server answers", "timed out")
