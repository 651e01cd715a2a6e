"""Run the jobs of a grid in-process or on Dask; results go to the store as each job
finishes (the client writes them, so one writer keeps the store consistent, and remote
workers need no shared file system).

On GPUs (``grid.device`` ``cuda``, ``cuda:<n>`` or ``auto`` with a GPU) the local Dask
cluster starts ``jobs_per_gpu`` single-threaded worker processes per GPU, and worker i
runs its jobs on ``cuda:<i % n_gpus>`` (:func:`modelrecovery.devices.worker_device`), so
several jobs share one GPU. The device changes no job id: a job gives the same result
wherever it runs, up to the last float bits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from modelrecovery import interrupts
from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import cuda_count, pool_size, worker_device
from modelrecovery.recovery.grid import GridConfig, Job, derived_seed, jobs_of
from modelrecovery.recovery.job import JobResult, run_job
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.study.spec import EXECUTORS

POLL_SECONDS = 0.1  # how often the main process looks for finished jobs


@dataclass(frozen=True)
class GridInputs:
    """Everything the jobs read: generators (Z, T) per (level label, model), candidates'
    features, the keys of every human triplet (excluded from sampling) and, for
    ``grid.human_heldout``, the human held-out test triplets (the noise-ceiling set)."""

    generators: dict[tuple[str, str], tuple[np.ndarray, float]]
    candidate_features: dict[str, np.ndarray]
    exclude_keys: np.ndarray | None
    human_test: Triplets | None = None

    def check(self, config: GridConfig, jobs: list[Job] | None = None) -> None:
        """Fail before any work when the inputs do not match the grid (or the given
        ``jobs`` of it: their own sizes per seed)."""
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
        if set(config.triplet_selection) - {"random"}:
            missing = [
                f"{c} ({level.label})"
                for level in config.levels
                for c in config.candidates
                if (level.label, c) not in self.generators
            ]
            if missing:
                raise ValueError(
                    "the designs of triplet_selection need every candidate's human-fitted "
                    f"probe (Z, T); none for {missing}"
                )
        if config.human_heldout:
            if self.human_test is None or len(self.human_test) == 0:
                raise ValueError(
                    "grid.human_heldout needs the human held-out test triplets (the "
                    "noise-ceiling set), and the inputs have none; give the human data a "
                    "test set or set grid.human_heldout=false"
                )
        sizes = {name: f.shape[0] for name, f in self.candidate_features.items()}
        sizes |= {name: z.shape[0] for name, (z, _) in self.generators.items()}
        if config.human_heldout:
            sizes["human test triplets"] = self.human_test.n_concepts
        if len(set(sizes.values())) != 1:
            raise ValueError(f"models disagree on the number of concepts: {sizes}")
        n_concepts = next(iter(sizes.values()))
        check_sizes(config, n_concepts)
        largest = {int(seed): max(config.sizes) for seed in config.seeds}
        if jobs is not None:
            largest = {}
            for job in jobs:
                largest[job.seed] = max(largest.get(job.seed, 0), int(job.n_train))
        if not largest:
            return
        check_sizes_exactly(
            n_concepts,
            largest,
            n_folds=config.n_folds,
            train_fraction=config.train_fraction,
            eval_fraction=config.eval_fraction,
            exclude_keys=self.exclude_keys,
        )


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


def _largest_for(available: int, share: float) -> int:
    """The largest N whose ``max(1, round(share N))`` is at most ``available``."""
    if available < 1:
        return 0
    n = int((available + 0.5) / share) + 1
    while n > 0 and max(1, round(n * share)) > available:
        n -= 1
    return n


def check_sizes_exactly(
    n_concepts: int,
    largest: dict[int, int],
    *,
    n_folds: int,
    train_fraction: float,
    eval_fraction: float,
    exclude_keys: np.ndarray | None,
) -> None:
    """A one-line error, before any work, when a job would find too few distinct
    triplets to simulate: for each seed (``largest``: seed -> the largest N it runs),
    every fold's training, validation and test concepts (the folds of that seed, as the
    jobs draw them) must hold N, resp. ``max(1, round(eval_fraction N))``, triplets that
    are none of the human triplets (``exclude_keys``, which simulations avoid).

    Exact: counts the human triplets inside each part; skipped (it cannot fail) when
    every part holds enough even if all human triplets fell in it."""
    from math import comb

    from modelrecovery.data.sampling import excluded_keys
    from modelrecovery.data.splits import concept_folds

    keys = np.empty(0, dtype=np.int64) if exclude_keys is None else np.asarray(exclude_keys)
    asked = max(largest.values())
    n_eval = max(1, round(asked * eval_fraction))

    def folds_of(seed: int):
        return concept_folds(
            n_concepts, n_folds, seed=derived_seed(seed, "folds"), train_fraction=train_fraction
        )

    # every seed's folds have the same part sizes: enough even if every human triplet fell
    # in the smallest part, nothing to count
    shapes = folds_of(next(iter(largest)))
    if min(comb(len(f.train), 3) for f in shapes) - keys.size >= asked and (
        min(min(comb(len(f.validation), 3), comb(len(f.test), 3)) for f in shapes) - keys.size
        >= n_eval
    ):
        return
    limit, worst = None, None
    for seed, n in sorted(largest.items()):
        for f, fold in enumerate(folds_of(seed)):
            for role, concepts in (
                ("train", fold.train),
                ("validation", fold.validation),
                ("test", fold.test),
            ):
                concepts = np.asarray(concepts)
                free = comb(len(concepts), 3)
                free -= excluded_keys(keys, n_concepts, concepts=concepts).size
                fits = free if role == "train" else _largest_for(free, eval_fraction)
                wanted = n if role == "train" else max(1, round(n * eval_fraction))
                if limit is None or fits < limit:
                    limit = fits
                if wanted > free and worst is None:
                    worst = (n, wanted, role, seed, f, free, len(concepts))
    if worst is not None:
        n, wanted, role, seed, f, free, m = worst
        raise ValueError(
            f"grid.sizes: N = {n} needs {wanted} distinct {role} triplets per fold, but with "
            f"seed {seed} fold {f}'s {m} {role} concepts hold only {free} besides the "
            f"{keys.size} human triplets (simulations avoid them); use sizes up to {limit}"
        )


def _run(job: Job, config: GridConfig, inputs: GridInputs) -> JobResult:
    z, temperature = inputs.generators[(job.level.label, job.generator)]
    design = None
    if job.selection != "random":  # the candidates' human-fitted probes at the job's level
        design = {c: inputs.generators[(job.level.label, c)] for c in config.candidates}
    return run_job(
        job,
        config,
        z,
        temperature,
        inputs.candidate_features,
        inputs.exclude_keys,
        design_models=design,
        human_test=inputs.human_test if config.human_heldout else None,
    )


def worker_index(name: object) -> int:
    """A Dask worker's index in its pool: its name if an integer (``LocalCluster`` names
    workers 0, 1, ...), else the number its name ends with (``SLURMCluster-3``), else 0."""
    if isinstance(name, int):
        return name
    match = re.search(r"(\d+)$", str(name))
    return int(match.group(1)) if match else 0


def _run_on_worker(job: Job, config: GridConfig, inputs: GridInputs) -> JobResult:
    """:func:`_run` on a Dask worker, on the device of the worker's index among the GPUs
    it sees (:func:`~modelrecovery.devices.worker_device`)."""
    if config.device != "cpu":
        from distributed import get_worker

        index = worker_index(get_worker().name)
        config = dataclasses.replace(
            config, device=worker_device(config.device, index, cuda_count(), "grid.device")
        )
    if config.device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(config.device))  # plain "cuda" means it too
    return _run(job, config, inputs)


def run_grid(
    config: GridConfig,
    inputs: GridInputs,
    store: ResultsStore,
    *,
    executor: str = "inprocess",
    dask_address: str | None = None,
    n_workers: int = 2,
    jobs_per_gpu: int = 2,
    progress: bool = True,
    on_done: Callable[[Job, JobResult], None] | None = None,
    jobs: list[Job] | None = None,
) -> list[Job]:
    """Run every job of ``config`` (or the given ``jobs`` of it, e.g. a plan's batch) not
    yet in ``store``; returns the jobs this process ran and stored now. Jobs are claimed
    in the store first (:meth:`ResultsStore.claim`): a job another process is running
    is waited for (and taken over if that process dies), so two processes running one
    grid on one store compute each job once.

    ``executor``: ``inprocess`` (one job after another) or ``dask`` (a ``LocalCluster`` on
    127.0.0.1 with ``n_workers`` single-threaded workers on the CPU, ``jobs_per_gpu``
    workers per GPU on GPUs, or the scheduler at ``dask_address``). Each job pins its own
    thread count (``threads_per_job``), so the same seeds give identical tables whichever
    executor runs them. ``config.device`` is checked here before any work, unless the jobs
    run on a remote scheduler (whose workers check it).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if jobs_per_gpu < 1:
        raise ValueError(f"executor.jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    remote = executor == "dask" and dask_address is not None
    n_gpus = 0 if config.device == "cpu" or remote else cuda_count()
    if not remote:  # a clear error before any work when the device is absent here
        worker_device(config.device, 0, n_gpus, "grid.device")
    inputs.check(config, None if jobs is None else list(jobs))
    finished = store.done()
    jobs = jobs_of(config) if jobs is None else list(jobs)
    todo = [job for job in jobs if job.job_id not in finished]
    bar = tqdm(total=len(todo), desc="recovery jobs", unit="job", disable=not progress)
    bar.set_postfix_str(f"{len(jobs) - len(todo)} of the grid's jobs already done")
    ran: list[Job] = []

    def finish(job: Job, result: JobResult) -> None:
        with interrupts.deferred():  # a signal never leaves a job half written or logged
            if store.write(job.job_id, result):
                ran.append(job)
                if on_done is not None:
                    on_done(job, result)
            store.release([job.job_id])
        bar.update(1)

    try:
        if executor == "inprocess":
            here = dataclasses.replace(config, device=worker_device(config.device, 0, n_gpus))

            def compute(job: Job) -> None:
                try:
                    finish(job, _run(job, here, inputs))
                finally:
                    store.release([job.job_id])

            waiting = _claim_each(todo, store, compute, bar)
            _wait_for_others(waiting, store, compute, bar)
        else:
            if not remote:
                n_workers = pool_size(config.device, n_gpus, jobs_per_gpu, n_workers)
            _run_dask(todo, config, inputs, store, finish, bar, dask_address, n_workers)
    finally:
        bar.close()
    return ran


def _claim_each(todo: list[Job], store: ResultsStore, compute, bar) -> list[Job]:
    """Claim and compute the jobs of ``todo`` one after another; returns those another
    process holds (to wait for). A job finished meanwhile by another is counted done."""
    waiting = []
    for job in todo:
        interrupts.check()
        state = store.claim(job.job_id)
        if state == "mine":
            compute(job)
        elif state == "held":
            waiting.append(job)
        else:
            bar.update(1)
    return waiting


def _wait_for_others(waiting: list[Job], store: ResultsStore, compute, bar) -> None:
    """Wait until the jobs other processes claimed are in the store; a job whose claimant
    died (or gave it up) is claimed and computed here."""
    while waiting:
        time.sleep(POLL_SECONDS)
        waiting = _claim_each(waiting, store, compute, bar)


def _run_dask(todo, config, inputs, store, finish, bar, address, n_workers) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address is None:
        # the scheduler runs in this process: its INFO lines (start, workers registering,
        # the dashboard's jupyter-server-proxy note) are not for the study's console
        logging.getLogger("distributed").setLevel(logging.WARNING)
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: no warning when 8787 is taken
            silence_logs=logging.ERROR,
            # each worker exits, quietly, once this process is gone (even by SIGKILL)
            preload=["modelrecovery.recovery.local_workers"],
        )
        address = cluster
    client = Client(address)
    held: set[str] = set()  # the jobs this process claimed and has not finished
    try:
        remote_inputs = client.scatter(inputs, broadcast=True)
        futures = {}
        pending = as_completed()

        def submit(job: Job) -> None:
            held.add(job.job_id)
            future = client.submit(
                _run_on_worker, job, config, remote_inputs, key=f"recovery-{job.job_id}"
            )
            futures[future] = job
            pending.add(future)

        waiting = _claim_each(todo, store, submit, bar)
        renewed = time.monotonic()
        while not pending.is_empty() or waiting:
            interrupts.check()  # a SIGTERM / SIGINT lost in library code is seen here
            batch = pending.next_batch(block=False) if not pending.is_empty() else []
            if not batch:
                time.sleep(POLL_SECONDS)
                if waiting:  # jobs other processes hold: finished, or theirs to take over
                    waiting = _claim_each(waiting, store, submit, bar)
                if time.monotonic() - renewed > 60:
                    store.renew(held)
                    renewed = time.monotonic()
            for future in batch:
                job = futures[future]
                finish(job, future.result())
                held.discard(job.job_id)
    except BaseException:  # interrupted or failed: stop the local workers without waiting
        client.close(timeout=2)
        if cluster is not None:
            _stop_local_cluster(cluster)
        raise
    finally:
        store.release(held)
    client.close()
    if cluster is not None:
        cluster.close()


def _stop_local_cluster(cluster) -> None:
    """Kill a local cluster's worker processes (a job's fit does not stop on request),
    then close the cluster."""
    import signal as signals

    # the scheduler logs each closed worker connection with a traceback: expected here
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    for worker in list(getattr(cluster, "workers", {}).values()):
        process = getattr(getattr(worker, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if pid:
            try:
                os.kill(pid, signals.SIGKILL)
            except OSError:
                pass
    cluster.close(timeout=5)
