"""The study core: its typed specification (:mod:`~modelrecovery.study.spec`, the
project's one vocabulary, importing no torch), the tracker interface
(:mod:`~modelrecovery.study.tracker`) and the pipeline that runs a study and returns
results (:mod:`~modelrecovery.study.pipeline`). Importing this package imports nothing
heavy; ``run_study`` is loaded on first use."""

from __future__ import annotations

from typing import Any

__all__ = ["run_study", "run_job", "load_spec", "StudySpec", "NullTracker", "MLflowTracker"]


def __getattr__(name: str) -> Any:
    if name in ("run_study", "run_job", "StudyResult"):
        from modelrecovery.study import pipeline

        return getattr(pipeline, name)
    if name in ("load_spec", "StudySpec"):
        from modelrecovery.study import spec

        return getattr(spec, name)
    if name == "NullTracker":
        from modelrecovery.study.tracker import NullTracker

        return NullTracker
    if name == "MLflowTracker":
        from modelrecovery.study.mlflow_tracker import MLflowTracker

        return MLflowTracker
    raise AttributeError(f"module 'modelrecovery.study' has no attribute {name!r}")
