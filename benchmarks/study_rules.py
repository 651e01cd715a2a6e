"""What the study's rules change, measured: stopping rule (converged vs the study's) and
warm vs cold starts, on the default study and on a paper-scale sample.

Default study (``--world``, the default): runs the recover stage three times on the same
world, features and generators (reused from the first run, or from ``make recover``),
changing only the recovery grid's stopping rule or its starts:

  base            the default study (grid.stopping=study, cold starts)
  converged       grid.stopping=converged                   (fits to the optimum)
  converged-warm  grid.stopping=converged grid.warm_start=true (λ path strong to weak)

(converged vs base: what the stopping rule changes; converged-warm vs converged: whether
warm starts reach the same optimum; under the study's rule they cannot, since where it
stops depends on where it starts.)

and prints, matching jobs on (level, generator, N, seed): the share of jobs whose winner
differs, whose selected λ differs for at least one candidate, and (warm vs cold) the
largest relative difference of the final training objective over all fits and the share
of fits differing by more than 1e-5.

Paper scale (``--paper``): one simulated job's first fold at N = 25,600 among 1854
concepts (features generated from a 49-dimensional embedding, p = 512 and 768; the
SPoSE-49 embedding from ../shared/data/things when present), full W, a sample of λ:
every candidate fitted cold and warm, under the converged rule, and cold under the
study's rule; prints objectives, selected λ and the fold's winner for each.

Usage: python benchmarks/study_rules.py [--world] [--paper] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

KEYS = ["level", "generator", "n_train", "seed"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "things"


def _selected(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.pivot_table(index=KEYS, columns="candidate", values="best_lam")


def compare(base: dict, other: dict, name: str) -> dict:
    """Jobs matched on (level, generator, N, seed): winners, selected λ, objectives."""
    a = base["jobs"].set_index(KEYS)["winner"]
    b = other["jobs"].set_index(KEYS)["winner"].reindex(a.index)
    lam_a, lam_b = (
        _selected(base["scores"]),
        _selected(other["scores"]).reindex(_selected(base["scores"]).index),
    )
    lam_differs = (lam_a != lam_b).any(axis=1)
    out = {
        "variant": name,
        "jobs": len(a),
        "winner_differs": float((a != b).mean()),
        "lam_differs": float(lam_differs.mean()),
        "winner_or_lam_differs": float(((a != b) | lam_differs.reindex(a.index)).mean()),
    }
    per_level = (a != b).groupby(level="level").mean()
    for level, value in per_level.items():
        out[f"winner_differs_{level}"] = float(value)
    fit_keys = ["level", "generator", "n_train", "seed", "candidate", "lam", "fold"]
    fa = base["fits"].set_index(fit_keys)["train_objective"]
    fb = other["fits"].set_index(fit_keys)["train_objective"].reindex(fa.index)
    rel = ((fb - fa) / fa.abs()).dropna()
    out["objective_rel_diff_max"] = float(rel.abs().max())
    out["objective_rel_diff_median"] = float(rel.median())
    out["fits_over_1e-5"] = float((rel.abs() > 1e-5).mean())
    return out


def world(overrides: list[str]) -> None:
    from modelrecovery.config import split_overrides
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import run_study
    from modelrecovery.study.spec import load_spec

    variants = {
        "base": [],
        "converged": ["grid.stopping=converged"],
        "converged-warm": ["grid.stopping=converged", "grid.warm_start=true"],
    }
    tables, seconds = {}, {}
    for name, extra in variants.items():
        spec = load_spec("default", split_overrides(overrides) + extra)
        tic = time.perf_counter()
        # in MLflow, so the generators of the first run (or of `make recover`) are reused
        result = run_study(spec, MLflowTracker(spec.study), progress=False)
        seconds[name] = time.perf_counter() - tic
        tables[name] = {"jobs": result.jobs, "scores": result.scores, "fits": result.fits}
        print(f"{name}: run {result.run_id}, {seconds[name]:.0f} s", flush=True)
    rows = [
        compare(tables["base"], tables["converged"], "converged vs study"),
        compare(tables["converged"], tables["converged-warm"], "warm vs cold (converged)"),
    ]
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).set_index("variant").T.to_string())
    for name in ("converged", "converged-warm"):
        fits = tables[name]["fits"]
        base = tables["base"]["fits"]
        print(
            f"{name}: mean L-BFGS iterations per fit {fits['iterations'].mean():.1f} "
            f"(base {base['iterations'].mean():.1f}); fit seconds {fits['seconds'].sum():.0f} "
            f"(base {base['seconds'].sum():.0f})"
        )


def paper(n_train: int, lams: tuple[float, ...]) -> None:
    from modelrecovery.data.triplets import Triplets
    from modelrecovery.probe.calibrate import calibrate_temperature
    from modelrecovery.probe.fit import LBFGSSettings, fit_probe
    from modelrecovery.probe.objective import PreparedTriplets
    from modelrecovery.probe.reduced import row_space
    from modelrecovery.recovery.grid import GridConfig, jobs_of
    from modelrecovery.recovery.job import simulate
    from modelrecovery.world import WorldConfig, generated_features, human_embedding

    torch.set_num_threads(1)
    source = SHARED / "spose_embedding_49d_sorted.txt"
    if source.exists():
        embedding = np.loadtxt(source)
        print(f"embedding: SPoSE-49 from {source}")
    else:
        embedding = human_embedding(WorldConfig(n_concepts=1854, n_dims=49, seed=0))
        print("embedding: a generated 49-dimensional one (SPoSE file not found)")
    features = generated_features(embedding, (512, 768, 512), seed=0, noise=0.5)
    names = list(features)
    z = features[names[0]].astype(np.float64)
    rng = np.random.default_rng(0)
    ids = np.array([rng.choice(1854, 3, replace=False) for _ in range(2000)])
    temperature, _ = calibrate_temperature(z, Triplets(ids, np.zeros(len(ids)), 1854), 0.678)
    config = GridConfig(
        generators=(names[0],), candidates=tuple(names), sizes=(n_train,), seeds=(0,), lams=lams
    )
    job = jobs_of(config)[0]
    fold = simulate(job, config, z, temperature, None)[0]
    prep = PreparedTriplets.from_triplets(fold.train)
    rows = []
    for name, x in features.items():
        x = torch.as_tensor(x)
        space = row_space(x[prep.concepts])
        for variant, settings, warm in (
            ("converged-cold", LBFGSSettings.of("converged"), False),
            ("converged-warm", LBFGSSettings.of("converged"), True),
            ("study-cold", LBFGSSettings.of("study"), False),
        ):
            theta = None
            order = sorted(lams, reverse=warm)
            for lam in order:
                tic = time.perf_counter()
                fitted = fit_probe(
                    x, prep, lam=lam, space=space, settings=settings, init=theta if warm else None
                )
                theta = fitted.theta
                scores = {
                    f"{role}_accuracy": fitted.evaluate(x, getattr(fold, role))["accuracy"]
                    for role in ("validation", "test")
                }
                rows.append(
                    {
                        "candidate": name,
                        "variant": variant,
                        "lam": lam,
                        "objective": fitted.train_objective,
                        "iterations": fitted.iterations,
                        "seconds": time.perf_counter() - tic,
                        **scores,
                    }
                )
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["candidate", "lam"], columns="variant", values="objective")
    rel_warm = (wide["converged-warm"] - wide["converged-cold"]) / wide["converged-cold"].abs()
    rel_study = (wide["study-cold"] - wide["converged-cold"]) / wide["converged-cold"].abs()
    print(wide.assign(warm_rel=rel_warm, study_rel=rel_study).to_string())
    for variant, part in table.groupby("variant"):
        best = (
            part.sort_values("lam")
            .groupby("candidate", sort=False)
            .apply(lambda g: g.iloc[int(np.argmax(g["validation_accuracy"].to_numpy()))])
        )
        winner = best["test_accuracy"].idxmax()
        print(
            f"{variant}: selected λ {dict(best['lam'])}, fold winner {winner}, "
            f"{part['seconds'].sum():.0f} s, {part['iterations'].sum()} iterations"
        )
    print(
        f"warm vs cold: max |rel objective diff| {rel_warm.abs().max():.2e}; "
        f"study vs converged: median {rel_study.median():.2e}, max {rel_study.max():.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", action="store_true", help="the default study (default)")
    parser.add_argument("--paper", action="store_true", help="a paper-scale sample")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for the default study")
    parser.add_argument("--n-train", type=int, default=25_600)
    parser.add_argument(
        "--lams",
        type=float,
        nargs="*",
        default=[1e-3, 1e-1, 10.0, 1e3],
        help="λ sample for --paper (the study's grid is 1e-6 ... 1e4; weak penalties take "
        "thousands of iterations cold)",
    )
    args = parser.parse_args()
    if args.world or not args.paper:
        world(args.set)
    if args.paper:
        paper(args.n_train, tuple(args.lams))


if __name__ == "__main__":
    main()
