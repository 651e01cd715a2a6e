"""The ``modelrecovery`` command line.

Each subcommand is a thin shell around library functions; errors about bad input are
printed as one clear line (file, row, what was expected) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

# Stage modules that add subcommands: each has ``register(subparsers)`` adding a parser
# whose ``func(args) -> dict`` does the work (see modelrecovery/stages/).
STAGE_MODULES = (
    "world",
    "extract",
    "fit",
    "tune",
    "calibrate",
    "generators",
    "recover",
    "analyze",
    "simulate",
)

TRIPLET_FORMATS = ("auto", "things2023", "things2020", "csv", "npz")


def _add_triplet_args(parser: argparse.ArgumentParser, flag: str | None = None) -> None:
    if flag is None:
        parser.add_argument("triplets", help="triplet file")
    else:
        parser.add_argument(flag, dest="triplets", required=True, help="triplet file")
    parser.add_argument(
        "--format",
        default="auto",
        choices=TRIPLET_FORMATS,
        help="triplet file format (default: guess from the file)",
    )
    parser.add_argument(
        "--sortindex",
        default=None,
        help="THINGS 2020 order -> THINGS order permutation file (for --format things2020)",
    )
    parser.add_argument(
        "--n-concepts", type=int, default=None, help="number of concepts (default: from the format)"
    )


def _load(args: argparse.Namespace):
    from modelrecovery.data.loaders import load_triplets

    return load_triplets(
        args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=args.n_concepts
    )


def cmd_noise_ceiling(args: argparse.Namespace) -> dict:
    """Leave-one-response-out majority agreement over repeated triplets."""
    from modelrecovery.data.noise_ceiling import noise_ceiling, noise_ceiling_details

    triplets = _load(args)
    try:
        ceiling = noise_ceiling(triplets)
    except ValueError as err:
        raise ValueError(f"{args.triplets}: {err}") from err
    details = noise_ceiling_details(triplets)
    repeated = details[details["n_responses"] >= 2]
    return {
        "noise_ceiling": ceiling,
        "n_responses": len(triplets),
        "n_repeated_triplets": len(repeated),
        "responses_per_repeated_triplet": float(repeated["n_responses"].mean()),
    }


def cmd_evaluate(args: argparse.Namespace) -> dict:
    """Zero-shot accuracy and NLL of a feature file on a triplet file."""
    import torch

    from modelrecovery.features.io import load_features
    from modelrecovery.probe import accuracy_and_nll, fit_probe

    triplets = _load(args)
    features = load_features(args.features, n_concepts=triplets.n_concepts)
    z = torch.as_tensor(features, dtype=torch.float64)
    raw = accuracy_and_nll(z, triplets, temperature=1.0)
    scaled = fit_probe(features, triplets, family="zero_shot", dtype=torch.float64)
    temperature = float(torch.exp(-scaled.theta[0]))
    return {
        "features": str(args.features),
        "triplets": str(args.triplets),
        "n_triplets": len(triplets),
        "feature_dim": int(features.shape[1]),
        "zero_shot_accuracy": raw["accuracy"],
        "zero_shot_nll": raw["nll"],
        "best_temperature": temperature,
        "zero_shot_nll_at_best_temperature": scaled.evaluate(features, triplets)["nll"],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelrecovery",
        description="Model recovery for representational alignment (odd-one-out probes).",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("noise-ceiling", help=cmd_noise_ceiling.__doc__)
    _add_triplet_args(p)
    p.set_defaults(func=cmd_noise_ceiling)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    p.add_argument("--features", required=True, help="feature file (.npy, .pt, text)")
    _add_triplet_args(p, flag="--triplets")
    p.set_defaults(func=cmd_evaluate)

    for name in STAGE_MODULES:
        importlib.import_module(f"modelrecovery.stages.{name}").register(sub)
    return parser


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        text = f"{value:.6f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelrecovery`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"modelrecovery {args.command}: error: {err}", file=sys.stderr)
        return 2
    _print(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
