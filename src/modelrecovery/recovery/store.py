"""Durable results store: one folder per finished job, written atomically.

A job's three tables are written into a private temporary folder and then renamed into
``jobs/<job_id>``; a rename is atomic on one file system, so a crash leaves either the
whole job or nothing, a rerun skips finished jobs, and two grids sharing a store never
duplicate or corrupt a job (the second rename finds the job done and is dropped).

Two processes running one grid at once share its jobs through claims: before computing a
job a process claims it (``claims/<job_id>``: its process id, machine and time, written
under the store's lock ``claims/.lock``), and a job claimed by another live process is
waited for, then loaded. A claim whose process died (same machine: its pid is gone) is
taken over; a claim of another machine is trusted for :data:`CLAIM_LEASE_S` seconds after
its holder last renewed it (:meth:`ResultsStore.renew`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from modelrecovery.locks import file_lock, hostname, process_alive
from modelrecovery.recovery.job import JobResult

TABLES = ("job", "scores", "fits")
#: how long a claim of another machine holds without being renewed
CLAIM_LEASE_S = 600.0
#: a claim file being written (empty or partial) is taken for live this long
CLAIM_WRITE_S = 30.0


class ResultsStore:
    """Parquet results of recovery jobs under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "claims").mkdir(parents=True, exist_ok=True)
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

    # -- claims: two processes running one grid share its jobs ----------------------------

    def _claim_path(self, job_id: str) -> Path:
        return self.root / "claims" / job_id

    def claim_holder(self, job_id: str) -> dict | None:
        """The live claim of ``job_id`` (``pid``, ``host``, ``time``), or None when the
        job is unclaimed or its claimant is gone (dead, or silent past the lease)."""
        path = self._claim_path(job_id)
        try:
            text = path.read_text()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
            pid, host = int(holder["pid"]), str(holder["host"])
        except (ValueError, KeyError, TypeError):  # being written, or damaged
            return {"pid": None, "host": None, "time": None} if age < CLAIM_WRITE_S else None
        alive = process_alive(pid, host)
        if alive is None:  # another machine's: trusted while it renews the claim
            alive = age < CLAIM_LEASE_S
        return holder if alive else None

    def _mine(self, holder: dict | None) -> bool:
        return (
            holder is not None
            and holder.get("pid") == os.getpid()
            and (holder.get("host") == hostname())
        )

    def claim(self, job_id: str) -> str:
        """Claim ``job_id`` for this process: ``"mine"`` (compute it, then
        :meth:`release`), ``"done"`` (finished meanwhile: load it) or ``"held"`` (another
        live process computes it: wait). A dead claimant's claim is taken over."""
        with file_lock(self.root / "claims" / ".lock"):
            if (self.root / "jobs" / job_id).is_dir():
                return "done"
            holder = self.claim_holder(job_id)
            if holder is not None and not self._mine(holder):
                return "held"
            record = {"pid": os.getpid(), "host": hostname(), "time": time.time()}
            tmp = self.root / "claims" / f".{job_id}.{uuid.uuid4().hex}"
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self._claim_path(job_id))
            return "mine"

    def release(self, job_ids: Iterable[str]) -> None:
        """Drop this process's claims of ``job_ids`` (finished, or given up)."""
        with file_lock(self.root / "claims" / ".lock"):
            for job_id in job_ids:
                path = self._claim_path(job_id)
                if self._mine(self.claim_holder(job_id)):
                    path.unlink(missing_ok=True)

    def renew(self, job_ids: Iterable[str]) -> None:
        """Mark this process's claims of ``job_ids`` as still held (their lease, for
        processes of other machines)."""
        for job_id in job_ids:
            try:
                os.utime(self._claim_path(job_id))
            except FileNotFoundError:
                pass
