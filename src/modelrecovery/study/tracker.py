"""The tracker interface: what the pipeline records and reuses, without naming MLflow.

A :class:`Tracker` starts runs (a name, tags, parameters, an optional reuse key and a
parent run), and each :class:`Run` logs metrics, tags, tables and artifacts. A finished
run is found by its reuse key and its artifacts are read back: the reuse of finished
results is written once, in :func:`reuse_or_run`. Two implementations: MLflow (+ the
Optuna storage; :mod:`modelrecovery.study.mlflow_tracker`) and :class:`NullTracker`, which
keeps runs in memory and artifacts in a temporary folder (notebooks, tests).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import modelrecovery

T = TypeVar("T")

__all__ = [
    "Run",
    "Tracker",
    "NullTracker",
    "NullRun",
    "reuse_or_run",
    "standard_tags",
    "code_version",
]


@runtime_checkable
class Run(Protocol):
    """One run of a tracker: what one stage of one model recorded."""

    id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        """Copy the files of ``folder`` under ``path`` of the run's artifacts."""

    def log_dict(self, data: Any, name: str) -> None:
        """A JSON or YAML artifact (by ``name``'s suffix)."""

    def log_table(self, frame: Any, name: str) -> None:
        """A table artifact (a pandas frame; ``name`` ends in ``.json``), which the MLflow
        UI shows as a table."""


@runtime_checkable
class Tracker(Protocol):
    """Where a study's runs are recorded and found again."""

    #: the folder of local outputs (results stores, reports)
    home: Path

    def run(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        parent: Run | None = None,
    ) -> contextlib.AbstractContextManager[Run]:
        """A run, ended FINISHED when the block ends, FAILED when it raises. ``key`` (the
        hash of the run's inputs) lets :meth:`find` reuse it."""

    def record(
        self,
        name: str,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        parent: Run | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> str:
        """A finished run at once (one per recovery job); returns its id. ``start_time`` /
        ``end_time`` (seconds since the epoch) are the work's own, so the run's duration is
        the job's, not the logging's."""

    def find(self, key: str) -> str | None:
        """The id of the newest finished run with reuse key ``key``, or None."""

    def find_jobs(self, job_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        """Per job id of ``job_ids`` that has one: the newest finished job run (tag
        ``stage = job``, tag ``job_id``) as (run id, its parent run's id or None)."""

    def artifacts(self, run_id: str, path: str) -> Path:
        """A local folder holding the artifacts ``path`` of run ``run_id``."""

    def optuna_storage(self) -> str | None:
        """Where λ tuning keeps its Optuna studies (None: in memory)."""

    def lightning_logger(self, run: Run) -> Any:
        """A Lightning logger writing into ``run`` (False: none)."""

    def log_probe(self, run: Run, z: Any, temperature: float) -> None:
        """The fitted probe (Z and T) as a model of ``run``, under ``probe``."""


def reuse_or_run(
    tracker: Tracker,
    key: str,
    load: Callable[[str], T],
    compute: Callable[[], T],
) -> T:
    """The one place results are reused: ``load(run_id)`` of the newest finished run
    with reuse key ``key``, else ``compute()`` (which records a run with that key).

    Under a lock on the key (``<home>/locks/<key>.lock``): a second process asking for
    the same result while the first computes it waits, then loads the first's run, so
    two processes running one study build each generator once."""
    from modelrecovery.locks import file_lock

    with file_lock(Path(tracker.home) / "locks" / f"{key}.lock"):
        found = tracker.find(key)
        if found is not None:
            return load(found)
        return compute()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the project (``+dirty`` when src/ has uncommitted changes), or the
    package version outside a git checkout."""
    root = Path(modelrecovery.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"modelrecovery-{modelrecovery.__version__}"
    return commit + ("+dirty" if dirty else "")


def standard_tags(stage: str, model: str | None = None, family: str | None = None) -> dict:
    """The tags every run carries."""
    tags = {"stage": stage, "git_commit": code_version()}
    if model is not None:
        tags["model"] = model
    if family is not None:
        tags["family"] = family
    return tags


# ----------------------------------------------------------------------------------------------
# The null tracker
# ----------------------------------------------------------------------------------------------


@dataclass
class NullRun:
    """A run kept in memory (artifacts in the tracker's temporary folder)."""

    id: str
    name: str
    folder: Path
    parent: str | None = None
    key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    status: str = "RUNNING"
    start_time: float | None = None  # seconds since the epoch
    end_time: float | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append((step, float(value)))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        target = self.folder / path if path else self.folder
        shutil.copytree(folder, target, dirs_exist_ok=True)

    def log_dict(self, data: Any, name: str) -> None:
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".yaml", ".yml")):
            import yaml

            target.write_text(yaml.safe_dump(data, sort_keys=False))
        else:
            target.write_text(json.dumps(data, indent=2, default=str))

    def log_table(self, frame: Any, name: str) -> None:
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_json(target, orient="split", index=False)

    def metric(self, name: str) -> float:
        """The last value of a metric."""
        return self.metrics[name][-1][1]


class NullTracker:
    """Records nothing durable: runs live in memory, artifacts in a temporary folder
    (removed when the tracker is). Runs with a reuse key are found again within the
    tracker's life, so a notebook that repeats a call reuses its result."""

    def __init__(self, folder: str | Path | None = None) -> None:
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="modelrecovery-")
            folder = self._tmp.name
        self.folder = Path(folder)
        self.runs: dict[str, NullRun] = {}

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        parent: Run | None = None,
    ) -> Iterator[NullRun]:
        run_id = uuid.uuid4().hex
        run = NullRun(
            run_id, name, self.folder / run_id, parent.id if parent is not None else None, key
        )
        run.folder.mkdir(parents=True)
        run.set_tags(dict(tags or {}))
        run.log_params(dict(params or {}))
        run.start_time = time.time()
        self.runs[run_id] = run
        try:
            yield run
        except BaseException:
            run.status = "FAILED"
            run.end_time = time.time()
            raise
        run.status = "FINISHED"
        run.end_time = time.time()

    @property
    def home(self) -> Path:
        return self.folder

    def record(
        self,
        name: str,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        parent: Run | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> str:
        with self.run(name, tags=tags, params=params, parent=parent) as run:
            run.log_metrics(metrics)
        if start_time is not None:
            run.start_time = start_time
        if end_time is not None:
            run.end_time = end_time
        return run.id

    def find(self, key: str) -> str | None:
        for run in reversed(list(self.runs.values())):
            if run.key == key and run.status == "FINISHED":
                return run.id
        return None

    def find_jobs(self, job_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        wanted = set(job_ids)
        found: dict[str, tuple[str, str | None]] = {}
        for run in reversed(list(self.runs.values())):  # newest first
            job_id = run.tags.get("job_id")
            ok = run.tags.get("stage") == "job" and run.status == "FINISHED"
            if ok and job_id in wanted and job_id not in found:
                found[job_id] = (run.id, run.parent)
        return found

    def artifacts(self, run_id: str, path: str) -> Path:
        return self.runs[run_id].folder / path

    def optuna_storage(self) -> str | None:
        return None

    def lightning_logger(self, run: Run) -> Any:
        return False

    def log_probe(self, run: Run, z: Any, temperature: float) -> None:
        import numpy as np

        folder = self.artifacts(run.id, "probe")
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "z.npy", np.asarray(z, dtype=np.float32))
        (folder / "meta.json").write_text(json.dumps({"temperature": float(temperature)}))

    def named(self, prefix: str) -> list[NullRun]:
        """The runs whose name starts with ``prefix``, in start order."""
        return [run for run in self.runs.values() if run.name.startswith(prefix)]
