"""Stage ``generators``: build (or reuse) every generator of a study
(:func:`modelrecovery.study.generators.build_generators`), recorded in MLflow."""

from __future__ import annotations

import argparse


def cmd_generators(args: argparse.Namespace) -> dict:
    """Build (or reuse) the generator of every model and level of a study's configuration."""
    from modelrecovery.config import split_overrides
    from modelrecovery.devices import require_device
    from modelrecovery.study.generators import build_generators, generator_setups
    from modelrecovery.study.inputs import select_names, study_inputs
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.spec import load_spec

    spec = load_spec(args.config, split_overrides(args.set))
    require_device(spec.probe.device, "probe.device")  # before the world or any run is built
    tracker = MLflowTracker(spec.study)
    inputs = study_inputs(spec, progress=not args.no_progress)
    wanted = select_names(spec.generators, list(inputs.feature_paths), "generators")
    built = build_generators(
        {m: inputs.feature_paths[m] for m in wanted},
        inputs.human,
        tracker=tracker,
        setups=generator_setups(spec),
        progress=not args.no_progress,
        workers=spec.probe.workers,
    )
    return {
        f"{name}/{level}": f"run {g.run_id} lam={g.lam:g} T={g.temperature:.4g} "
        f"human_acc={g.human_test_accuracy:.3f}{' (reused)' if g.reused else ''}"
        for (level, name), g in built.items()
    }
