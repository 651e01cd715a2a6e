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
