"""Reuse keys: what a recorded result depends on, hashed.

A result (a generator, a tuning run, a recovery job) is reused when a finished run with
the same key exists. The key hashes the stage, its parameters, the content of its input
files and :func:`science_hash`: the source of the code a result depends on (the science
packages data, features, probe, recovery and world, and the study core's specification
and pipeline), not the report, the tracking stores, the stack or the command line. An
edit of the report's template reuses every job; an edit of the objective recomputes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import modelrecovery
from modelrecovery.input_files import sha256

#: packages (folders) and modules of ``modelrecovery`` whose source a result depends on
SCIENCE_PACKAGES = ("data", "features", "probe", "recovery", "world", "study")
SCIENCE_MODULES = ("config.py", "devices.py", "input_files.py", "interrupts.py", "lazy.py")
#: modules of the science packages that record or describe results but change none
NOT_SCIENCE = (
    "study/tracker.py",
    "study/mlflow_tracker.py",
    "study/mlflow_model.py",
    "study/tracking_names.py",  # MLflow's names (the docs' reference)
    "recovery/columns.py",  # the results tables' columns (the docs' reference)
)


def science_files(root: Path | None = None) -> list[Path]:
    """The source files :func:`science_hash` reads, sorted (``root``: a copy of the
    package's folder; default the package itself)."""
    root = root or Path(modelrecovery.__file__).resolve().parent
    files = [root / name for name in SCIENCE_MODULES if (root / name).exists()]
    for package in SCIENCE_PACKAGES:
        files += (root / package).rglob("*.py")
    return sorted(p for p in files if p.relative_to(root).as_posix() not in NOT_SCIENCE)


@functools.lru_cache(maxsize=4)
def science_hash(root: Path | None = None) -> str:
    """SHA-256 of the science's source files (relative paths and contents, sorted): it
    changes with any edit of them (committed or not) and with nothing else."""
    root = root or Path(modelrecovery.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in science_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    return sha256(path)


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's content (memoised on path, size and modification time)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    stat = path.stat()
    return _hash_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def inputs_key(stage: str, params: dict[str, Any], data_hashes: dict[str, str]) -> str:
    """Hash identifying a stage's inputs: the stage, its parameters, its data and the
    science's source (:func:`science_hash`)."""
    payload = json.dumps(
        {"stage": stage, "params": params, "data": data_hashes, "code": science_hash()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
