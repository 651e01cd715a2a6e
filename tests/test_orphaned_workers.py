"""SIGKILL of ``recover`` mid-grid on its local Dask cluster: the worker processes it
leaves behind (orphans) exit within seconds and print nothing to the stderr they
inherited, and a rerun finishes the grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_signals import TINY, runs

GONE_WITHIN_S = 20  # every orphan must be gone by then (it takes about half a second)
# slower jobs than test_signals' (kill lands mid-job); sizes the 36-concept world allows
GRID = "grid.sizes=[150,180] grid.seeds=[0,1,2,3] tune.lams=[0.1,10.0] tune.n_folds=2"
N_JOBS = 2 * 2 * 4  # generators x sizes x seeds


def start_recover(root: Path, store: Path) -> subprocess.Popen:
    """``recover`` with two local Dask workers, in its own session (process group), with
    a private tracking home."""
    settings = [GRID if s.startswith("grid.sizes") else s for s in TINY]
    argv = ["recover", "--executor", "dask", "--no-progress", "--set", *settings]
    argv += ["executor.n_workers=2", f"store={store}"]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{root}/optuna.db",
        "MODELRECOVERY_DATA": str(root / "data"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelrecovery.cli", *argv],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


ORPHAN = """
import logging, os, sys, time
from modelrecovery.recovery.local_workers import guard
logging.basicConfig()
guard(parent=int(sys.argv[1]))  # a parent this process does not have: as if orphaned
try:
    raise ConnectionResetError("heartbeat")
except OSError:
    logging.getLogger("distributed.worker").exception("Failed during heartbeat.")
print("still here", flush=True)
time.sleep(30)
"""


def test_an_orphaned_worker_logs_nothing_and_exits():
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(os.getppid() + 1_000_000)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert time.monotonic() - t0 < 10
    assert done.returncode == 0 and done.stderr == "", done


@pytest.mark.slow
def test_sigkill_of_recover_leaves_no_orphaned_workers_nor_tracebacks(tmp_path):
    import psutil

    store = tmp_path / "store"
    proc = start_recover(tmp_path, store)
    lines: list[tuple[float, str]] = []  # (when, line) of the inherited stderr

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic(), line))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    threading.Thread(target=proc.stdout.read, daemon=True).start()

    def workers() -> list[psutil.Process]:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if "spawn_main" in " ".join(p.cmdline())]

    def finished_jobs() -> int:
        jobs = store / "jobs"
        return len(list(jobs.iterdir())) if jobs.is_dir() else 0

    deadline = time.monotonic() + 240
    while not (len(workers()) >= 2 and finished_jobs() >= 1):  # mid-grid, jobs running
        assert proc.poll() is None, f"recover ended first: {''.join(l for _, l in lines)}"
        assert time.monotonic() < deadline, "no job finished in time"
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)  # workers, resource tracker
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished_jobs() < N_JOBS, "the kill should land in the middle of the grid"

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    try:
        while any(alive(p) for p in children):
            if time.monotonic() - killed_at > GONE_WITHIN_S:
                left = [(p.pid, p.cmdline()) for p in children if alive(p)]
                raise AssertionError(f"{GONE_WITHIN_S} s after SIGKILL still alive: {left}")
            time.sleep(0.1)
        gone_after = time.monotonic() - killed_at
    finally:
        for p in children:  # leave nothing behind, whatever happened
            if alive(p):
                p.kill()
    reader.join(timeout=10)  # the pipe ends once every holder of it is gone
    after = "".join(line for when, line in lines if when >= killed_at)
    assert "Traceback" not in after, after
    assert "distributed." not in after, after
    print(f"{len(children)} children gone {gone_after:.1f} s after SIGKILL")

    rerun = start_recover(tmp_path, store)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "Traceback" not in err, err
    assert finished_jobs() == N_JOBS
    statuses = sorted(s for n, s, _ in runs(tmp_path / "mlflow.db") if n.startswith("recover"))
    assert len(statuses) == 2 and "FINISHED" in statuses, statuses  # and the killed one
