"""Speed and memory of the probe objective against a straightforward autograd baseline.

Prints, per case, seconds per loss+gradient evaluation and the peak memory added by one
evaluation (each part runs in a fresh process so peaks do not mix), and their ratios:

1. fitting human data at the paper's scale: n = 1854 concepts, p = 768, 4.2M triplets;
   also the dense matrix products alone (Z = XW, S = ZZ^T, (G + G^T) Z, X^T dZ);
2. a recovery fit: N = 25,600 triplets among 865 training concepts, p = 2048 (our
   objective uses the row-space reduction and the per-triplet path), plus the wall
   time and evaluation count of one converged full-W fit.

The baseline is how the published scripts do it: W as a linear layer, all n x n
similarities, a gather per triplet, cross-entropy, backward by autograd.

Each part's figure is the median of ``--repeats`` evaluations in its process. This
machine's speed drifts by 20-40 % within minutes, and the parts run minutes apart, so
``--rounds R`` (default 3) runs the parts R times in rotating order and the ratios are
taken per round (each against the baseline and products of the same round) and their
median reported; the seconds shown are medians over rounds.

Usage: python benchmarks/probe_objective.py [--quick] [--repeats R] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time

import numpy as np
import torch

from modelrecovery.data import Triplets
from modelrecovery.probe import Family, PreparedTriplets, build_problem, fit_probe

CASES = {
    "human": dict(n=1854, p=768, m=4_200_000, n_active=1854),
    "recovery": dict(n=1854, p=2048, m=25_600, n_active=865),
}
QUICK = {
    "human": dict(n=1854, p=768, m=420_000, n_active=1854),
    "recovery": dict(n=1854, p=2048, m=25_600, n_active=865),
}
LAM = 0.01


def make_data(n: int, p: int, m: int, n_active: int, seed: int = 0):
    """Features (n x p), and m random triplets among the first n_active shuffled concepts
    with responses from a planted full-W model."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, p)) / np.sqrt(p)).astype(np.float32)
    active = rng.permutation(n)[:n_active]
    ids = active[rng.integers(0, n_active, size=(int(m * 1.1), 3))]
    ok = (ids[:, 0] != ids[:, 1]) & (ids[:, 0] != ids[:, 2]) & (ids[:, 1] != ids[:, 2])
    ids = ids[ok][:m]
    w = (np.eye(p) * 3 + rng.normal(size=(p, p)) / np.sqrt(p)).astype(np.float32)
    z = torch.from_numpy(x @ w)
    s = z @ z.T
    a, b, c = (torch.from_numpy(ids[:, i].astype(np.int64)) for i in range(3))
    logits = torch.stack([s[b, c], s[a, c], s[a, b]], 1)
    probs = torch.softmax(logits, 1).numpy()
    odd = (rng.random(len(ids))[:, None] > probs.cumsum(1)).sum(1).clip(0, 2)
    return torch.from_numpy(x), Triplets(ids.astype(np.int32), odd, n)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def timed(fn, repeats: int) -> tuple[float, float]:
    """Seconds per call (median over ``repeats``: this machine's speed varies from one
    second to the next) and the peak resident memory (MB) a call adds above the level
    before it (sampled every millisecond by a thread)."""
    fn()  # warm-up (compilation, caches)
    before = current_rss_mb()
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mb())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    done.set()
    watcher.join()
    return seconds, peak[0] - before


def part_ours(case: dict, repeats: int) -> dict:
    x, triplets = make_data(**case)
    start = time.perf_counter()
    problem = build_problem(x, triplets, family="full", lam=LAM)
    setup = time.perf_counter() - start
    objective, theta = problem.objective, problem.theta0 + 0.01
    seconds, peak = timed(lambda: objective.loss_and_grad(theta), repeats)
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "setup_seconds": setup,
        "path": objective.path,
        "fit_dim": int(theta.shape[0]),
    }


def part_products(case: dict, repeats: int) -> dict:
    x, _ = make_data(**case)
    p = x.shape[1]
    w = torch.eye(p) + 0.01
    g = torch.randn(x.shape[0], x.shape[0]) * 1e-6

    def products():
        z = x @ w
        s = z @ z.T
        dz = (g + g.T) @ z
        return s, x.T @ dz

    seconds, peak = timed(products, repeats)
    return {"seconds": seconds, "peak_mb": peak}


