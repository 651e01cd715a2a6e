"""The recovery grid: planted recovery, sampling constraints, crash-safe resume, Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
from modelrecovery.data.triplets import triplet_keys
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.grid import GridConfig, Level, jobs_of
from modelrecovery.recovery.job import simulate
from modelrecovery.recovery.store import ResultsStore

TESTS = Path(__file__).resolve().parent


def inputs_for(features, temperature=0.05, exclude=None, levels=None):
    return planted_grid_inputs(features, levels or (Level("full"),), temperature, exclude)


def sorted_tables(store: ResultsStore) -> dict[str, pd.DataFrame]:
    tables = store.load()
    out = {}
    for name, frame in tables.items():
        keys = [c for c in ("job_id", "candidate", "lam", "fold") if c in frame.columns]
        frame = frame.drop(columns=[c for c in ("seconds",) if c in frame.columns])
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def test_planted_grid_recovers_every_generator_at_largest_n(tmp_path):
    features = planted_recovery_world()
    config = planted_grid_config(features)
    store = ResultsStore(tmp_path / "store")
    ran = run_grid(config, inputs_for(features), store, progress=False)
    assert len(ran) == len(jobs_of(config)) == 3 * 2 * 2
    jobs = store.load()["jobs"]
    largest = jobs[jobs["n_train"] == max(config.sizes)]
    assert largest["recovered"].all(), largest[["generator", "winner"]]
    # rows: one per job; one per (job, candidate); one per (job, candidate, λ, fold)
    tables = store.load()
    assert len(tables["scores"]) == len(jobs) * 3
    assert len(tables["fits"]) == len(jobs) * 3 * 3 * config.n_folds
    assert set(tables["fits"].columns) >= {"val_accuracy", "test_nll", "iterations", "converged"}
    # a rerun finds everything done and runs nothing
    assert run_grid(config, inputs_for(features), store, progress=False) == []


def test_zero_shot_recovers_at_least_as_well_as_full_w(tmp_path):
    features = planted_recovery_world(n_models=3, seed=3)
    config = planted_grid_config(
        features, levels=(Level("zero_shot"), Level("full")), sizes=(400,), seeds=(0, 1, 2)
    )
    store = ResultsStore(tmp_path / "store")
    inputs = inputs_for(features, temperature=0.3, levels=config.levels)
    run_grid(config, inputs, store, progress=False)
    jobs = store.load()["jobs"]
    by_family = jobs.groupby("family")["recovered"].mean()
    assert by_family["zero_shot"] >= by_family["full"]


def test_sampled_triplets_respect_folds_and_exclude_human_triplets():
    features = planted_recovery_world()
    config = planted_grid_config(features)
    job = jobs_of(config)[-1]
    rng = np.random.default_rng(0)
    human = np.array([rng.choice(90, 3, replace=False) for _ in range(3000)])
    keys = np.unique(triplet_keys(human, 90))
    data = simulate(job, config, features[job.generator], 0.05, keys)
    from modelrecovery.data.splits import concept_folds
    from modelrecovery.recovery.grid import derived_seed

    folds = concept_folds(90, n_folds=3, seed=derived_seed(job.seed, "folds"))
    for fold, fd in zip(folds, data, strict=True):
        for name, concepts in (
            ("train", fold.train),
            ("validation", fold.validation),
            ("test", fold.test),
        ):
            t = getattr(fd, name)
            assert np.isin(t.ids, concepts).all(), name
            assert not np.isin(t.sorted_keys(), keys).any(), name
            assert len(np.unique(t.sorted_keys())) == len(t)
        assert len(fd.train) == job.n_train
        assert len(fd.validation) == len(fd.test) == round(job.n_train / 8)
    again = simulate(job, config, features[job.generator], 0.05, keys)
    assert all(np.array_equal(a.train.odd, b.train.odd) for a, b in zip(data, again, strict=True))


@pytest.mark.slow
def test_sigkill_mid_grid_then_rerun_completes_exactly_once(tmp_path):
    script = tmp_path / "grid.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
            from modelrecovery.recovery.executors import GridInputs, run_grid
            from modelrecovery.recovery.store import ResultsStore
            features = planted_recovery_world()
            config = planted_grid_config(features, sizes=(60, 600), seeds=(0, 1, 2))
            inputs = planted_grid_inputs(features, config.levels)
            run_grid(config, inputs, ResultsStore(sys.argv[1]), progress=False)
            """
        )
    )
    crashed = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, str(script), str(crashed)])
    deadline = time.time() + 240
    while time.time() < deadline:
        jobs_dir = crashed / "jobs"
        if jobs_dir.exists() and len(list(jobs_dir.iterdir())) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((crashed / "jobs").iterdir()))
    assert 3 <= n_before < 18, "the kill should land in the middle of the grid"
    subprocess.run([sys.executable, str(script), str(crashed)], check=True)
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(script), str(clean)], check=True)
    resumed, reference = sorted_tables(ResultsStore(crashed)), sorted_tables(ResultsStore(clean))
    assert len(resumed["jobs"]) == 18 and resumed["jobs"]["job_id"].is_unique
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(resumed[name], reference[name])


