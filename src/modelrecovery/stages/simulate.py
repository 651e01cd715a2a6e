"""Stage ``simulate``: write one job's synthetic dataset (every fold's training,
validation and test triplets with the generator's sampled responses) to files, for
inspection or for other tools."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelrecovery.config import split_overrides
from modelrecovery.data.loaders import save_csv
from modelrecovery.devices import require_device
from modelrecovery.outputs import CannotWrite, check_output_folder, write_text
from modelrecovery.recovery.grid import Job
from modelrecovery.recovery.job import simulate


def cmd_simulate(args: argparse.Namespace) -> dict:
    """Write the synthetic triplets of one job (generator, level, N, seed) of a study."""
    from modelrecovery.study.generators import build_generators, generator_setups
    from modelrecovery.study.inputs import human_exclusion_keys, model_names, study_inputs
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import grid_config
    from modelrecovery.study.spec import load_spec

    spec = load_spec(args.config, split_overrides(args.set))
    if args.n_train < 1:
        raise ValueError(f"--n-train must be a positive integer, got {args.n_train}")
    setups = generator_setups(spec)
    labels = [setup.level.label for setup in setups]
    level_label = args.level or labels[-1]
    if level_label not in labels:
        raise ValueError(f"--level {level_label!r} is not a level of the study: {labels}")
    setup = setups[labels.index(level_label)]
    require_device(setup.probe.device, "probe.device")  # before the world or any run is built
    out = check_output_folder(args.out)
    known = model_names(spec)
    if args.generator not in known:
        raise ValueError(f"--generator {args.generator!r} is not a model of the study: {known}")
    tracker = MLflowTracker(spec.study)
    inputs = study_inputs(spec, progress=False)
    if args.generator not in inputs.feature_paths:
        raise ValueError(
            f"unknown generator {args.generator!r}; known: {list(inputs.feature_paths)}"
        )
    generator = build_generators(
        {args.generator: inputs.feature_paths[args.generator]},
        inputs.human,
        tracker=tracker,
        setups=[setup],
        progress=False,
    )[(level_label, args.generator)]
    grid = grid_config(spec, list(inputs.feature_paths))
    exclude = human_exclusion_keys(inputs.human)
    level = next(lv for lv in grid.levels if lv.label == level_label)
    job = Job(args.generator, args.n_train, args.seed, level, grid.key())
    folds = simulate(job, grid, generator.z, generator.temperature, exclude)
    files = {}
    try:  # each file whole or absent; on a failure none of this command's files stay
        for f, fold in enumerate(folds):
            for role in ("train", "validation", "test"):
                path = save_csv(getattr(fold, role), out / f"fold{f}_{role}.csv")
                files[f"fold{f}_{role}"] = str(path)
        meta = {
            "generator": args.generator,
            "level": level_label,
            "n_train": args.n_train,
            "seed": args.seed,
            "temperature": generator.temperature,
            "generator_run": generator.run_id,
            "format": "csv: i,j,k,odd (0-based concepts and odd position)",
            "files": files,
        }
        write_text(out / "simulation.json", json.dumps(meta, indent=2))
    except CannotWrite:
        for path in files.values():
            Path(path).unlink(missing_ok=True)
        raise
    return {"out": str(out), **{k: v for k, v in meta.items() if k != "files"}}