def part_baseline(case: dict, repeats: int) -> dict:
    x, triplets = make_data(**case)
    p = x.shape[1]
    layer = torch.nn.Linear(p, p, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(p) + 0.01)
    ids = torch.from_numpy(triplets.ids.astype(np.int64))
    odd = torch.from_numpy(triplets.odd.astype(np.int64))

    def step():
        layer.zero_grad()
        z = layer(x)
        s = z @ z.T
        a, b, c = ids.T
        logits = torch.stack([s[b, c], s[a, c], s[a, b]], dim=1)
        w = layer.weight
        reg = (w**2).sum() - torch.trace(w) ** 2 / p
        loss = torch.nn.functional.cross_entropy(logits, odd) + LAM * reg
        loss.backward()
        return loss

    seconds, peak = timed(step, repeats)
    return {"seconds": seconds, "peak_mb": peak}


def part_fit(case: dict, repeats: int) -> dict:
    x, triplets = make_data(**case)
    start = time.perf_counter()
    fit = fit_probe(x, triplets, family="full", lam=LAM)
    return {
        "seconds": time.perf_counter() - start,
        "evaluations": fit.evaluations,
        "iterations": fit.iterations,
        "converged": fit.converged,
        "reduced_rank": None if fit.space is None else fit.space.rank,
        "path": fit.path,
    }


PARTS = {"ours": part_ours, "products": part_products, "baseline": part_baseline, "fit": part_fit}


def _median_result(runs: list[dict]) -> dict:
    """One part's rounds: the median seconds, the largest peak, the first run's details."""
    out = dict(runs[0])
    out["seconds"] = float(np.median([r["seconds"] for r in runs]))
    if "peak_mb" in out:
        out["peak_mb"] = max(r["peak_mb"] for r in runs)
    return out


def _listed(values: list[float], unit: str, digits: int = 2) -> str:
    listed = ", ".join(f"{v:.{digits}f}{unit}" for v in values)
    return f"{listed}; median {np.median(values):.{digits}f}{unit}"


def run_part(case_name: str, part: str, quick: bool, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--case", case_name, "--repeats", str(repeats)]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="case 1 with 420k triplets")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds of the parts")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = QUICK if args.quick else CASES
    if args.part:
        torch.manual_seed(0)
        print(json.dumps(PARTS[args.part](cases[args.case], args.repeats)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, lambda={LAM}")
    _ = Family, PreparedTriplets  # documented API used by the parts
    for name, case in cases.items():
        print(f"\ncase {name}: {case}")
        parts = ["ours", "baseline"] + (["products"] if name == "human" else [])
        rounds: dict[str, list[dict]] = {part: [] for part in parts}
        for r in range(max(args.rounds, 1)):
            for part in parts[r % len(parts) :] + parts[: r % len(parts)]:
                rounds[part].append(run_part(name, part, args.quick, args.repeats))
        results = {part: _median_result(runs) for part, runs in rounds.items()}
        if name != "human":
            results["fit"] = run_part(name, "fit", args.quick, args.repeats)
        ours, base = results["ours"], results["baseline"]
        speedups = [
            b["seconds"] / o["seconds"]
            for o, b in zip(rounds["ours"], rounds["baseline"], strict=True)
        ]
        for part, runs in rounds.items():
            print(f"  per round: {part} {_listed([r['seconds'] for r in runs], ' s', 3)}")
        print(f"  per round: ours / baseline speed-up {_listed(speedups, 'x')}")
        if "products" in rounds:
            over = [
                o["seconds"] / q["seconds"]
                for o, q in zip(rounds["ours"], rounds["products"], strict=True)
            ]
            print(f"  per round: ours / products {_listed(over, '')}")
        print(
            f"  ours     {ours['seconds']:.4f} s/eval  peak +{ours['peak_mb']:.0f} MB"
            f"  (path {ours['path']}, fit dim {ours['fit_dim']},"
            f" setup {ours['setup_seconds']:.2f} s)"
        )
        print(f"  baseline {base['seconds']:.4f} s/eval  peak +{base['peak_mb']:.0f} MB")
        print(
            f"  speed-up vs baseline {np.median(speedups):.1f}x (median of per-round ratios), "
            f"memory ratio {base['peak_mb'] / max(ours['peak_mb'], 1):.1f}x"
        )
        if "products" in results:
            prod = results["products"]
            print(
                f"  products alone {prod['seconds']:.4f} s  -> ours / products = "
                f"{np.median(over):.2f} (median of per-round ratios)"
            )
        if "fit" in results:
            fit = results["fit"]
            print(
                f"  converged full-W fit: {fit['seconds']:.2f} s, {fit['evaluations']} evaluations,"
                f" {fit['iterations']} iterations, converged={fit['converged']},"
                f" reduced rank {fit['reduced_rank']}, path {fit['path']}"
            )


if __name__ == "__main__":
    main()
