"""A run whose process was killed (SIGKILL: no handler runs) stays RUNNING in MLflow; the
next tracker on the experiment marks it KILLED with a ``stale`` tag saying why, and
leaves the runs of live processes alone."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from test_signals import FIT, FIT_SLOW, runs, slow_fit_inputs, start, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


def tags_of(db, run_id: str) -> dict[str, str]:
    with sqlite3.connect(db, timeout=5) as con:
        return dict(con.execute("select key, value from tags where run_uuid = ?", (run_id,)))


def test_a_run_left_running_by_a_killed_fit_is_marked_killed_by_the_next_command(
    slow_fit_inputs,  # noqa: F811
):
    root = slow_fit_inputs
    db = root / "mlflow.db"
    proc = start(["fit", *FIT, *FIT_SLOW, "--lam", "1e-6"], root)
    wait_for(lambda: any(s == "RUNNING" for _, s, _ in runs(db)), 120, "the run", proc)
    # a run of a live process (this one): left alone
    from mlflow.tracking import MlflowClient

    from modelrecovery.study.mlflow_tracker import PROCESS_TAG, this_process

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("default").experiment_id
    live = client.create_run(experiment, run_name="live", tags={PROCESS_TAG: this_process()})
    [(_, _, killed)] = [r for r in runs(db) if r[0] != "live"]
    assert tags_of(db, killed)["modelrecovery.process"].endswith(f":{proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert dict((i, s) for _, s, i in runs(db))[killed] == "RUNNING"  # nobody ended it
    quick = start(["fit", *FIT, "--family", "diagonal", "--lam", "0.1"], root)
    _, err = quick.communicate(timeout=300)
    assert quick.returncode == 0, err
    status = {run_id: s for _, s, run_id in runs(db)}
    assert status[killed] == "KILLED"
    assert "its process " in tags_of(db, killed)["stale"]
    assert "killed" in tags_of(db, killed)["stale"]
    others = [s for run_id, s in status.items() if run_id != killed]
    assert sorted(others) == ["FINISHED", "RUNNING"]
    assert status[live.info.run_id] == "RUNNING"  # the live process's run is left alone
