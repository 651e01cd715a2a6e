"""How close the study-rule fits stay to the study's own p x p loop in float32: the p x p
fit, the p x p path computed in the row space (reduction ``path``) and the reduction at the
optimum (``always``), over planted p > n cases, and what each costs.

The reference is ``tests/study_loop.py``: the study's loop transcribed in plain torch
(autograd, torch's L-BFGS, the per-step reshuffle). In float32 the study's early stop
(tolerance_change 1e-4 on the loss and on max |step|) turns rounding into visibly different
stopping points, so even two p x p implementations differ; that spread is the float noise
against which the path reduction is judged (it is exact in float64: tested).

Cases: seeds x λ in {1e-4, 1e-2, 1} on features of rank n < p (a planted 5-dim embedding
plus nuisance dimensions), N training triplets. Prints, per method, the median and maximum
over cases of max |W - W_loop| and of the held-out accuracy difference, and the mean time.
``--timing P`` adds one fit at the paper's scale (865 training concepts, p = P, N = 25,600)
per method.

Usage: python benchmarks/study_path.py [--seeds 6] [--n 100] [--p 126] [--m 3000]
       [--timing 2048] [--lams 1e-3,1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import planted_triplets  # noqa: E402
from modelrecovery.probe.fit import LBFGSSettings, fit_probe  # noqa: E402
from study_loop import study_loop  # noqa: E402

METHODS = {"pxp (lean)": "never", "pxp (torch)": "never", "path": "path", "always": "always"}


def case(seed: int, n: int, p: int, m: int):
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=(2 * n, 5))
    x = np.concatenate([embedding, 0.3 * rng.normal(size=(2 * n, p - 5))], 1) / 3
    every = planted_triplets(embedding, 4 * m, seed + 1)
    train_rows = np.flatnonzero((every.ids < n).all(1))[:m]
    test_rows = np.flatnonzero((every.ids >= n).all(1))[: m // 4]
    return x, every.subset(train_rows), every.subset(test_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--n", type=int, default=100, help="training concepts (rank)")
    parser.add_argument("--p", type=int, default=126)
    parser.add_argument("--m", type=int, default=3000, help="training triplets")
    parser.add_argument("--lams", default="1e-4,1e-2,1")
    parser.add_argument("--timing", type=int, default=0, help="p of one paper-scale fit")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    lams = [float(v) for v in args.lams.split(",")]
    dw = {k: [] for k in METHODS}
    dacc = {k: [] for k in METHODS}
    to_pxp = {k: [] for k in METHODS if k != "pxp (lean)"}
    seconds = {k: [] for k in ["loop", *METHODS]}
    for seed in range(args.seeds):
        x, train, test = case(seed, args.n, args.p, args.m)
        for lam in lams:
            start = time.perf_counter()
            w_loop = study_loop(x, train.ids, train.odd, lam, dtype=dtype).w
            seconds["loop"].append(time.perf_counter() - start)
            z = torch.as_tensor(x, dtype=dtype) @ w_loop
            from modelrecovery.probe.fit import accuracy_and_nll

            acc_loop = accuracy_and_nll(z, test)["accuracy"]
            for name, reduction in METHODS.items():
                engine = "torch" if "torch" in name else "auto"
                settings = LBFGSSettings.of("study", engine=engine, reshuffle=True)
                start = time.perf_counter()
                fitted = fit_probe(
                    x, train, lam=lam, settings=settings, dtype=dtype, reduce=reduction
                )
                seconds[name].append(time.perf_counter() - start)
                dw[name].append(float((fitted.matrix() - w_loop).abs().max()))
                if name == "pxp (lean)":
                    w_pxp = fitted.matrix()
                else:
                    to_pxp[name].append(float((fitted.matrix() - w_pxp).abs().max()))
                dacc[name].append(abs(fitted.evaluate(x, test)["accuracy"] - acc_loop))
    print(
        f"{args.seeds} seeds x λ {lams}: n = {args.n} training concepts, p = {args.p}, "
        f"N = {args.m}; {args.dtype}, the study's rule with its reshuffle; against the loop"
    )
    print(
        f"{'method':12s} | max|W - W_loop|: median      max  <1e-3 | to pxp (lean): median  "
        "<1e-3 | held-out acc diff: median    max | s/fit"
    )
    for name in METHODS:
        w, a = np.array(dw[name]), np.array(dacc[name])
        t = np.array(to_pxp.get(name, [0.0]))
        print(
            f"{name:12s} | {np.median(w):23.2e} {w.max():8.2e} {np.mean(w < 1e-3):6.0%} | "
            f"{np.median(t):21.2e} {np.mean(t < 1e-3):6.0%} | {np.median(a):24.4f} "
            f"{a.max():6.4f} | {np.mean(seconds[name]):.3f}"
        )
    print(f"{'loop':12s} | {'':26s} | {'':30s} | {np.mean(seconds['loop']):.3f}")
    if args.timing:
        timing(args.timing)


def paper_scale_fold(p: int):
    """Features of 1854 concepts (p columns) and 25,600 training triplets among 865 of them
    with responses from a planted 49-dim embedding."""
    from modelrecovery.data.triplets import Triplets
    from modelrecovery.probe.fit import triplet_probabilities
    from modelrecovery.world import WorldConfig, generated_features, human_embedding

    human = human_embedding(WorldConfig(n_concepts=1854, n_dims=49, seed=0))
    x = next(iter(generated_features(human, [p], seed=0, noise=0.5).values()))
    rng = np.random.default_rng(0)
    concepts = rng.permutation(1854)[:865]
    ids = np.stack([rng.choice(concepts, 3, replace=False) for _ in range(25_600)])
    z = torch.as_tensor(human, dtype=torch.float64)
    probs = triplet_probabilities(z, Triplets(ids, np.zeros(len(ids)), 1854), 0.05)
    odd = (rng.random(len(ids))[:, None] > np.cumsum(probs, 1)).sum(1).clip(0, 2)
    return x, Triplets(ids, odd, 1854)


def timing(p: int) -> None:
    """One fit at the paper's scale per method (λ = 1e-3 and 1), single-threaded."""
    x, train = paper_scale_fold(p)
    print(f"\npaper scale: 865 training concepts, p = {p}, N = 25,600, one thread")
    for lam in (1e-3, 1.0):
        for name in ("pxp (lean)", "path", "always"):
            start = time.perf_counter()
            fitted = fit_probe(
                x,
                train,
                lam=lam,
                settings=LBFGSSettings.of("study", reshuffle=True),
                dtype=torch.float32,
                reduce=METHODS[name],
            )
            print(
                f"  λ={lam:g} {name:11s}: {time.perf_counter() - start:6.1f} s, "
                f"{fitted.evaluations} evaluations, objective {fitted.train_objective:.6f}"
            )


if __name__ == "__main__":
    main()
