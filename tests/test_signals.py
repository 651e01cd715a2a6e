"""SIGTERM and SIGINT: every command exits 143 / 130 within seconds with one line, its open
MLflow runs end FAILED without artifacts, and an interrupted recover grid is finished by a
rerun (interrupted jobs redone, finished ones reused)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import planted_triplets, repeated_triplets, write_things2023

pytestmark = pytest.mark.slow

STOP_GUARD_S = 30  # the process must be gone by then (it should take a second or two)


def runs(db: Path) -> list[tuple[str, str, str]]:
    """(name, status, run id) of every run in an MLflow SQLite store."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("select name, status, run_uuid from runs").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{cwd}/optuna.db",
        "MODELRECOVERY_DATA": str(cwd / "data"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelrecovery.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def interrupt(proc: subprocess.Popen, signum: int) -> tuple[int, str, str, float]:
    """Send ``signum``; (exit code, stdout, stderr, seconds until the process ended)."""
    t0 = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=STOP_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {STOP_GUARD_S} s after the signal: {err}") from None
    return proc.returncode, out, err, time.monotonic() - t0


def assert_interrupted(code: int, err: str, signum: int, command: str) -> None:
    assert code == 128 + signum, (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    name = signal.Signals(signum).name
    interrupted = [line for line in lines if "interrupted" in line]
    assert len(interrupted) == 1 and interrupted[0] == lines[-1], err  # said once, last
    assert lines[-1].startswith(f"modelrecovery {command}: interrupted by {name}"), err
    assert "nothing recorded as finished" in lines[-1]


@pytest.fixture
def slow_fit_inputs(tmp_path) -> Path:
    """A full-W problem that takes tens of seconds (so the signal lands mid-fit)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 90))
    write_things2023(
        tmp_path / "human.tsv",
        planted_triplets(x, 40_000, seed=1),
        repeated_triplets(x, 50, 5, seed=2),
    )
    np.save(tmp_path / "x.npy", x)
    return tmp_path


FIT = ["--features", "x.npy", "--triplets", "human.tsv", "--n-concepts", "150"]
FIT_SLOW = ["--dtype", "float64", "--stopping", "converged"]  # a fit of tens of seconds


def artifacts_of(root: Path, run_id: str) -> list[Path]:
    return [p for p in root.rglob("*") if run_id in p.parts and p.is_file()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_fit_interrupted_exits_128_plus_signal_and_fails_its_run(slow_fit_inputs, signum):
    root = slow_fit_inputs
    proc = start(["fit", *FIT, *FIT_SLOW, "--lam", "1e-6"], root)
    wait_for(
        lambda: any(s == "RUNNING" for _, s, _ in runs(root / "mlflow.db")), 120, "the run", proc
    )
    time.sleep(1.0)  # inside the fit
    assert proc.poll() is None, proc.communicate()
    code, out, err, seconds = interrupt(proc, signum)
    assert_interrupted(code, err, signum, "fit")
    assert out == ""
    [(name, status, run_id)] = runs(root / "mlflow.db")
    assert name.startswith("fit/x/full") and status == "FAILED"
    assert artifacts_of(root, run_id) == []
    print(f"fit stopped {seconds:.1f} s after {signal.Signals(signum).name}")


def test_tune_interrupted_fails_every_open_run(slow_fit_inputs):
    root = slow_fit_inputs
    proc = start(["tune", *FIT, *FIT_SLOW, "--lams", "1e-6", "1e-5", "--folds", "2"], root)
    wait_for(
        lambda: any(s == "RUNNING" for _, s, _ in runs(root / "mlflow.db")), 120, "a run", proc
    )
    time.sleep(1.0)
    code, _, err, _ = interrupt(proc, signal.SIGTERM)
    assert_interrupted(code, err, signal.SIGTERM, "tune")
    statuses = {status for _, status, _ in runs(root / "mlflow.db")}
    assert statuses == {"FAILED"}, runs(root / "mlflow.db")


TINY = [
    "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
    "image_size: 48}",
    "models=[timm:resnet10t,timm:lcnet_100]",
    "grid.sizes=[20,80] grid.seeds=[0,1,2] tune.lams=[0.1,10.0] tune.n_folds=2",
    "grid.levels=[{family: full}]",
    "probe.workers=1",
    "report=false",
    "include_uninformative=true",  # the tiny world's generators are near chance
]


def test_recover_interrupted_mid_grid_is_finished_by_a_rerun(tmp_path):
    store = tmp_path / "store"
    argv = ["recover", "--executor", "dask", "--no-progress", "--set", *TINY, f"store={store}"]
    proc = start(argv, tmp_path)

    def some_jobs_done() -> bool:
        return (store / "jobs").is_dir() and len(list((store / "jobs").iterdir())) >= 2

    wait_for(some_jobs_done, 300, "two finished jobs", proc)
    code, _, err, _ = interrupt(proc, signal.SIGTERM)
    assert_interrupted(code, err, signal.SIGTERM, "recover")
    done = {p.name for p in (store / "jobs").iterdir()}
    n_jobs = 2 * 3 * 2  # generators x seeds x sizes
    assert 2 <= len(done) < n_jobs
    recover_runs = [(n, s) for n, s, _ in runs(tmp_path / "mlflow.db") if n.startswith("recover")]
    assert [s for _, s in recover_runs] == ["FAILED"]
    assert not list((store / "tmp").iterdir())  # no partial job left as if written

    rerun = start(argv, tmp_path)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    # the console holds results (and our own one-line notes), no third-party noise
    noise = [
        line
        for line in err.splitlines()
        if "Warning" in line or " INFO " in line or "distributed." in line or "Traceback" in line
    ]
    assert noise == [], err
    assert f"jobs_run_now  {n_jobs - len(done)}" in out or f"{n_jobs - len(done)}" in out
    assert len(list((store / "jobs").iterdir())) == n_jobs
    statuses = sorted(s for n, s, _ in runs(tmp_path / "mlflow.db") if n.startswith("recover"))
    assert statuses == ["FAILED", "FINISHED"]


SWALLOWED = """
import os, signal, time, weakref
from modelrecovery import interrupts
from modelrecovery.cli import _Signals

class Thing:
    pass

def callback(ref):  # the signal lands inside a garbage-collection callback
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)

with _Signals("modelrecovery test"):
    try:
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        for _ in range(200):
            time.sleep(0.01)
        print("not interrupted")
    except interrupts.Interrupted as err:
        print("interrupted", err.signum)
"""


def test_an_interrupt_swallowed_by_a_gc_callback_is_delivered_again():
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == f"interrupted {int(signal.SIGTERM)}", proc
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_fit_console_holds_results_only(slow_fit_inputs):
    """A plain fit prints its results on stdout and nothing on stderr: no MLflow notes,
    no third-party warnings."""
    root = slow_fit_inputs
    proc = start(["fit", *FIT, "--family", "diagonal", "--lam", "0.1"], root)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert err.strip() == "", err
    assert out.splitlines()[0].startswith("run_id") and "converged" in out


def test_logged_failures_caused_by_an_interrupt_are_dropped():
    """Optuna logs a trial that failed (here: numba's SystemError around our interrupt)
    with its traceback; after an interrupt such records are dropped, others kept."""
    import io
    import logging

    from modelrecovery import interrupts

    stream = io.StringIO()
    logger = logging.getLogger("modelrecovery-test-optuna-like")
    logger.addHandler(logging.StreamHandler(stream))
    logger.propagate = False
    interrupts.mute_logged_interrupts()
    try:
        try:
            raise interrupts.Interrupted(signal.SIGTERM)
        except interrupts.Interrupted as cause:
            raise SystemError("returned a result with an exception set") from cause
    except SystemError:
        logger.warning("Trial 0 failed", exc_info=True)
    try:
        raise ValueError("a real failure")
    except ValueError:
        logger.warning("Trial 1 failed", exc_info=True)
    text = stream.getvalue()
    assert "Trial 0" not in text and "Trial 1 failed" in text and "a real failure" in text


def test_an_exception_ending_a_command_after_a_stop_request_is_the_interrupt():
    """Lightning's own SIGTERM handler runs beside ours during a fit and can end it with
    its SIGTERMException (a SystemExit, exit code 0 if taken as it is): once a stop was
    requested, whatever ends the command is the interrupt."""
    from modelrecovery import interrupts

    interrupts.clear()
    assert interrupts.interrupted_in(SystemExit(0)) is None
    interrupts.request(signal.SIGTERM)
    try:
        found = interrupts.interrupted_in(SystemExit(0))
        assert isinstance(found, interrupts.Interrupted) and found.signum == signal.SIGTERM
    finally:
        interrupts.clear()
