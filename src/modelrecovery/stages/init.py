"""Stage ``init``: write a study configuration for your own models and data
(:func:`modelrecovery.study.own_data.init_study`); creates nothing else."""

from __future__ import annotations

import argparse


def cmd_init(args: argparse.Namespace) -> dict:
    """Write ``<dir>/study.yaml`` and say what it found and what to run next."""
    from modelrecovery.study.own_data import init_study, per_fold_size

    path, data = init_study(
        args.dir,
        args.features,
        args.triplets,
        repeated=args.repeated,
        repeated_set=args.repeated_set,
        concepts=args.concepts,
        study=args.study,
        force=args.force,
    )
    return {
        "config": str(path),
        "models": ", ".join(f"{m} ({d})" for m, d in data.dims.items()),
        "n_concepts": data.n_concepts,
        "training_triplets": data.n_train,
        "repeated_responses": data.n_repeated,
        "largest_per_fold_size": per_fold_size(data.n_train, data.n_concepts),
        "next": f"modelrecovery check --config {path}; modelrecovery recover --config {path}",
    }
