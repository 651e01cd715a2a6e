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
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
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
