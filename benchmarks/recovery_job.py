"""Wall time of one paper-scale full-W recovery job on this machine: ours vs the study's way.

The job (method.md §4 at the paper's scale): 20 candidates with the paper's feature
dimensions (p cycling 512, 768, 1024, 2048, 4096; features generated from a 49-dim
embedding of 1854 concepts, no images), N = 25,600 training triplets per fold, 11 λ,
3 folds: 660 fits, cold starts (the study's rule; warm starts are not exact under it).

Default: a representative SAMPLE of the job's fits, extrapolated (the output says so):
fold 0, one candidate per distinct p (each stands for the 4 candidates with that p), and
all 11 λ (``--lams`` takes fewer: each sampled λ then stands for itself and the λ up to
the next sampled one; a coarse λ sample misjudges the job: with {1e-6, 1e-3, 1, 1e3} the
converged fits' time came out 1.6x the 11-λ figure at p = 768, since the cost falls
steeply from 1e-6 to 1e-4). Each sampled fit runs

- ours, under both stopping rules (``converged``: the optimum; ``study``: the study's
  loop), exactly as ``run_job`` fits: exact row-space reduction, lean L-BFGS, compiled
  kernel, the fits spread over ``--threads`` threads, each single-threaded;
- the study's way on the same data: W as a p x p matrix, autograd through all n x n
  similarities, torch's L-BFGS with the study's stopping rule, spread over the same
  threads. For p above ``--study-max-p`` it is extrapolated: the evaluations the study
  needed at the largest p run, times its measured cost per evaluation at p.

The comparison is at equal final objective, not at equal stopping rule: the study's fit
ends at objective f_s; ours is timed until its converged run first reaches f_s (or its
end). It prints per fit, per rule, the extrapolated job time for each, the ratio, and
the projection of the paper's whole grid (20 generators x 18 sizes x 30 seeds x 4
levels = 43,200 jobs, every job costed as this largest-N full-W job: an upper bound) on
one 2-core machine and on 16 with Dask. ``--busy`` repeats a part with another process
keeping one core busy. ``--full`` runs the whole job through ``run_job`` instead.

Last line: ``job_seconds=<s> study_seconds=<s> ratio=<x> extrapolated=<yes|no>``
(job_seconds: ours, converged rule; ratio = study_seconds / job_seconds).

Usage: python benchmarks/recovery_job.py [--threads 2] [--busy] [--full] [--quick]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.calibrate import calibrate_temperature
from modelrecovery.probe.fit import LBFGSSettings, StepRule, build_problem, lbfgs_minimise
from modelrecovery.probe.objective import PreparedTriplets
from modelrecovery.probe.reduced import row_space
from modelrecovery.recovery.grid import FULL_LAMBDAS, GridConfig, jobs_of
from modelrecovery.recovery.job import run_job, simulate
from modelrecovery.world import WorldConfig, generated_features, human_embedding

PAPER_DIMS = (512, 768, 1024, 2048, 4096)
SAMPLE_LAMS = FULL_LAMBDAS
QUICK_LAMS = "1e-3,1"
PAPER_JOBS = 20 * 18 * 30 * 4


@dataclass
class FitTime:
    p: int
    lam: float
    rule: str
    seconds: float
    evaluations: int
    objective: float
    trace: list[tuple[float, float]]  # (seconds since start, loss) at every evaluation


class _Recorder:
    """Wraps an objective: records the time and loss of every evaluation."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.start = time.perf_counter()
        self.trace: list[tuple[float, float]] = []

    def loss_and_grad(self, theta):
        loss, grad = self.objective.loss_and_grad(theta)
        self.trace.append((time.perf_counter() - self.start, float(loss)))
        return loss, grad


