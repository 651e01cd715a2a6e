"""What tracking costs: the default study's recovery grid timed with tracking off, logging
to the local store (SQLite ``tracking/mlflow.db`` layout, artifacts on disk) and logging to
the team stack (MLflow server on PostgreSQL, artifacts proxied to S3). Goal: tracking adds
under 10 %.

The world, features and generators are built once (in a temporary local store); then the
same jobs run three times from an empty results store, each on the study's executor (a
2-worker Dask LocalCluster by default):

  off    run_grid with no logging; the results tables written to a folder
  local  inside a recover run in a SQLite store: one child run per job (params, metrics,
         tags, as the recover stage logs them), then the results tables as artifacts
  stack  the same against a stack started for the benchmark in a temporary folder
         (python -m modelrecovery.stack's up / down, free ports)

Each store is created before its timer (in practice it exists already); an untimed
warm-up grid (one job per level) runs first; the variants run in rotating order,
``--repeats`` times, and the medians are compared.

Before the grids it prints the MLflow server's median request latency (a job run's
``log_batch`` and a ``get_experiment`` on one kept-alive client, and ``get_experiment`` on
a fresh connection each time as the baseline); ``--mlflow-loop asyncio`` starts the server
on asyncio's loop instead of uvloop, which shows the delayed-ACK stall that uvloop removes.

Usage: python benchmarks/tracking_overhead.py [--quick] [--repeats R] [--mlflow-loop L]
       [--set key=value ...]
  --quick   a smaller grid (2 levels, 4 generators and candidates, N in {40, 400}, 1 seed)
Per repeat, the overheads against that repeat's off run; then the last line (medians):
off_seconds=<s> local_seconds=<s> stack_seconds=<s> local_overhead=<%>
stack_overhead=<%> jobs=<n>
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import mlflow

from modelrecovery import stack as stack_module
from modelrecovery.config import split_overrides
from modelrecovery.recovery.executors import run_grid
from modelrecovery.recovery.grid import jobs_of
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.study.generators import build_generators, generator_setups
from modelrecovery.study.inputs import (
    model_names,
    select_names,
    study_inputs,
)
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.study.pipeline import grid_config, grid_inputs, grid_provenance, record_job
from modelrecovery.study.spec import ExecutorSpec, StudySpec, load_spec
from modelrecovery.study.tracker import standard_tags

QUICK = [
    "grid.levels=[{family: zero_shot},{family: full}]",
    "grid.sizes=[40,400] grid.seeds=[0]",
]


def prepare(spec: StudySpec, folder: Path):
    """Inputs and generators of the study (built in a temporary local store)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'prepare.db'}"
    os.environ["OPTUNA_STORAGE"] = f"sqlite:///{folder / 'optuna.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    inputs = study_inputs(spec, True)
    models = list(inputs.feature_paths)
    wanted = select_names(spec.generators, models, "generators")
    generators = build_generators(
        {m: inputs.feature_paths[m] for m in wanted},
        inputs.human,
        tracker=MLflowTracker("tracking-overhead-prepare"),
        setups=generator_setups(spec),
        progress=True,
        workers=spec.probe.workers,
    )
    candidates = select_names(spec.candidates, models, "candidates")
    grid = grid_config(spec, models, grid_provenance(inputs, candidates, generators))
    return grid, grid_inputs(inputs, generators, grid.candidates)


def timed_grid(grid, grid_inputs, execution: ExecutorSpec, folder: Path, uri: str | None) -> float:
    """Seconds for the whole grid from an empty store; logged to ``uri`` unless None."""
    shutil.rmtree(folder / "store", ignore_errors=True)
    store = ResultsStore(folder / "store")
    tracker = None
    if uri is not None:  # the store exists already in practice: its creation is not timed
        os.environ["MLFLOW_TRACKING_URI"] = uri
        tracker = MLflowTracker("tracking-overhead")
    tic = time.perf_counter()
    kwargs = dict(
        executor=execution.kind,
        dask_address=execution.address,
        n_workers=execution.n_workers,
        progress=False,
    )

    def tables_to(out: Path) -> Path:
        tables = store.load({job.job_id for job in jobs_of(grid)})
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.to_parquet(out / f"{name}.parquet", index=False)
        return out

    if tracker is None:
        run_grid(grid, grid_inputs, store, **kwargs)
        tables_to(folder / "results")
    else:
        tags = standard_tags("recover") | {"study": "tracking-overhead"}
        with tracker.run("recover/tracking-overhead", tags=tags) as parent:

            def on_done(job, result) -> None:  # as the study records each job
                record_job(tracker, parent, job, result, grid.device)

            run_grid(grid, grid_inputs, store, on_done=on_done, **kwargs)
            parent.log_artifacts(tables_to(folder / "results"), "results")
    return time.perf_counter() - tic