@pytest.mark.slow
@pytest.mark.service
def test_dask_local_cluster_gives_identical_tables(tmp_path):
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60, 600), seeds=(0,))
    local = ResultsStore(tmp_path / "local")
    run_grid(config, inputs_for(features), local, progress=False)
    dask = ResultsStore(tmp_path / "dask")
    run_grid(config, inputs_for(features), dask, executor="dask", n_workers=2, progress=False)
    a, b = sorted_tables(local), sorted_tables(dask)
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(a[name], b[name])


def test_bad_configuration_fails_before_any_work(tmp_path):
    features = planted_recovery_world()
    with pytest.raises(ValueError, match="candidate list is empty"):
        GridConfig(generators=("model0",), candidates=(), sizes=(10,), seeds=(0,))
    with pytest.raises(ValueError, match="not among the candidates"):
        GridConfig(generators=("other",), candidates=("model0",), sizes=(10,), seeds=(0,))
    with pytest.raises(ValueError, match="criterion"):
        planted_grid_config(features, criterion="aic")
    config = planted_grid_config(features)
    missing = dict(features)
    missing.pop("model2")
    store = ResultsStore(tmp_path / "store")
    with pytest.raises(ValueError, match="no features for candidates"):
        run_grid(config, GridInputs(inputs_for(features).generators, missing, None), store)
    too_many = planted_grid_config(features, sizes=(10**7,))
    with pytest.raises(ValueError, match="triplets"):
        run_grid(too_many, inputs_for(features), store, progress=False)
    assert store.done() == set()


@pytest.mark.slow
@pytest.mark.service
def test_dask_worker_killed_mid_grid_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL one of the local cluster's two worker processes once two jobs are done:
    Dask reruns the lost job elsewhere, every job is stored and reported exactly once, and
    the tables equal an undisturbed in-process run."""
    import threading

    import psutil

    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60, 600), seeds=(0, 1))
    reported: list[str] = []
    killed: list[int] = []

    def kill_a_worker() -> None:
        while len(reported) < 2:
            time.sleep(0.02)
        workers = [
            p
            for p in psutil.Process().children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline())
        ]
        victim = workers[0]
        killed.append(victim.pid)
        victim.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    store = ResultsStore(tmp_path / "dask")
    run_grid(
        config,
        inputs_for(features),
        store,
        executor="dask",
        n_workers=2,
        progress=False,
        on_done=lambda job, result: reported.append(job.job_id),
    )
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    n_jobs = len(jobs_of(config))
    assert len(reported) == n_jobs and len(set(reported)) == n_jobs  # each exactly once
    assert store.done() == {job.job_id for job in jobs_of(config)}
    reference = ResultsStore(tmp_path / "local")
    run_grid(config, inputs_for(features), reference, progress=False)
    a, b = sorted_tables(store), sorted_tables(reference)
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(a[name], b[name])
