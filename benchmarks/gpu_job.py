"""One paper-scale full-W recovery job on a GPU: seconds per job, fits per second, and the
throughput of several jobs sharing one GPU.

The job is the one of ``benchmarks/recovery_job.py``: 20 candidates with the paper's feature
dimensions (512, 768, 1024, 2048, 4096 in turn), generated from a SPoSE-like 49-dimensional
embedding of 1854 concepts (no images), N = 25,600 training triplets per fold, the 11 λ
of ``FULL_LAMBDAS``, 3 folds: 660 fits, cold starts, temperature calibrated to the THINGS
ceiling 0.678. It runs through ``run_job`` with ``GridConfig(device=...)``, under the
study's stopping rule and the converged one. Goal (issue 10): <= 60 s per job on an H200.

On a GPU machine, as one short script (it needs torch, numba, numpy, scipy, pandas,
pyarrow, pyyaml, pillow and tqdm; mlflow and dask are not needed; ``src`` is found from
this file, so no install is needed):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_job.py --quick --timeout 480

(``--quick``: 5 candidates, one of each dimension, and 3 λ, both rules; prints the
whole job's time extrapolated by fits and says so). The whole job, one rule, then two
jobs at a time on the one GPU:

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_job.py --stopping study --timeout 540
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_job.py --quick --jobs-per-gpu 2 --timeout 540

Under the study's rule full W is fitted as p x p on CUDA (torch's L-BFGS; the row-space
form of the same path runs on CPU only), as the study's scripts did.

CPU smoke test (here): ``python benchmarks/gpu_job.py --device cpu --quick --candidates 2
--n-train 2000``. Without CUDA, ``--device cuda`` (the default) stops at once with a clear
error. The last line is machine-readable:
``gpu_job_seconds=<s> stopping=<rule> device=<name> fits=<n> extrapolated=<yes|no>``
(one such line per rule; ``gpu_job_seconds`` is the whole job's time, extrapolated by
fits under ``--quick``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

try:
    import modelrecovery  # noqa: F401
except ImportError:  # a bare checkout on a GPU machine: use src/ directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.devices import require_device
from modelrecovery.probe.calibrate import calibrate_temperature
from modelrecovery.recovery.grid import FULL_LAMBDAS, GridConfig, jobs_of
from modelrecovery.recovery.job import run_job
from modelrecovery.world import WorldConfig, generated_features, human_embedding

PAPER_DIMS = (512, 768, 1024, 2048, 4096)
QUICK_LAMBDAS = (1e-4, 1e-1, 1e2)
PAPER_FITS = 20 * len(FULL_LAMBDAS) * 3  # 660 fits in the paper-scale job
GOAL_SECONDS = 60.0
CEILING = 0.678


def build_world(n_candidates: int, n_train: int) -> tuple[dict[str, np.ndarray], str, float]:
    """The candidates' features, the generator's name and its calibrated temperature."""
    human = human_embedding(WorldConfig(n_concepts=1854, n_dims=49, seed=0))
    dims = [PAPER_DIMS[i % len(PAPER_DIMS)] for i in range(n_candidates)]
    features = generated_features(human, dims, seed=0, noise=0.5)
    generator = next(iter(features))
    z = features[generator].astype(np.float64)
    rng = np.random.default_rng(0)
    probe_ids = np.array([rng.choice(1854, 3, replace=False) for _ in range(2000)])
    temperature, _ = calibrate_temperature(z, Triplets(probe_ids, np.zeros(2000), 1854), CEILING)
    return features, generator, temperature


def one_job(
    features: dict[str, np.ndarray],
    generator: str,
    temperature: float,
    *,
    n_train: int,
    lams: tuple[float, ...],
    stopping: str,
    device: str,
    threads: int,
    seed: int = 0,
) -> dict:
    """Run one job; its seconds, fits, iterations, winner and GPU memory used."""
    config = GridConfig(
        generators=(generator,),
        candidates=tuple(features),
        sizes=(n_train,),
        seeds=(seed,),
        lams=lams,
        stopping=stopping,
        threads_per_job=threads,
        device=device,
    )
    job = jobs_of(config)[0]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run_job(job, config, features[generator].astype(np.float64), temperature, features)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = result.job.iloc[0]
    return {
        "seconds": seconds,
        "fits": len(result.fits),
        "fit_seconds": float(result.fits["seconds"].sum()),
        "iterations": float(result.fits["iterations"].mean()),
        "winner": str(row["winner"]),
        "recovered": bool(row["recovered"]),
        "peak_gpu_bytes": int(torch.cuda.max_memory_allocated()) if cuda else 0,
    }


def _child(options: dict, seed: int, stopping: str) -> dict:
    """One job in a worker process (features rebuilt there: same seed, same arrays)."""
    features, generator, temperature = build_world(options["candidates"], options["n_train"])
    first = dict(list(features.items())[:1])
    one_job(
        first,
        generator,
        temperature,
        n_train=300,
        lams=(1.0,),
        stopping=stopping,
        device=options["device"],
        threads=options["threads"],
    )
    return one_job(
        features,
        generator,
        temperature,
        n_train=options["n_train"],
        lams=options["lams"],
        stopping=stopping,
        device=options["device"],
        threads=options["threads"],
        seed=seed,
    )


class Watchdog:
    """Stops the benchmark with a clear message and a last line when time runs out."""

    def __init__(self, seconds: float | None, device_name: str) -> None:
        self.device_name = device_name
        self.stage = "set-up"
        self.stopping = "none"
        self.pool: cf.ProcessPoolExecutor | None = None
        if seconds:
            timer = threading.Timer(seconds, self._expire, args=(seconds,))
            timer.daemon = True
            timer.start()

    def _expire(self, seconds: float) -> None:
        print(f"timed out after {seconds:.0f} s (--timeout) during the {self.stage}")
        print(
            f"gpu_job_seconds=nan stopping={self.stopping} device={self.device_name} "
            "fits=0 extrapolated=no timed_out=yes",
            flush=True,
        )
        if self.pool is not None:
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.kill()
        os._exit(124)


def device_name(device: str, threads: int) -> str:
    """The GPU's name, or ``cpu`` with its thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device)).replace(" ", "_")
    return f"cpu-{threads}threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:<n>, auto, cpu")
    parser.add_argument(
        "--stopping", default="both", choices=["study", "converged", "both"], help="rule(s)"
    )
    parser.add_argument("--candidates", type=int, default=None, help="default 20 (--quick: 5)")
    parser.add_argument("--n-train", type=int, default=25_600)
    parser.add_argument(
        "--jobs-per-gpu", type=int, default=1, help="jobs run at a time, one process each"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per job")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many s")
    parser.add_argument("--quick", action="store_true", help="5 candidates, 3 λ, extrapolated")
    args = parser.parse_args()
    try:
        device = require_device(args.device, "--device")
    except ValueError as err:
        print(f"gpu_job.py: error: {err} (use --device cpu for a CPU smoke test)", file=sys.stderr)
        return 2
    if args.jobs_per_gpu < 1:
        print("gpu_job.py: error: --jobs-per-gpu must be at least 1", file=sys.stderr)
        return 2
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    n_candidates = args.candidates or (len(PAPER_DIMS) if args.quick else 20)
    lams = QUICK_LAMBDAS if args.quick else FULL_LAMBDAS
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs_per_gpu)
    name = device_name(device, threads)
    rules = ["study", "converged"] if args.stopping == "both" else [args.stopping]
    watchdog = Watchdog(args.timeout, name)
    watchdog.stopping = rules[0]

    tic = time.perf_counter()
    features, generator, temperature = build_world(n_candidates, args.n_train)
    dims = sorted({x.shape[1] for x in features.values()})
    print(
        f"device {name} ({device}), torch {torch.__version__}; {n_candidates} candidates, "
        f"dims {dims}, N={args.n_train}, {len(lams)} λ, 3 folds, {threads} CPU threads per "
        f"job, generator {generator} (T={temperature:.4g}); world built in "
        f"{time.perf_counter() - tic:.1f} s"
    )
    kwargs = dict(n_train=args.n_train, lams=lams, device=device, threads=threads)
    tic = time.perf_counter()  # CUDA context, kernels and numba compilation, untimed
    watchdog.stage = "warm-up"
    first = dict(list(features.items())[:1])
    warm = {**kwargs, "n_train": 300, "lams": (1.0,)}
    one_job(first, generator, temperature, stopping=rules[0], **warm)
    print(f"warm-up (one candidate, N=300, λ=1): {time.perf_counter() - tic:.1f} s")

    lines = []
    for rule in rules:
        watchdog.stopping, watchdog.stage = rule, f"{rule} job"
        out = one_job(features, generator, temperature, stopping=rule, **kwargs)
        rate = out["fits"] / out["seconds"]
        extrapolated = out["fits"] != PAPER_FITS
        job_seconds = PAPER_FITS / rate if extrapolated else out["seconds"]
        used_gpu = out["peak_gpu_bytes"] > 0
        print(
            f"[{rule}] one job: {out['seconds']:.1f} s for {out['fits']} fits ({rate:.2f} fits/s, "
            f"{out['fit_seconds']:.1f} s inside fits, {out['iterations']:.0f} L-BFGS iterations "
            f"per fit), winner {out['winner']} (recovered: {out['recovered']}), peak GPU memory "
            f"{out['peak_gpu_bytes'] / 2**20:.0f} MiB"
        )
        if device.startswith("cuda") and not used_gpu:
            print(
                f"[{rule}] WARNING: nothing was allocated on {device}: the job ran on the CPU "
                "(run_job does not honour config.device yet?)"
            )
        what = f"extrapolated from {out['fits']} fits" if extrapolated else "measured"
        verdict = "met" if job_seconds <= GOAL_SECONDS else "not met"
        print(
            f"[{rule}] paper-scale job ({PAPER_FITS} fits): {job_seconds:.1f} s ({what}); "
            f"goal <= {GOAL_SECONDS:.0f} s: {verdict}"
        )
        if args.jobs_per_gpu > 1:
            options = {
                "candidates": n_candidates,
                "n_train": args.n_train,
                "lams": lams,
                "device": device,
                "threads": threads,
            }
            context = multiprocessing.get_context("spawn")
            tic = time.perf_counter()
            watchdog.stage = f"{args.jobs_per_gpu} concurrent {rule} jobs"
            with cf.ProcessPoolExecutor(args.jobs_per_gpu, mp_context=context) as pool:
                watchdog.pool = pool
                outs = list(
                    pool.map(
                        _child,
                        [options] * args.jobs_per_gpu,
                        range(1, args.jobs_per_gpu + 1),
                        [rule] * args.jobs_per_gpu,
                    )
                )
                watchdog.pool = None
            wall = time.perf_counter() - tic
            per_job = [o["seconds"] for o in outs]
            throughput = args.jobs_per_gpu * 3600 / max(per_job)
            print(
                f"[{rule}] {args.jobs_per_gpu} jobs at a time on {device}: {wall:.1f} s wall "
                f"(process start and world building included), jobs {min(per_job):.1f}-"
                f"{max(per_job):.1f} s each -> {throughput:.0f} jobs/h vs "
                f"{3600 / out['seconds']:.0f} jobs/h one at a time"
            )
        line = (
            f"gpu_job_seconds={job_seconds:.1f} stopping={rule} "
            f"device={name if (used_gpu or not device.startswith('cuda')) else 'cpu'} "
            f"fits={out['fits']} extrapolated={'yes' if extrapolated else 'no'}"
        )
        lines.append(line)
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