def ours(x, prep, space, lam, temperature, rule) -> FitTime:
    """One fit as run_job does it (cold, reduced), timed per evaluation."""
    start = time.perf_counter()
    problem = build_problem(
        x, prep, family="full", lam=lam, temperature=temperature, space=space, reduce=True
    )
    recorder = _Recorder(problem.objective)
    recorder.start = start
    result = lbfgs_minimise(recorder, problem.theta0, LBFGSSettings.of(rule))
    nll, reg = problem.objective.nll_and_penalty(result.theta)
    return FitTime(
        x.shape[1],
        lam,
        rule,
        time.perf_counter() - start,
        result.evaluations,
        nll + lam * reg,
        recorder.trace,
    )


def study_way(x_active, triplets_local, lam, temperature, max_evals=None) -> FitTime:
    """The study's fitting: p x p W, autograd through S, torch L-BFGS, its stopping rule.

    With ``max_evals`` it stops after that many evaluations (to measure the cost of one)."""
    start = time.perf_counter()
    p = x_active.shape[1]
    w = torch.nn.Parameter(torch.eye(p, dtype=x_active.dtype))
    ids = torch.from_numpy(triplets_local.ids.astype(np.int64))
    odd = torch.from_numpy(triplets_local.odd.astype(np.int64))
    a, b, c = ids.T
    settings = LBFGSSettings.of("study", engine="torch")
    optimiser = torch.optim.LBFGS([w], line_search_fn="strong_wolfe", **settings.lbfgs_options())
    rule = StepRule(settings)
    trace: list[tuple[float, float]] = []

    def objective() -> torch.Tensor:
        z = x_active @ w
        s = z @ z.T
        logits = torch.stack([s[b, c], s[a, c], s[a, b]], 1) / temperature
        reg = (w * w).sum() - torch.trace(w) ** 2 / p
        return torch.nn.functional.cross_entropy(logits, odd) + lam * reg

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = objective()
        loss.backward()
        trace.append((time.perf_counter() - start, float(loss.detach())))
        if max_evals is not None and len(trace) >= max_evals:
            raise StopIteration
        return loss

    try:
        for _ in range(settings.max_repeats):
            if rule.update(float(optimiser.step(closure).detach()), None):
                break
    except StopIteration:
        pass
    seconds = time.perf_counter() - start
    # the final objective in float64 with the penalty centred: the study's float32
    # ||W||^2 - tr(W)^2 / p cancels catastrophically near W = gamma I (errors of 0.03 at
    # λ = 1e3 were seen), so only the stable value is comparable with ours
    with torch.no_grad():
        w64, x64 = w.detach().double(), x_active.double()
        zz = x64 @ w64
        ss = zz @ zz.T
        logits = torch.stack([ss[b, c], ss[a, c], ss[a, b]], 1) / temperature
        centred = w64 - torch.eye(p, dtype=torch.float64) * torch.trace(w64) / p
        final = float(torch.nn.functional.cross_entropy(logits, odd) + lam * (centred**2).sum())
    return FitTime(p, lam, "study_way", seconds, len(trace), final, trace)


def time_to_reach(fit: FitTime, target: float) -> float:
    """Seconds until ``fit`` first evaluated a loss <= target (its full time otherwise)."""
    for seconds, loss in fit.trace:
        if loss <= target * (1 + 1e-7):
            return seconds
    return fit.seconds


def lam_weights(sample: tuple[float, ...]) -> dict[float, int]:
    """How many of the job's λ each sampled λ stands for (itself and those up to the next)."""
    grid = sorted(FULL_LAMBDAS)
    weights = {lam: 0 for lam in sample}
    for lam in grid:
        owner = max([s for s in sample if s <= lam * (1 + 1e-12)], default=min(sample))
        weights[owner] += 1
    return weights


def setup(n_train: int, n_candidates: int):
    human = human_embedding(WorldConfig(n_concepts=1854, n_dims=49, seed=0))
    dims = [PAPER_DIMS[i % len(PAPER_DIMS)] for i in range(n_candidates)]
    features = generated_features(human, dims, seed=0, noise=0.5)
    names = list(features)
    generator = names[0]
    z = features[generator].astype(np.float64)
    rng = np.random.default_rng(0)
    probe_ids = np.array([rng.choice(1854, 3, replace=False) for _ in range(2000)])
    temperature, _ = calibrate_temperature(
        z, Triplets(probe_ids, np.zeros(len(probe_ids)), 1854), 0.678
    )
    return features, names, generator, z, temperature


