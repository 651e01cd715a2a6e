"""Beyond one machine: the grid through ``executor.address`` of a real Dask cluster started
as separate processes (``dask scheduler`` and two ``dask worker``, each in a working folder
of its own, as on other machines), with tables equal to the in-process run; one worker
killed mid-grid (its nanny and worker process, as a machine going down) and every job still
completes exactly once. And the SLURM recipe (``examples/slurm_cluster.py``, the optional
``slurm`` extra) builds its ``SLURMCluster`` without submitting anything."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
from modelrecovery.recovery.executors import run_grid
from modelrecovery.recovery.grid import Level, jobs_of
from modelrecovery.recovery.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")


def _tables(store: ResultsStore, job_ids: set[str] | None = None) -> dict[str, pd.DataFrame]:
    out = {}
    for name, frame in store.load().items():
        if job_ids is not None and "job_id" in frame.columns:
            frame = frame[frame["job_id"].isin(job_ids)]
        keys = [c for c in ("job_id", "candidate", "lam", "fold") if c in frame.columns]
        frame = frame.drop(columns=[c for c in ("seconds",) if c in frame.columns])
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def _start(argv: list[str], folder: Path, log: str) -> subprocess.Popen:
    """A process in its own folder and session (killed as a group, like a machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(folder / log, "wb") as out:
        return subprocess.Popen(
            argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two workers (one thread each), separate processes in separate
    folders; yields (address, {name: worker process})."""
    from distributed import Client

    procs = []
    try:
        info = tmp_path / "scheduler" / "scheduler.json"
        procs.append(_start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)],
            tmp_path / "scheduler", "scheduler.log",
        ))  # fmt: skip
        deadline = time.time() + 60
        while not info.is_file() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        workers = {}
        for name in ("machine-a", "machine-b"):
            folder = tmp_path / name
            workers[name] = _start(
                [DASK, "worker", address, "--name", name, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(folder / "dask")],
                folder, "worker.log",
            )  # fmt: skip
            procs.append(workers[name])
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address, workers
    finally:
        for proc in reversed(procs):
            _kill(proc)


@pytest.mark.slow
@pytest.mark.service
def test_a_grid_on_a_cluster_of_separate_processes(tmp_path, cluster):
    from distributed import Client

    address, workers = cluster
    features = planted_recovery_world()
    inputs = planted_grid_inputs(features, (Level("full"),))
    # one grid through the address: the in-process run's tables
    first = planted_grid_config(features, sizes=(60, 200), seeds=(0,))
    remote = ResultsStore(tmp_path / "remote")
    ran = run_grid(first, inputs, remote, executor="dask", dask_address=address, progress=False)
    assert len(ran) == len(jobs_of(first)) == 6
    local = ResultsStore(tmp_path / "local")
    run_grid(first, inputs, local, progress=False)
    a, b = _tables(remote), _tables(local)
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(a[name], b[name])
    with Client(address, timeout=30) as client:  # both machines worked, each in its folder
        done = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(done) == 2 and all(count > 0 for count in done.values()), done
    for name in workers:
        assert any((tmp_path / name / "dask").iterdir())

    # a second grid: machine-b goes down (nanny and worker) once two jobs are reported
    second = planted_grid_config(features, sizes=(60, 200), seeds=(0, 1))
    reported: list[str] = []
    killed = threading.Event()

    def on_done(job, result) -> None:
        reported.append(job.job_id)
        if len(reported) == 2:
            _kill(workers["machine-b"])
            killed.set()

    store = ResultsStore(tmp_path / "killed")
    started = time.perf_counter()
    run_grid(
        second, inputs, store, executor="dask", dask_address=address, progress=False,
        on_done=on_done,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert killed.is_set()
    n_jobs = len(jobs_of(second))
    assert len(reported) == n_jobs == 12 and len(set(reported)) == n_jobs, reported
    jobs = store.load()["jobs"]  # every job's record once in the store
    assert len(jobs) == n_jobs and jobs["job_id"].is_unique
    assert set(jobs["job_id"]) == {job.job_id for job in jobs_of(second)}
    assert len(list((tmp_path / "killed" / "jobs").iterdir())) == n_jobs
    with Client(address, timeout=30) as client:
        assert len(client.scheduler_info()["workers"]) == 1  # machine-b is gone
    # its seed-0 jobs are the first grid's, computed the same
    again = _tables(store, {job.job_id for job in jobs_of(first)})
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(again[name], b[name])
    print(f"killed-worker grid: {n_jobs} jobs in {seconds:.1f} s")


def _load_recipe():
    path = ROOT / "examples" / "slurm_cluster.py"
    spec = importlib.util.spec_from_file_location("slurm_cluster", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_slurm_recipe_builds_its_cluster_without_submitting():
    pytest.importorskip("dask_jobqueue")
    recipe = _load_recipe()
    cluster = recipe.slurm_cluster(
        queue="cpu", memory="4GB", walltime="00:30:00", python="/opt/env/bin/python",
        host="127.0.0.1",
    )  # fmt: skip
    try:
        script = cluster.job_script()
        assert "#SBATCH -p cpu" in script and "#SBATCH -t 00:30:00" in script
        assert "/opt/env/bin/python -m distributed.cli.dask_worker" in script
        assert "--nthreads 1" in script and cluster.scheduler_address in script
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert len(cluster.workers) == 0  # nothing submitted
    finally:
        cluster.close()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'slurm = ["dask-jobqueue' in pyproject
