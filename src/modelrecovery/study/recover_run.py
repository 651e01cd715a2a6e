"""What tells a study's recover runs apart, and which job runs each used.

- :func:`recover_run_name`: ``recover/<study>/<digest>``, the digest (8 hex characters) of
  the grid's axes and settings: two runs of one study on different grids have different
  names, two runs of the same grid the same name.
- :func:`grid_axes_params`: the grid's sizes, seeds, generators, candidates and levels
  (per level where a level has its own sizes or seeds) as the run's parameters.
- :func:`record_jobs_used`: on the recover run, a table artifact ``jobs_used.json`` (one
  row per job of its grid: job id, run id, reused or new, the recover run that ran it),
  metrics and tags ``jobs_new`` / ``jobs_reused``, and a tag ``reused_from`` naming the
  earlier recover runs whose job runs it reused (the link to jobs it did not run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import pandas as pd

from modelrecovery.recovery.grid import GridConfig, Job
from modelrecovery.study.spec import StudySpec
from modelrecovery.study.tracker import Run, Tracker
from modelrecovery.study.tracking_names import RECOVER

__all__ = ["recover_run_name", "grid_axes_params", "jobs_used_table", "record_jobs_used"]

#: at most this many run ids in the ``reused_from`` tag (else their count)
MAX_LINKED = 10


def _axes(spec: StudySpec, grid: GridConfig) -> dict[str, str]:
    levels = [level.label for level in grid.levels]
    out = {
        "sizes": ",".join(str(int(n)) for n in grid.sizes),
        "seeds": ",".join(str(int(s)) for s in grid.seeds),
        "generators": ",".join(grid.generators),
        "candidates": ",".join(grid.candidates),
        "levels": ",".join(levels),
    }
    for label, entry in zip(levels, spec.grid.levels, strict=True):
        if entry.sizes:
            out[f"sizes_{label}"] = ",".join(str(int(n)) for n in entry.sizes)
        if entry.seeds:
            out[f"seeds_{label}"] = ",".join(str(int(s)) for s in entry.seeds)
    return out


def grid_digest(spec: StudySpec, grid: GridConfig) -> str:
    """8 hex characters of the grid's axes (:func:`grid_axes_params`) and settings (the
    grid's key without provenance: what changes a job's result)."""
    payload = {"axes": _axes(spec, grid), "settings": grid.key()}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def recover_run_name(spec: StudySpec, grid: GridConfig) -> str:
    """``recover/<study>/<grid digest>``."""
    return RECOVER.run_name(study=spec.study, digest=grid_digest(spec, grid))


def grid_axes_params(spec: StudySpec, grid: GridConfig) -> dict[str, str]:
    """The grid's axes as run parameters (comma-separated): sizes, seeds, generators,
    candidates, levels, and ``sizes_<level>`` / ``seeds_<level>`` for a level with its own,
    plus ``grid_digest`` (the run name's last part)."""
    return _axes(spec, grid) | {"grid_digest": grid_digest(spec, grid)}


def jobs_used_table(
    jobs: Sequence[Job],
    new_runs: Mapping[str, str],
    found: Mapping[str, tuple[str, str | None]],
    this_run: str,
) -> pd.DataFrame:
    """One row per job: job_id, level, generator, n_train, seed, selection, run_id (the
    job's run; empty when the tracker has none, e.g. a store filled elsewhere), reused
    (False: run now by ``this_run``) and recover_run (the run whose child the job run is)."""
    rows = []
    for job in jobs:
        if job.job_id in new_runs:
            run_id, parent, reused = new_runs[job.job_id], this_run, False
        else:
            run_id, parent = found.get(job.job_id, ("", None))
            reused = True
        rows.append(
            {
                "job_id": job.job_id,
                "level": job.level.label,
                "generator": job.generator,
                "n_train": int(job.n_train),
                "seed": int(job.seed),
                "selection": job.selection,
                "run_id": run_id,
                "reused": reused,
                "recover_run": parent or "",
            }
        )
    columns = ["job_id", "level", "generator", "n_train", "seed", "selection", "run_id"]
    return pd.DataFrame(rows, columns=columns + ["reused", "recover_run"])


def record_jobs_used(
    tracker: Tracker, run: Run, jobs: Sequence[Job], new_runs: Mapping[str, str]
) -> pd.DataFrame:
    """Record on ``run`` which job runs its grid used (see the module's docstring);
    returns the table. The tracker is searched only when some jobs were reused."""
    reused_ids = [job.job_id for job in jobs if job.job_id not in new_runs]
    found = tracker.find_jobs(reused_ids) if reused_ids else {}
    table = jobs_used_table(jobs, new_runs, found, run.id)
    run.log_table(table, "jobs_used.json")
    n_reused = int(table["reused"].sum())
    n_new = len(table) - n_reused
    run.log_metrics({"jobs_new": float(n_new), "jobs_reused": float(n_reused)})
    earlier = sorted(set(table.loc[table["reused"], "recover_run"]) - {"", run.id})
    tags = {"jobs_new": str(n_new), "jobs_reused": str(n_reused)}
    if earlier:
        tags["reused_from"] = (
            ",".join(earlier)
            if len(earlier) <= MAX_LINKED
            else f"{len(earlier)} runs (see jobs_used.json)"
        )
    missing = int((table["reused"] & (table["run_id"] == "")).sum())
    if missing:
        tags["jobs_reused_without_run"] = str(missing)
    run.set_tags(tags)
    return table
