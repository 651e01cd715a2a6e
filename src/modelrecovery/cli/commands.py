"""The work of each subcommand: one function per command, taking the parsed arguments and
returning the result to print (a dict; empty when the command printed its own output).

Each function imports its stage module inside its body, so that building the parser and
``--help`` import no torch, MLflow or Lightning; the imports are plain ``import``
statements that checkers and IDEs follow (no module names in strings)."""

from __future__ import annotations

import argparse
import sys

# --- commands of their own ---


def _load_triplets(args: argparse.Namespace):
    from modelrecovery.data.loaders import load_triplets

    return load_triplets(
        args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=args.n_concepts
    )


def cmd_noise_ceiling(args: argparse.Namespace) -> dict:
    """Leave-one-response-out majority agreement over repeated triplets."""
    from modelrecovery.data.ceiling import noise_ceiling, noise_ceiling_details

    triplets = _load_triplets(args)
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
    from modelrecovery.data.loaders import load_triplets
    from modelrecovery.features.io import load_features
    from modelrecovery.probe.zero_shot import zero_shot_scores

    triplets = _load_triplets(args)
    features = load_features(args.features)
    if args.n_concepts is None and features.shape[0] > triplets.n_concepts:
        raise ValueError(
            f"{args.triplets}: the triplets' largest concept id is {int(triplets.ids.max())} "
            f"(0-based), so the number of concepts was taken as {triplets.n_concepts}, but the "
            f"features {args.features} have {features.shape[0]} rows (one per concept); give "
            f"--n-concepts {features.shape[0]} if the triplets index those concepts"
        )
    if args.n_concepts is None and features.shape[0] < triplets.n_concepts:
        # a concept id beyond the features' rows: the triplets' line, not the features
        rows = features.shape[0]
        try:
            load_triplets(
                args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=rows
            )
        except ValueError as err:
            raise ValueError(f"{err}; the features {args.features} have {rows} rows") from None
    features = load_features(args.features, n_concepts=triplets.n_concepts)
    scores = zero_shot_scores(features, triplets.ids, triplets.odd, name=str(args.features))
    if "warning" in scores:
        print(scores["warning"], file=sys.stderr)
    return {
        "features": str(args.features),
        "triplets": str(args.triplets),
        "n_triplets": len(triplets),
        "feature_dim": int(features.shape[1]),
        **scores,
    }


def cmd_stack(args: argparse.Namespace) -> dict:
    """``stack up | down | status | env`` (:mod:`modelrecovery.stack`): per service its
    state and address (``--json``: pid, health and address), or for ``env`` the
    ``export`` lines that point the project at the stack. ``up`` fails (exit 1) unless
    every service answers."""
    from modelrecovery import stack

    settings = stack.StackSettings.from_env()
    if args.action == "env":
        variables = stack.client_env(settings)
        if args.json:
            return variables
        for key, value in variables.items():
            print(f"export {key}={value}")
        return {}
    report = {"up": stack.up, "down": stack.down, "status": stack.status}[args.action](settings)
    if args.action == "up" and not all(entry["healthy"] for entry in report.values()):
        silent = [name for name, entry in report.items() if not entry["healthy"]]
        raise stack.StackError(f"not answering after up: {', '.join(silent)}; see {settings.logs}")
    if args.json:
        return report
    lines = {}
    for name, entry in report.items():
        state = "up" if entry["healthy"] else ("not answering" if entry["pid"] else "down")
        lines[name] = f"{state:<14} {entry['address']}"
    if all(entry["healthy"] for entry in report.values()):
        lines["use it"] = f"source {settings.env_file}"
    return lines


def cmd_config(args: argparse.Namespace) -> dict:
    """``config list``: the packaged configs (name and first comment line); ``config show
    NAME``: a packaged config's text, e.g. to copy it out (``> my.yaml``)."""
    from modelrecovery.config import describe_packaged_configs, packaged_config_file

    if args.action == "show":
        sys.stdout.write(packaged_config_file(args.name).read_text(encoding="utf-8"))
        return {}
    return describe_packaged_configs()


def check_config(args: argparse.Namespace) -> None:
    """A study command's config (``--config``, ``--set``), its world config and its files,
    checked before the tracking stores are opened: a command that fails here creates
    nothing (no tracking home, no run)."""
    from modelrecovery.config import resolve_world_config, split_overrides
    from modelrecovery.study.spec import load_spec

    spec = load_spec(args.config, split_overrides(args.set))
    if spec.data.kind == "world":
        from modelrecovery.world.config import WorldConfig

        path = resolve_world_config(spec.data.world_config)
        WorldConfig.from_yaml(path, spec.data.world_overrides)
    else:
        from modelrecovery.study.inputs import check_study_files

        check_study_files(spec)


# --- commands of the stage modules ---


def run_data_things(args: argparse.Namespace) -> dict:
    from modelrecovery.data.fetch import cmd_data_things

    return cmd_data_things(args)


def run_world(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.world import cmd_world

    return cmd_world(args)


def run_extract(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.extract import cmd_extract

    return cmd_extract(args)


def run_fit(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.fit import cmd_fit

    return cmd_fit(args)


def run_tune(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.tune import cmd_tune

    return cmd_tune(args)


def run_dashboard(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.tune import cmd_dashboard

    return cmd_dashboard(args)


def run_calibrate(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.calibrate import cmd_calibrate

    return cmd_calibrate(args)


def run_init(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.init import cmd_init

    return cmd_init(args)


def run_check(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.check import cmd_check

    return cmd_check(args)


def run_generators(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.generators import cmd_generators

    return cmd_generators(args)


def run_recover(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.recover import cmd_recover

    return cmd_recover(args)


def run_plan(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.plan import cmd_plan

    return cmd_plan(args)


def run_analyze(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.analyze import cmd_analyze

    return cmd_analyze(args)


def run_simulate(args: argparse.Namespace) -> dict:
    from modelrecovery.stages.simulate import cmd_simulate

    return cmd_simulate(args)
