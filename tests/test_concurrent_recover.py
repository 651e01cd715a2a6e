"""Two processes on one study at once: jobs are claimed in the results store (a dead
claimant's claims taken over), generators are built once (a lock on their reuse key), job
ids name the generators' content, not their runs, and two `recover` commands started at
once on a new store compute and record every job exactly once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
from modelrecovery.locks import hostname
from modelrecovery.recovery.executors import run_grid
from modelrecovery.recovery.grid import jobs_of
from modelrecovery.recovery.store import CLAIM_LEASE_S, ResultsStore
from modelrecovery.study.tracker import NullTracker, reuse_or_run

ROOT = Path(__file__).resolve().parents[1]


def sleeper() -> subprocess.Popen:
    """A live process of this machine (a claimant that is not us)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def write_claim(store: ResultsStore, job_id: str, pid: int, host: str) -> Path:
    path = store.root / "claims" / job_id
    path.write_text(json.dumps({"pid": pid, "host": host, "time": time.time()}))
    return path


def test_claims_are_exclusive_and_a_dead_claimants_are_taken_over(tmp_path):
    store = ResultsStore(tmp_path / "store")
    assert store.claim("a") == "mine"
    assert store.claim("a") == "mine"  # ours already
    other = sleeper()
    try:
        write_claim(store, "b", other.pid, hostname())
        assert store.claim("b") == "held"
        other.kill()
        other.wait()
        assert store.claim("b") == "mine"  # its claimant died: taken over
    finally:
        other.kill()
    # another machine's claim holds while renewed, and lapses after the lease
    path = write_claim(store, "c", 1, "some-other-host")
    assert store.claim("c") == "held"
    old = time.time() - CLAIM_LEASE_S - 1
    os.utime(path, (old, old))
    assert store.claim("c") == "mine"
    store.release(["a", "b", "c"])
    assert sorted(p.name for p in (store.root / "claims").iterdir()) == [".lock"]
    # a finished job is never claimed again
    (store.root / "jobs" / "d").mkdir()
    assert store.claim("d") == "done"


def test_a_grid_waits_for_a_job_another_process_holds_and_takes_it_over_when_it_dies(tmp_path):
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60,), seeds=(0, 1))
    inputs = planted_grid_inputs(features, config.levels)
    store = ResultsStore(tmp_path / "store")
    jobs = jobs_of(config)
    held = jobs[0].job_id
    other = sleeper()
    try:
        write_claim(store, held, other.pid, hostname())
        ran: list = []
        thread = threading.Thread(
            target=lambda: ran.extend(run_grid(config, inputs, store, progress=False))
        )
        thread.start()
        deadline = time.monotonic() + 120
        while len(store.done()) < len(jobs) - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        # every other job done; the held one waits for its claimant
        assert store.done() == {j.job_id for j in jobs[1:]} and thread.is_alive()
        other.kill()
        other.wait()
        thread.join(timeout=120)
    finally:
        other.kill()
    assert not thread.is_alive()
    assert sorted(j.job_id for j in ran) == sorted(j.job_id for j in jobs)
    assert store.done() == {j.job_id for j in jobs}
    assert [p.name for p in (store.root / "claims").iterdir()] == [".lock"]


def test_a_job_finished_by_another_process_is_loaded_not_run(tmp_path):
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60,), seeds=(0,))
    inputs = planted_grid_inputs(features, config.levels)
    first, second = ResultsStore(tmp_path / "s"), ResultsStore(tmp_path / "s")
    assert len(run_grid(config, inputs, first, progress=False)) == len(jobs_of(config))
    assert run_grid(config, inputs, second, progress=False) == []


SLOW_COMPUTE = """
import sys, time
sys.path.insert(0, {tests!r})
from modelrecovery.study.tracker import NullTracker, reuse_or_run

class Home(NullTracker):
    def find(self, key):
        marker = self.folder / "done"
        return "found" if marker.exists() else None

tracker = Home({home!r})
def compute():
    print("computing", flush=True)
    time.sleep(3)
    (tracker.folder / "done").write_text("x")
    return "computed"
print(reuse_or_run(tracker, "k", lambda run_id: "loaded " + run_id, compute), flush=True)
"""


