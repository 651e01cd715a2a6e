"""Stage ``check``: diagnose a study before running it, with no MLflow run and no
tracking folder: the checks every study runs first (names, files, devices), then each
model's zero-shot fit to the held-out human triplets and its flags (uninformative, badly
scaled, near-duplicates), the human noise ceiling, the grid's jobs and their estimated
time (:func:`modelrecovery.study.diagnostics.diagnose`)."""

from __future__ import annotations

import argparse

from modelrecovery.config import split_overrides


def cmd_check(args: argparse.Namespace) -> dict:
    """Print the study's diagnosis; return the models checked, the flags, the jobs and the
    estimated seconds."""
    from modelrecovery.study.diagnostics import diagnose, format_diagnosis
    from modelrecovery.study.inputs import human_exclusion_keys, study_inputs
    from modelrecovery.study.pipeline import check_sizes, check_study
    from modelrecovery.study.spec import load_spec

    spec = load_spec(args.config, split_overrides(args.set))
    check_study(spec)
    inputs = study_inputs(spec, progress=False)
    human = inputs.human
    check_sizes(spec, human.train.n_concepts, human_exclusion_keys(human))  # as recover
    diagnosis = diagnose(spec, inputs)
    for line in format_diagnosis(diagnosis):
        print(line)
    return {
        "study": spec.study,
        "models": [m.name for m in diagnosis.models],
        "uninformative": diagnosis.uninformative,
        "badly_scaled": diagnosis.badly_scaled,
        "near_duplicates": [f"{a}/{b}" for a, b, _ in diagnosis.duplicates],
        "jobs": diagnosis.jobs,
        "estimated_seconds": round(diagnosis.estimated_seconds, 1),
    }