def stack_cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each stack service (``pids`` from
    ``stack.status``), its child processes included (PostgreSQL's backends, the MLflow
    server's workers): what the stack takes from the cores while a grid runs."""
    import psutil

    out = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            root = psutil.Process(pid) if pid else None
            for proc in [root, *root.children(recursive=True)] if root else []:
                try:
                    cpu = proc.cpu_times()
                    total += cpu.user + cpu.system + cpu.children_user + cpu.children_system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        out[name] = total
    return out


def request_latency(uri: str, n: int = 40) -> dict[str, float]:
    """Median wall milliseconds of tracking requests to the server at ``uri``: a job run's
    ``log_batch`` (9 params, 14 metrics) and ``get_experiment`` on one kept-alive client,
    and ``get_experiment`` on a fresh connection each time (no keep-alive: the baseline
    that a delayed-ACK stall on kept-alive connections cannot reach)."""
    import requests
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment(f"latency-{random.randrange(1 << 30)}")
    run = client.create_run(experiment).info.run_id
    params = [Param(f"p{i}", str(i)) for i in range(9)]
    url = f"{uri}/api/2.0/mlflow/experiments/get?experiment_id={experiment}"

    def median_ms(call) -> float:
        times = []
        for i in range(n):
            tic = time.perf_counter()
            call(i)
            times.append(1000 * (time.perf_counter() - tic))
        return statistics.median(times)

    out = {
        "log_batch": median_ms(
            lambda i: client.log_batch(
                run,
                metrics=[Metric(f"m{k}", float(i), 0, i) for k in range(14)],
                params=params if i == 0 else [],
            )
        ),
        "get_experiment": median_ms(lambda i: client.get_experiment(experiment)),
        "get_experiment_fresh": median_ms(
            lambda i: requests.get(url, headers={"Connection": "close"}, timeout=10)
        ),
    }
    client.set_terminated(run)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--repeats", type=int, default=1, help="median of this many runs")
    parser.add_argument(
        "--mlflow-loop",
        default=stack_module.DEFAULT_MLFLOW_LOOP,
        choices=stack_module.MLFLOW_LOOPS,
        help="the MLflow server's event loop (asyncio: the kept-alive stall, see stack.py)",
    )
    args = parser.parse_args()
    quick = []
    if args.quick:  # the first four models of the default set
        names = ",".join(model_names(load_spec("default"))[:4])
        quick = [*QUICK, f"generators=[{names}] candidates=[{names}]"]
    spec = load_spec("default", split_overrides(quick + args.set))
    folder = Path(tempfile.mkdtemp(prefix="tracking-overhead-"))
    folder.chmod(0o755)
    settings = stack_module.settings_on_free_ports(folder / "stack", mlflow_loop=args.mlflow_loop)
    try:
        grid, grid_inputs = prepare(spec, folder)
        n_jobs = len(jobs_of(grid))
        execution = spec.executor
        local = folder / "local" / "tracking"
        local.mkdir(parents=True)
        stack_module.up(settings)
        pids = {name: entry["pid"] for name, entry in stack_module.status(settings).items()}
        latency = request_latency(settings.mlflow_uri)
        print(
            f"MLflow server ({settings.mlflow_loop} loop, {settings.mlflow_workers} workers), "
            "median ms per request: " + ", ".join(f"{k} {v:.1f}" for k, v in latency.items()),
            flush=True,
        )
        os.environ["PGPASSFILE"] = str(settings.pgpass)
        uris = {
            "off": None,
            "local": f"sqlite:///{local / 'mlflow.db'}",
            "stack": settings.mlflow_uri,
        }
        # untimed warm-up, one job per level: fills numba's on-disk cache (a first run
        # after a code change compiles the kernels in every worker) and the file caches
        warm = dataclasses.replace(
            grid, sizes=grid.sizes[:1], seeds=grid.seeds[:1], generators=grid.generators[:1]
        )
        timed_grid(warm, grid_inputs, execution, folder / "warm-up", None)
        times: dict[str, list[float]] = {name: [] for name in uris}
        for repeat in range(args.repeats):  # the order rotates: a busy spell hits all
            order = list(uris)[repeat % 3 :] + list(uris)[: repeat % 3]
            for name in order:
                before = stack_cpu_seconds(pids)
                took = timed_grid(grid, grid_inputs, execution, folder / name, uris[name])
                after = stack_cpu_seconds(pids)
                used = ", ".join(f"{k} {after[k] - before[k]:.1f}" for k in after)
                times[name].append(took)
                print(f"{name:<6} {took:.1f} s ({n_jobs} jobs); stack CPU s: {used}", flush=True)
        seconds = {name: statistics.median(values) for name, values in times.items()}
    finally:
        stack_module.down(settings, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    off = seconds["off"]
    # each repeat's variants ran minutes apart: their ratios are less exposed to the
    # machine's drift than ratios of medians taken over the whole run
    for name in ("local", "stack"):
        paired = [100 * (t / o - 1) for t, o in zip(times[name], times["off"], strict=True)]
        listed = ", ".join(f"{v:+.1f}%" for v in paired)
        print(f"{name} vs off, per repeat: {listed}; median {statistics.median(paired):+.1f}%")
    print(
        f"off_seconds={off:.1f} local_seconds={seconds['local']:.1f} "
        f"stack_seconds={seconds['stack']:.1f} "
        f"local_overhead={100 * (seconds['local'] / off - 1):.1f}% "
        f"stack_overhead={100 * (seconds['stack'] / off - 1):.1f}% jobs={n_jobs}"
    )


if __name__ == "__main__":
    main()
