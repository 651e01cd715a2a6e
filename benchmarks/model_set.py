"""The default model set on the default world: extraction time, probe accuracies, RDM spread.

For every model: feature dimension p, zero-shot accuracy on the held-out human test set (the
world's repeated noise-ceiling set), and diagonal, rectangular (p x k) and full probe
accuracy on it, each with λ chosen by cross-validation on the human training triplets
(scalar shrinkage, 3 folds over triplets, λ in {1e-2, 1, 100}, ties to the smaller λ) and
refitted on all of them. Then the pairwise RDM correlations (correlation distance).

    python benchmarks/model_set.py                 # the whole table (a few minutes)
    python benchmarks/model_set.py --no-probes     # extraction time and RDMs only
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from modelrecovery.features.io import load_features
from modelrecovery.probe import accuracy_and_nll, fit_probe
from modelrecovery.probe.crossval import CrossValidation, make_folds, select_lambda
from modelrecovery.study.inputs import load_human_data
from modelrecovery.world import WorldConfig, build_world
from modelrecovery.world.model_report import rdm_correlations
from modelrecovery.world.models import (
    SUGGESTED_RECTANGULAR_K,
    model_metadata,
    world_model_features,
)


def probe_accuracy(features, human, family, k, lams, n_folds, seed=0):
    """(held-out test accuracy, chosen λ) of one probe family, λ by cross-validation."""
    options = {"family": family, "regulariser": "scalar_shrinkage"}
    if family == "rectangular":
        options["k"] = k
    folds = make_folds(human.train, n_folds, seed, "triplets")
    cv = CrossValidation(features, human.train, folds, **options)
    scores = [np.mean([cv.fold_scores(f, lam)["accuracy"] for f in range(n_folds)]) for lam in lams]
    lam = select_lambda(lams, scores)
    fitted = fit_probe(features, human.train, lam=lam, **options)
    return fitted.evaluate(features, human.test)["accuracy"], lam


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", default=None, help="worlds folder (default: data/worlds)")
    parser.add_argument(
        "--k", type=int, nargs="+", default=[SUGGESTED_RECTANGULAR_K], help="rectangular k"
    )
    parser.add_argument("--lams", type=float, nargs="+", default=[1e-2, 1.0, 100.0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--no-probes", action="store_true", help="skip the probe fits")
    args = parser.parse_args(argv)

    world = build_world(WorldConfig(), args.root)
    human = load_human_data(world.triplets_path, n_concepts=world.n_concepts)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; world {world.root.name}: "
        f"{world.n_concepts} concepts, {world.config.n_dims} human dims, {len(human.train)} "
        f"training triplets, test set {len(human.test)} responses, noise ceiling "
        f"{world.realised_ceiling:.4f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-model-set-") as cache:
        t0, c0 = time.perf_counter(), time.process_time()
        world_model_features(world, progress=False, cache_dir=cache)
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    paths = world_model_features(world, progress=False)
    cached = time.perf_counter() - t0
    print(
        f"extraction of the whole set: {cold:.1f} s from scratch ({cold_cpu:.1f} s CPU, imports "
        f"included), {cached:.1f} s when cached"
    )
    feats = {m: load_features(p, concept_ids=world.concept_ids) for m, p in paths.items()}
    meta = model_metadata(n_dims=world.config.n_dims)

    ceiling = world.realised_ceiling
    human_zs = accuracy_and_nll(torch.as_tensor(world.human_embedding), human.test)["accuracy"]
    print(f"human embedding itself on the test set: {human_zs:.3f}")
    rect = " | ".join(f"rect. k={k}" for k in args.k)
    print(f"| model | p | params | zero-shot | diagonal | {rect} | full | full/ceiling |")
    print("|" + "---|" * (7 + len(args.k)))
    rows = []
    for name, x in feats.items():
        t0 = time.perf_counter()
        zs = accuracy_and_nll(torch.as_tensor(x, dtype=torch.float64), human.test)["accuracy"]
        cells = [f"{zs:.3f}"]
        accs = {}
        if not args.no_probes:
            levels = [("diagonal", None)] + [("rectangular", k) for k in args.k] + [("full", None)]
            for family, k in levels:
                acc, lam = probe_accuracy(x, human, family, k, args.lams, args.folds)
                accs[family] = acc
                cells.append(f"{acc:.3f} (λ {lam:g})")
        ratio = f"{accs['full'] / ceiling:.2f}" if accs else ""
        params = meta[name]["n_parameters"] / 1e6
        print(
            f"| {name} | {x.shape[1]} | {params:.1f}M | " + " | ".join(cells) + f" | {ratio} |"
            f"  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        rows.append((zs, accs))
    if rows and not args.no_probes:
        zs = np.array([r[0] for r in rows])
        full = np.array([r[1]["full"] for r in rows])
        print(
            f"zero-shot {zs.min():.3f}-{zs.max():.3f}; full {full.min():.3f}-{full.max():.3f}; "
            f"{int((full >= 0.9 * ceiling).sum())}/{len(full)} full probes >= 0.9 x ceiling "
            f"({0.9 * ceiling:.3f})"
        )
    corr = rdm_correlations(feats)
    iu = np.triu_indices(len(corr), 1)
    pairs = corr.to_numpy()[iu]
    top = int(np.argmax(pairs))
    print(
        f"RDM correlations (correlation distance) min {pairs.min():.2f}, median "
        f"{np.median(pairs):.2f}, max {pairs.max():.2f} ({corr.index[iu[0][top]]} vs "
        f"{corr.index[iu[1][top]]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
