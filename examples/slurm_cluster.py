"""A Dask cluster on SLURM for the recovery grid (``pip install 'modelrecovery[slurm]'``).

Run this on the login node (in tmux or screen: the cluster lives as long as this process)::

    python examples/slurm_cluster.py --jobs 20 --queue cpu --memory 8GB --walltime 04:00:00

It submits ``--jobs`` SLURM jobs, each one single-threaded Dask worker started with this
environment's Python (the project must be installed where the jobs run), and prints the
scheduler's address. Then, from the same machine or any that reaches it::

    modelrecovery recover --config default \\
        --set executor.kind=dask executor.address=tcp://<login node>:<port>

The ``recover`` command (the client) logs every job and writes the results store itself:
the workers need neither the tracking server nor a shared file system. A worker that dies
(its SLURM job ends or is pre-empted) loses only its running job, which Dask reruns on
another worker; ``Ctrl-C`` here cancels the SLURM jobs.
"""

from __future__ import annotations

import argparse
import sys
import time


def slurm_cluster(
    queue: str | None = None,
    memory: str = "8GB",
    walltime: str = "04:00:00",
    python: str | None = None,
    host: str | None = None,
    account: str | None = None,
):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run one worker with one thread
    (a recovery job's fits take one core each); nothing is submitted until ``scale``."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        queue=queue,
        account=account,
        cores=1,
        processes=1,
        memory=memory,
        walltime=walltime,
        python=python or sys.executable,
        scheduler_options={"host": host or "", "dashboard_address": ":0"},
    )


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, submit the jobs, print the address, wait for Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="SLURM jobs (one worker each)")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    parser.add_argument("--account", default=None)
    parser.add_argument("--memory", default="8GB", help="memory per job")
    parser.add_argument("--walltime", default="04:00:00")
    parser.add_argument("--host", default=None, help="the scheduler's interface/address")
    args = parser.parse_args(argv)
    cluster = slurm_cluster(
        args.queue, args.memory, args.walltime, host=args.host, account=args.account
    )
    cluster.scale(jobs=args.jobs)
    print(f"--set executor.kind=dask executor.address={cluster.scheduler_address}", flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
