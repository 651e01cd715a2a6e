"""The study core: its typed specification (:mod:`~modelrecovery.study.spec`, the
project's one vocabulary, importing no torch), the tracker interface
(:mod:`~modelrecovery.study.tracker`, with :mod:`~modelrecovery.study.mlflow_tracker`)
and the pipeline that runs a study and returns results
(:mod:`~modelrecovery.study.pipeline`: :func:`run_study`, :func:`run_job`). Every
package's names are imported on first use (PEP 562): importing this one imports nothing
heavy."""

from __future__ import annotations

from modelrecovery.lazy import lazy_exports

_SOURCES = {
    "run_study": "pipeline",
    "run_job": "pipeline",
    "StudyResult": "pipeline",
    "load_spec": "spec",
    "validate_spec": "spec",
    "StudySpec": "spec",
    "Level": "spec",
    "Tracker": "tracker",
    "NullTracker": "tracker",
    "MLflowTracker": "mlflow_tracker",
}

__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
