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

- ours, exactly as ``run_job`` fits (lean L-BFGS, compiled kernel, the fits spread over
  ``--threads`` threads, each single-threaded), under these rules (``--rules``):
  ``converged`` (the optimum, with the exact row-space reduction), ``study`` (the study's
  loop, the default: its p x p path computed in the row space), ``study_pxp`` (the same
  path as p x p matrices: the study's own computation) and ``study_reduced`` (the study's
  rule on the reduction at the optimum: another path, what ``run_job`` did before);
- the study's way on the same data: W as a p x p matrix, autograd through all n x n
  similarities, torch's L-BFGS with the study's stopping rule, spread over the same
  threads. For p above ``--study-max-p`` it is extrapolated: its measured cost per
  evaluation at p times the evaluations of ours under the study's rule at p (the same
  path), or, when that rule was not run, those it needed at the largest p it ran.

The comparison is at equal final objective, not at equal stopping rule: the study's fit
ends at objective f_s; ours is timed until its converged run first reaches f_s (or its
end). It prints per fit, per rule, the extrapolated job time for each, the ratio, and
the projection of the paper's whole grid (20 generators x 18 sizes x 30 seeds x 4
levels = 43,200 jobs, every job costed as this largest-N full-W job: an upper bound) on
one 2-core machine and on 16 with Dask. ``--busy`` repeats a part with another process
keeping one core busy. ``--full`` runs the whole job through ``run_job`` instead.

Last line: ``job_seconds=<s> study_seconds=<s> ratio=<x> extrapolated=<yes|no>`` followed by
``study_rule_seconds=<s> pxp_seconds=<s> reduced_seconds=<s>`` (job_seconds: ours, converged
rule; ratio = study_seconds / job_seconds; the others: ours under the study's rule as
computed by default, as p x p, on the reduction at the optimum; nan when not run).

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
from modelrecovery.probe.lbfgs import COORDINATES
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

    def reshuffle(self, step: int) -> None:
        self.objective.reshuffle(step)

    def loss_and_grad(self, theta):
        loss, grad = self.objective.loss_and_grad(theta)
        self.trace.append((time.perf_counter() - self.start, float(loss)))
        return loss, grad


# our rules: (stopping rule, reduction)
RULES = {
    "converged": ("converged", "auto"),
    "study": ("study", "auto"),
    "study_pxp": ("study", "never"),
    "study_reduced": ("study", "always"),
}


def ours(x, prep, space, lam, temperature, rule) -> FitTime:
    """One fit as run_job does it (cold), timed per evaluation."""
    stopping, reduction = RULES[rule]
    start = time.perf_counter()
    problem = build_problem(
        x,
        prep,
        family="full",
        lam=lam,
        temperature=temperature,
        space=space,
        reduce=reduction,
        stopping=stopping,
    )
    recorder = _Recorder(problem.objective)
    recorder.start = start
    recorder.geometry = getattr(problem.objective, "geometry", None) or COORDINATES
    result = lbfgs_minimise(recorder, problem.theta0, LBFGSSettings.of(stopping))
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
    parser.add_argument("--rules", default=",".join(RULES), help=f"of {', '.join(RULES)}")
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

    rules = [r for r in args.rules.split(",") if r]
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        parser.error(f"--rules: unknown {unknown} (known: {list(RULES)})")
    results: dict[str, list[FitTime]] = {}
    for rule in rules:
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
        # the study's way follows the same path as ours p x p (or its row-space form):
        # their evaluation count at p, else the count at the largest p the study's way ran
        same_path = next((r for r in ("study_pxp", "study") if r in results), None)
        for lam in sample_lams:
            if same_path is not None:
                count = next(f for f in results[same_path] if (f.p, f.lam) == (p, lam)).evaluations
            else:
                count = study_by[(max(study_dims), lam)].evaluations
            study_by[(p, lam)] = FitTime(
                p, lam, "study_way*", count * per_eval, count, math.nan, []
            )

    print("\n   p        λ | " + " | ".join(f"{r:24s}" for r in rules) + " | study's way")
    totals = {rule: 0.0 for rule in rules} | {"study_way": 0.0, "equal_objective": 0.0}
    by_rule = {rule: {(f.p, f.lam): f for f in results[rule]} for rule in rules}
    for key in sorted(study_by):
        if key not in by_rule[rules[0]]:
            continue
        p, lam = key
        weight = per_dim[p] * weights[lam] * 3
        s = study_by[key]
        cells = []
        for rule in rules:
            f = by_rule[rule][key]
            totals[rule] += weight * f.seconds
            cells.append(f"{f.seconds:6.1f} s {f.evaluations:5d} ev {f.objective:.6g}")
        totals["study_way"] += weight * s.seconds
        if "converged" in rules:
            c = by_rule["converged"][key]
            reach = time_to_reach(c, s.objective) if math.isfinite(s.objective) else c.seconds
            totals["equal_objective"] += weight * reach
        mark = "*" if s.rule.endswith("*") else " "
        print(
            f"{p:5d} {lam:8.0e} | "
            + " | ".join(f"{c:24s}" for c in cells)
            + f" | {s.seconds:7.1f} s{mark}{s.evaluations:5d} ev {s.objective:.6g}"
        )
    job = {k: v / args.threads for k, v in totals.items()}
    note = f" (* p > {args.study_max_p}: extrapolated)" if extrapolated_study else ""
    print(
        f"\nextrapolated job on {args.threads} threads: "
        + ", ".join(f"ours {rule} {job[rule]:.0f} s" for rule in rules)
        + f", study's way {job['study_way']:.0f} s{note}"
    )
    if "converged" in rules:
        print(
            f"at equal final objective (ours converged until it reaches the study's "
            f"objective): {job['equal_objective']:.0f} s -> "
            f"{job['study_way'] / job['equal_objective']:.1f}x; ours to convergence vs the "
            f"study's way: {job['study_way'] / job['converged']:.1f}x"
        )
    for machines, label in ((1, "one 2-core machine"), (16, "16 machines with Dask")):
        days = {k: PAPER_JOBS * job[k] / machines / 86400 for k in rules}
        print(
            f"paper grid ({PAPER_JOBS} jobs, each <= this one) on {label}: <= "
            + ", ".join(f"{days[k]:.0f} days {k}" for k in rules)
        )

    if args.busy:
        part = [t for t in our_tasks(rules[0])][: len(sample_lams)]  # the smallest p
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
    nan = float("nan")
    converged = job.get("converged", nan)
    print(
        f"job_seconds={converged:.1f} study_seconds={job['study_way']:.1f} "
        f"ratio={job['study_way'] / converged:.2f} extrapolated=yes "
        f"study_rule_seconds={job.get('study', nan):.1f} "
        f"pxp_seconds={job.get('study_pxp', nan):.1f} "
        f"reduced_seconds={job.get('study_reduced', nan):.1f}"
    )


if __name__ == "__main__":
    main()
