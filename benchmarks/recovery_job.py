"""Wall time of one full-W recovery job at the paper's scale, warm starts vs cold starts.

One job: 20 candidates with the paper's feature dimensions (512 to 4096, a feature-generator
world of 1854 concepts, no images), N = 25,600 training triplets per fold, 11 λ values,
3 folds: 660 fits. Prints the job's wall time, fits per second, and the ratio against the
same fits each started cold from the identity (measured on a subset of candidates, since
the cold job is the slow baseline; the printed total is extrapolated from it).

Usage: python benchmarks/recovery_job.py [--n-train 25600] [--candidates 20] [--cold 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.calibrate import calibrate_temperature
from modelrecovery.recovery.grid import FULL_LAMBDAS, GridConfig, jobs_of
from modelrecovery.recovery.job import run_job
from modelrecovery.world import WorldConfig, generated_features, human_embedding

PAPER_DIMS = (512, 768, 1024, 2048, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=25_600)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--cold", type=int, default=3, help="candidates also run cold")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--path-only",
        action="store_true",
        help="time one candidate's λ path on one fold (warm and cold) and extrapolate",
    )
    args = parser.parse_args()

    human = human_embedding(WorldConfig(n_concepts=1854, n_dims=49, seed=0))
    dims = [PAPER_DIMS[i % len(PAPER_DIMS)] for i in range(args.candidates)]
    features = generated_features(human, dims, seed=0, noise=0.5)
    names = list(features)
    generator = names[0]
    z = features[generator].astype(np.float64)
    rng = np.random.default_rng(0)
    probe_ids = np.array([rng.choice(1854, 3, replace=False) for _ in range(2000)])
    probe_set = Triplets(probe_ids, np.zeros(len(probe_ids)), 1854)
    temperature, _ = calibrate_temperature(z, probe_set, 0.678)
    print(
        f"{args.candidates} candidates, dims {sorted(set(dims))}, N={args.n_train}, "
        f"{len(FULL_LAMBDAS)} λ, 3 folds, {args.threads} threads, generator {generator} "
        f"(T={temperature:.4g})"
    )

    if args.path_only:
        path_only(features, z, temperature, generator, args)
        return

    def job_time(candidates: list[str], warm: bool) -> tuple[float, int, object]:
        config = GridConfig(
            generators=(generator,),
            candidates=tuple(candidates),
            sizes=(args.n_train,),
            seeds=(0,),
            warm_start=warm,
            threads_per_job=args.threads,
        )
        job = jobs_of(config)[0]
        start = time.perf_counter()
        result = run_job(job, config, z, temperature, features)
        return time.perf_counter() - start, len(result.fits), result

    warm_s, warm_fits, result = job_time(names, warm=True)
    row = result.job.iloc[0]
    print(
        f"warm-started job: {warm_s:.1f} s for {warm_fits} fits "
        f"({warm_fits / warm_s:.2f} fits/s), winner {row['winner']}, "
        f"generator rank {row['generator_rank']}"
    )
    subset = names[: max(1, args.cold)]
    warm_sub = result.fits[result.fits["candidate"].isin(subset)]["seconds"].sum()
    cold_s, cold_fits, cold = job_time(subset, warm=False)
    cold_fit_s = cold.fits["seconds"].sum()
    print(
        f"cold starts on {len(subset)} candidates: {cold_fit_s:.1f} s of fitting vs "
        f"{warm_sub:.1f} s warm -> warm starts {cold_fit_s / warm_sub:.2f}x faster; "
        f"mean iterations cold {cold.fits['iterations'].mean():.0f} vs warm "
        f"{result.fits[result.fits['candidate'].isin(subset)]['iterations'].mean():.0f}"
    )
    print(f"extrapolated cold job: {warm_s * cold_fit_s / warm_sub:.0f} s")


def path_only(features, z, temperature, generator, args) -> None:
    """One fold, one candidate per feature dimension: the 11-λ path warm vs cold."""
    from modelrecovery.probe.fit import fit_probe
    from modelrecovery.probe.objective import PreparedTriplets
    from modelrecovery.probe.reduced import row_space
    from modelrecovery.recovery.job import simulate

    torch.set_num_threads(args.threads)
    config = GridConfig(
        generators=(generator,), candidates=(generator,), sizes=(args.n_train,), seeds=(0,)
    )
    fold = simulate(jobs_of(config)[0], config, z, temperature, None)[0]
    prep = PreparedTriplets.from_triplets(fold.train)
    lams = sorted(FULL_LAMBDAS, reverse=True)
    seen = set()
    total = {"warm": 0.0, "cold": 0.0}
    for x in features.values():
        if x.shape[1] in seen:
            continue
        seen.add(x.shape[1])
        x = torch.as_tensor(x)
        space = row_space(x[prep.concepts])
        for mode in ("warm", "cold"):
            theta, rows = None, []
            for lam in lams:
                fit = fit_probe(x, prep, lam=lam, space=space, init=theta)
                theta = fit.theta if mode == "warm" else None
                rows.append(f"{lam:g}:{fit.seconds:.1f}s/{fit.iterations}it")
            seconds = sum(float(r.split(":")[1].split("s")[0]) for r in rows)
            total[mode] += seconds
            print(f"  p={x.shape[1]} rank {space.rank} {mode}: {seconds:.1f} s  " + " ".join(rows))
    n = len(seen)
    print(
        f"mean λ path (11 fits) warm {total['warm'] / n:.1f} s, cold {total['cold'] / n:.1f} s "
        f"-> warm starts {total['cold'] / total['warm']:.2f}x faster; a 20-candidate, 3-fold "
        f"job ≈ {total['warm'] / n:.1f} min warm, {total['cold'] / n:.1f} min cold"
    )


if __name__ == "__main__":
    main()
