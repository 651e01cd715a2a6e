"""MLflow tracking conventions: where runs go, how they are named and tagged, and how a
finished run with the same inputs is found and reused instead of recomputed.

- Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else a SQLite store
  ``tracking/mlflow.db`` in the working directory (artifacts in ``tracking/artifacts``).
- One experiment per study; run names say what a run is (``fit/<model>/<family>``).
- Tags on every run: ``stage``, ``model``, ``family``, ``git_commit``, ``inputs_key`` (a
  hash of the entry point, its parameters, the data hashes and :func:`source_hash`, the
  content of the package's own source files: an uncommitted edit of the code changes it, an
  edit of the README or a test does not).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow

import modelrecovery

TRACKING_DIR = Path("tracking")

# quiet by default: one progress bar per stage instead of one per artifact download
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri() -> str:
    """The MLflow tracking URI in use (environment first, then the local SQLite store)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    TRACKING_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(TRACKING_DIR / 'mlflow.db').resolve()}"


def optuna_storage() -> str:
    """The Optuna storage URL (``OPTUNA_STORAGE`` or a SQLite file beside MLflow's, never
    the same file: both use alembic migrations)."""
    url = os.environ.get("OPTUNA_STORAGE")
    if url:
        return url
    TRACKING_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(TRACKING_DIR / 'optuna.db').resolve()}"


def setup_experiment(name: str) -> str:
    """Point MLflow at :func:`tracking_uri` and select (create) the study's experiment.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the stage continues the run MLflow
    created, so the experiment is that run's (choose it with ``--experiment-name``).
    """
    mlflow.set_tracking_uri(tracking_uri())
    launched = os.environ.get("MLFLOW_RUN_ID")
    if launched:
        experiment_id = mlflow.get_run(launched).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None
        uri = tracking_uri()
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in ./mlruns
            database = Path(uri[len("sqlite:///") :])
            location = (database.parent / "artifacts" / name).resolve().as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


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


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 of the package's source files (relative paths and contents, sorted).

    Results depend on the code that computed them, not on the commit: this key changes
    with any edit of ``src/modelrecovery`` (committed or not) and with nothing else.
    """
    root = Path(modelrecovery.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's content (memoised on path, size and modification time)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    stat = path.stat()
    return _hash_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def inputs_key(stage: str, params: dict[str, Any], data_hashes: dict[str, str]) -> str:
    """Hash identifying a stage's inputs: entry point, parameters, data, source code."""
    payload = json.dumps(
        {"stage": stage, "params": params, "data": data_hashes, "code": source_hash()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def find_finished_run(experiment_id: str, key: str) -> mlflow.entities.Run | None:
    """The newest FINISHED run of the experiment with tag ``inputs_key = key``."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.inputs_key = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def standard_tags(stage: str, model: str | None = None, family: str | None = None) -> dict:
    """The tags every run carries."""
    tags = {"stage": stage, "git_commit": code_version()}
    if model is not None:
        tags["model"] = model
    if family is not None:
        tags["family"] = family
    return tags
