"""Run the jobs of a grid in-process or on Dask; results go to the store as each job
finishes (the client writes them, so one writer keeps the store consistent, and remote
workers need no shared file system)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from modelrecovery.recovery.grid import GridConfig, Job, jobs_of
from modelrecovery.recovery.job import JobResult, run_job
from modelrecovery.recovery.store import ResultsStore

EXECUTORS = ("inprocess", "dask")


@dataclass(frozen=True)
class GridInputs:
    """Everything the jobs read: generators (Z, T) per (level label, model), candidates'
    features, and the keys of every human triplet (excluded from sampling)."""

    generators: dict[tuple[str, str], tuple[np.ndarray, float]]
    candidate_features: dict[str, np.ndarray]
    exclude_keys: np.ndarray | None

    def check(self, config: GridConfig) -> None:
        """Fail before any work when the inputs do not match the grid."""
        missing = [c for c in config.candidates if c not in self.candidate_features]
        if missing:
            raise ValueError(f"no features for candidates {missing}")
        missing = [
            f"{g} ({level.label})"
            for level in config.levels
            for g in config.generators
            if (level.label, g) not in self.generators
        ]
        if missing:
            raise ValueError(f"no generator (Z, T) for {missing}")
        sizes = {name: f.shape[0] for name, f in self.candidate_features.items()}
        sizes |= {name: z.shape[0] for name, (z, _) in self.generators.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"models disagree on the number of concepts: {sizes}")
        check_sizes(config, next(iter(sizes.values())))


def check_sizes(config: GridConfig, n_concepts: int) -> None:
    """Every N (and its validation / test share) must fit in the smallest fold's concepts."""
    from math import comb

    from modelrecovery.data.splits import concept_folds

    folds = concept_folds(n_concepts, config.n_folds, seed=0, train_fraction=config.train_fraction)
    limits = {
        "train": min(comb(len(f.train), 3) for f in folds),
        "validation": min(comb(len(f.validation), 3) for f in folds),
        "test": min(comb(len(f.test), 3) for f in folds),
    }
    for n in config.sizes:
        n_eval = max(1, round(n * config.eval_fraction))
        for role, wanted in (("train", n), ("validation", n_eval), ("test", n_eval)):
            if wanted > limits[role]:
                raise ValueError(
                    f"size N={n} needs {wanted} distinct {role} triplets per fold, but a fold's "
                    f"{role} concepts allow at most {limits[role]} ({n_concepts} concepts, "
                    f"{config.n_folds} folds)"
                )


def _run(job: Job, config: GridConfig, inputs: GridInputs) -> JobResult:
    z, temperature = inputs.generators[(job.level.label, job.generator)]
    return run_job(job, config, z, temperature, inputs.candidate_features, inputs.exclude_keys)


def run_grid(
    config: GridConfig,
    inputs: GridInputs,
    store: ResultsStore,
    *,
    executor: str = "inprocess",
    dask_address: str | None = None,
    n_workers: int = 2,
    progress: bool = True,
    on_done: Callable[[Job, JobResult], None] | None = None,
) -> list[Job]:
    """Run every job of ``config`` not yet in ``store``; returns the jobs run now.

    ``executor``: ``inprocess`` (one job after another) or ``dask`` (a ``LocalCluster`` on
    127.0.0.1 with ``n_workers`` single-threaded workers, or the scheduler at
    ``dask_address``). Each job pins its own thread count (``threads_per_job``), so the
    same seeds give identical tables whichever executor runs them.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    inputs.check(config)
    finished = store.done()
    todo = [job for job in jobs_of(config) if job.job_id not in finished]
    bar = tqdm(total=len(todo), desc="recovery jobs", unit="job", disable=not progress)
    bar.set_postfix_str(f"{len(finished)} already done")

    def finish(job: Job, result: JobResult) -> None:
        store.write(job.job_id, result)
        if on_done is not None:
            on_done(job, result)
        bar.update(1)

    try:
        if executor == "inprocess":
            for job in todo:
                finish(job, _run(job, config, inputs))
        else:
            _run_dask(todo, config, inputs, finish, dask_address, n_workers)
    finally:
        bar.close()
    return todo


def _run_dask(todo, config, inputs, finish, address, n_workers) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address is None:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        address = cluster
    client = Client(address)
    try:
        remote_inputs = client.scatter(inputs, broadcast=True)
        futures = {
            client.submit(_run, job, config, remote_inputs, key=f"recovery-{job.job_id}"): job
            for job in todo
        }
        for future in as_completed(futures):
            finish(futures[future], future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
