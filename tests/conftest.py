"""Shared fixtures: small planted worlds and the path to the public THINGS files."""

from __future__ import annotations

from pathlib import Path

import pytest

THINGS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "things"


@pytest.fixture
def things_dir() -> Path:
    """``../shared/data/things`` (skips the test when the public files are absent)."""
    if not (THINGS_DIR / "unique_id.txt").exists():
        pytest.skip(f"public THINGS files not found at {THINGS_DIR}")
    return THINGS_DIR


@pytest.fixture
def study_home(tmp_path, monkeypatch) -> Path:
    """A private tracking home in ``tmp_path`` (MLflow and Optuna SQLite files, the data
    folder) and ``tmp_path`` as the working folder: nothing lands in the repository."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    monkeypatch.setenv("MODELRECOVERY_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