def run_parallel(tasks, threads: int) -> list:
    """Run zero-argument callables on ``threads`` threads (torch single-threaded), in order."""
    torch.set_num_threads(1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda task: task(), tasks))


def busy_process() -> subprocess.Popen:
    """Another process that keeps one core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=25_600)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="fits in parallel")
    parser.add_argument("--study-max-p", type=int, default=768)
    parser.add_argument("--lams", default=",".join(f"{v:g}" for v in SAMPLE_LAMS))
    parser.add_argument("--dims", default=",".join(str(d) for d in PAPER_DIMS))
    parser.add_argument("--quick", action="store_true", help="p 512 and 2048, λ 1e-3 and 1")
    parser.add_argument("--busy", action="store_true", help="also measure with one core busy")
    parser.add_argument("--full", action="store_true", help="run the whole job via run_job")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.lams = "512,2048", QUICK_LAMS
    sample_lams = tuple(float(v) for v in args.lams.split(","))
    sample_dims = tuple(int(v) for v in args.dims.split(","))

    features, names, generator, z, temperature = setup(args.n_train, args.candidates)
    per_dim = {d: sum(1 for x in features.values() if x.shape[1] == d) for d in PAPER_DIMS}
    print(
        f"job: {args.candidates} candidates (p {sorted(per_dim)}), N={args.n_train}, "
        f"{len(FULL_LAMBDAS)} λ, 3 folds = {args.candidates * len(FULL_LAMBDAS) * 3} fits; "
        f"generator {generator} (T={temperature:.4g}); {args.threads} threads, cold starts"
    )
    if args.full:
        config = GridConfig(
            generators=(generator,),
            candidates=tuple(names),
            sizes=(args.n_train,),
            seeds=(0,),
            threads_per_job=args.threads,
        )
        start = time.perf_counter()
        result = run_job(jobs_of(config)[0], config, z, temperature, features)
        seconds = time.perf_counter() - start
        print(f"whole job (converged rule): {seconds:.0f} s, winner {result.job.iloc[0]['winner']}")
        print(f"job_seconds={seconds:.1f} study_seconds=nan ratio=nan extrapolated=no")
        return

    config = GridConfig(
        generators=(generator,), candidates=(generator,), sizes=(args.n_train,), seeds=(0,)
    )
    fold = simulate(jobs_of(config)[0], config, z, temperature, None)[0]
    prep = PreparedTriplets.from_triplets(fold.train)
    concepts = prep.concepts.numpy()
    local = np.searchsorted(concepts, fold.train.ids)
    train_local = Triplets(local, fold.train.odd, len(concepts))
    xs = {}
    for x in features.values():
        if x.shape[1] in sample_dims and x.shape[1] not in xs:
            xt = torch.as_tensor(x)
            xs[x.shape[1]] = (xt, row_space(xt[prep.concepts]))
    weights = lam_weights(sample_lams)
    print(
        f"sample: fold 0, p {sorted(xs)} (each for its {per_dim[sample_dims[0]]} candidates), "
        f"λ {list(sample_lams)} standing for {[weights[v] for v in sample_lams]} λ each; "
        "EXTRAPOLATED to the job"
    )

    def our_tasks(rule):
        return [
            (lambda x=x, s=s, lam=lam: ours(x, prep, s, lam, temperature, rule))
            for p, (x, s) in sorted(xs.items())
            for lam in sample_lams
        ]

    results: dict[str, list[FitTime]] = {}
    for rule in ("converged", "study"):
        start = time.perf_counter()
        results[rule] = run_parallel(our_tasks(rule), args.threads)
        print(f"  ours/{rule}: sample wall {time.perf_counter() - start:.1f} s")
    study_dims = [p for p in sorted(xs) if p <= args.study_max_p]
    study_tasks = [
        (lambda p=p, lam=lam: study_way(xs[p][0][prep.concepts], train_local, lam, temperature))
        for p in study_dims
        for lam in sample_lams
    ]
    start = time.perf_counter()
    study = run_parallel(study_tasks, args.threads)
    wall = time.perf_counter() - start
    print(f"  study's way (p <= {args.study_max_p}): sample wall {wall:.1f} s")
    study_by = {(f.p, f.lam): f for f in study}
    extrapolated_study = False
    for p in sorted(xs):
        if p in study_dims:
            continue
        extrapolated_study = True
        probe = study_way(xs[p][0][prep.concepts], train_local, sample_lams[-1], temperature, 3)
        per_eval = probe.seconds / probe.evaluations
        for lam in sample_lams:
            ref = study_by[(max(study_dims), lam)]
            study_by[(p, lam)] = FitTime(
                p, lam, "study_way*", ref.evaluations * per_eval, ref.evaluations, math.nan, []
            )

    print("\n   p        λ |  ours converged       |  ours study rule      |  study's way")
    totals = {"converged": 0.0, "study": 0.0, "study_way": 0.0, "equal_objective": 0.0}
    conv_by = {(f.p, f.lam): f for f in results["converged"]}
    rule_by = {(f.p, f.lam): f for f in results["study"]}
    for key in sorted(conv_by):
        p, lam = key
        weight = per_dim[p] * weights[lam] * 3
        c, r, s = conv_by[key], rule_by[key], study_by[key]
        reach = time_to_reach(c, s.objective) if math.isfinite(s.objective) else c.seconds
        totals["converged"] += weight * c.seconds
        totals["study"] += weight * r.seconds
        totals["study_way"] += weight * s.seconds
        totals["equal_objective"] += weight * reach
        mark = "*" if s.rule.endswith("*") else " "
        print(
            f"{p:5d} {lam:8.0e} | {c.seconds:6.1f} s {c.evaluations:5d} ev "
            f"{c.objective:.6g} | {r.seconds:6.1f} s {r.evaluations:5d} ev {r.objective:.6g} "
            f"| {s.seconds:7.1f} s{mark}{s.evaluations:5d} ev {s.objective:.6g}"
        )
    job = {k: v / args.threads for k, v in totals.items()}
    note = f" (* p > {args.study_max_p}: extrapolated)" if extrapolated_study else ""
    print(
        f"\nextrapolated job on {args.threads} threads: ours converged {job['converged']:.0f} s, "
        f"ours study rule {job['study']:.0f} s, study's way {job['study_way']:.0f} s{note}"
    )
    print(
        f"at equal final objective (ours converged until it reaches the study's objective): "
        f"{job['equal_objective']:.0f} s -> {job['study_way'] / job['equal_objective']:.1f}x; "
        f"ours to convergence vs the study's way: {job['study_way'] / job['converged']:.1f}x"
    )
    for machines, label in ((1, "one 2-core machine"), (16, "16 machines with Dask")):
        days = {k: PAPER_JOBS * job[k] / machines / 86400 for k in ("converged", "study")}
        print(
            f"paper grid ({PAPER_JOBS} jobs, each <= this one) on {label}: <= "
            f"{days['converged']:.0f} days converged, {days['study']:.0f} days study rule"
        )

    if args.busy:
        part = [t for t in our_tasks("converged")][: len(sample_lams)]  # the smallest p
        idle_start = time.perf_counter()
        run_parallel(part, args.threads)
        idle = time.perf_counter() - idle_start
        hog = busy_process()
        try:
            time.sleep(1)
            busy_start = time.perf_counter()
            run_parallel(part, args.threads)
            busy = time.perf_counter() - busy_start
        finally:
            hog.kill()
        print(
            f"one core busy with another process (p={min(xs)}, {len(part)} fits): "
            f"{busy:.1f} s vs {idle:.1f} s idle -> {busy / idle:.2f}x"
        )
    print(
        f"job_seconds={job['converged']:.1f} study_seconds={job['study_way']:.1f} "
        f"ratio={job['study_way'] / job['converged']:.2f} extrapolated=yes"
    )


if __name__ == "__main__":
    main()