def test_a_second_process_waits_for_a_result_being_computed_and_loads_it(tmp_path):
    """What keeps two studies from building one generator twice: the reuse key's lock."""
    script = SLOW_COMPUTE.format(tests=str(ROOT / "tests"), home=str(tmp_path))
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "computing"
    second = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert first.communicate(timeout=60)[0].strip() == "computed"
    assert second.stdout.strip() == "loaded found", second.stderr
    # in one process, nothing waits
    tracker = NullTracker(tmp_path / "again")
    assert reuse_or_run(tracker, "k2", lambda r: r, lambda: "computed") == "computed"


def test_job_results_do_not_depend_on_the_generator_key_in_their_id(tmp_path):
    """Job ids name the generators by their reuse key now (before: their run id); the
    seeds derive from the job's axes, never its id, so the tables stay the same."""
    features = planted_recovery_world()
    tables = []
    for name in ("run-ids", "reuse-keys"):
        extra = {"generators": {"full": {m: f"{name}-{m}" for m in features}}}
        config = planted_grid_config(features, sizes=(60,), seeds=(0,), extra=extra)
        store = ResultsStore(tmp_path / name)
        run_grid(config, planted_grid_inputs(features, config.levels), store, progress=False)
        out = {}
        for key, frame in store.load().items():
            frame = frame.drop(columns=[c for c in ("job_id", "seconds") if c in frame.columns])
            by = [c for c in ("generator", "seed", "candidate", "lam", "fold") if c in frame]
            out[key] = frame.sort_values(by).reset_index(drop=True)
        tables.append(out)
    assert set(tables[0]) == {"jobs", "scores", "fits"}
    for name in tables[0]:
        pd.testing.assert_frame_equal(tables[0][name], tables[1][name])


EXAMPLE = ROOT / "examples" / "own_data" / "make_data.py"
SMALL = [
    "grid.sizes=[200]",
    "grid.seeds=[0,1,2,3,4,5]",
    "grid.levels=[{family: zero_shot},{family: diagonal}]",
    "generators=[close,warped]",
    "candidates=[close,warped,partial]",
    "report=false",
    "executor.kind=inprocess",
    "probe.workers=1",
]


@pytest.mark.slow
def test_two_recover_commands_at_once_on_a_new_store_share_every_job(tmp_path):
    """Two people start the same study at once on one (new) tracking home and store:
    both exit 0 with the same tables, and every generator and job is computed and
    recorded once (job folders, job runs, store rows)."""
    subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "data")], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    data = tmp_path / "data"
    init = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", "init", str(tmp_path / "study"),
         "--features", str(data / "features"), "--triplets", str(data / "train.csv"),
         "--repeated", str(data / "repeated.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    home, store = tmp_path / "home", tmp_path / "store"
    home.mkdir()  # a new tracking home: no database yet, no store
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{home}/optuna.db",
    }
    argv = [sys.executable, "-m", "modelrecovery.cli", "recover", "--config",
            str(tmp_path / "study" / "study.yaml"), "--no-progress", "--store", str(store),
            "--set", *SMALL]  # fmt: skip
    procs = [
        subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    n_jobs = 2 * 6 * 2  # generators x seeds x levels
    curves = [out[: out.index("run_id")] for out, _ in outs]
    assert curves[0] == curves[1] and "zero_shot" in curves[0]
    run_now = [int(line.split()[1]) for out, _ in outs for line in out.splitlines()
               if line.startswith("jobs_run_now")]  # fmt: skip
    assert len(run_now) == 2 and sum(run_now) == n_jobs, run_now
    assert len([p for p in (store / "jobs").iterdir() if p.is_dir()]) == n_jobs
    rows = ResultsStore(store).load()["jobs"]
    assert len(rows) == n_jobs and rows["job_id"].is_unique
    with sqlite3.connect(home / "mlflow.db") as con:
        names = [n for (n,) in con.execute("select name from runs where status = 'FINISHED'")]
    jobs = [n for n in names if n.startswith("job/")]
    assert len(jobs) == n_jobs and len(set(jobs)) == n_jobs
    generators = [n for n in names if n.startswith("generator/")]
    assert sorted(generators) == sorted(set(generators)) and len(generators) == 4
    assert len([n for n in names if n.startswith("recover/")]) == 2
    assert [p.name for p in (store / "claims").iterdir()] == [".lock"]
