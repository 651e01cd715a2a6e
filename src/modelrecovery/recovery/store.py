"""Durable results store: one folder per finished job, written atomically.

A job's three tables are written into a private temporary folder and then renamed into
``jobs/<job_id>``; a rename is atomic on one file system, so a crash leaves either the
whole job or nothing, a rerun skips finished jobs, and two grids sharing a store never
duplicate or corrupt a job (the second rename finds the job done and is dropped).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

from modelrecovery.recovery.job import JobResult

TABLES = ("job", "scores", "fits")


class ResultsStore:
    """Parquet results of recovery jobs under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self._clean_stale_tmp()

    def _clean_stale_tmp(self, older_than_s: float = 24 * 3600) -> None:
        now = time.time()
        for path in (self.root / "tmp").iterdir():
            if now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)

    def done(self) -> set[str]:
        """Ids of finished jobs."""
        return {p.name for p in (self.root / "jobs").iterdir() if p.is_dir()}

    def write(self, job_id: str, result: JobResult) -> bool:
        """Store a finished job; False if it was already there (nothing written)."""
        final = self.root / "jobs" / job_id
        if final.exists():
            return False
        tmp = self.root / "tmp" / f"{job_id}.{uuid.uuid4().hex}"
        tmp.mkdir()
        for name in TABLES:
            getattr(result, name).to_parquet(tmp / f"{name}.parquet", index=False)
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():
                return False
            raise
        return True

    def load(self, job_ids: set[str] | None = None) -> dict[str, pd.DataFrame]:
        """The concatenated ``jobs``, ``scores`` and ``fits`` tables (sorted by job id)."""
        ids = sorted(self.done() if job_ids is None else job_ids & self.done())
        out = {}
        for name, key in zip(TABLES, ("jobs", "scores", "fits"), strict=True):
            frames = [pd.read_parquet(self.root / "jobs" / i / f"{name}.parquet") for i in ids]
            out[key] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return out
