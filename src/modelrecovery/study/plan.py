"""``plan``: how many triplets a study needs for its generating model to win, by an
adaptive design instead of a full grid (docs/science/method.md §7).

Per level (and triplet-selection design) the plan fits the recovery curve of
:mod:`modelrecovery.analysis.sample_size` to the jobs run so far, then runs the next batch
of sizes where it shrinks the interval of N_target most, one new seed per (size, slot) and
one job per generator, until the interval's high / low is at most ``max_ratio``, the level
is confidently unreachable within ``max_n``, or its job budget is spent. Every job is an
ordinary recovery job of the study's grid (same id, store, tracking and reuse): a plan
uses any finished job of the store at the ladder's sizes, and a later grid reuses the
plan's jobs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelrecovery.analysis.sample_size import (
    CurveFit,
    fit_curve,
    plan_step,
    size_ladder,
)
from modelrecovery.analysis.verdict import triplets_to_collect
from modelrecovery.recovery.executors import check_sizes_exactly, run_grid
from modelrecovery.recovery.grid import GridConfig, Job, jobs_of
from modelrecovery.recovery.job import JobResult
from modelrecovery.study.inputs import human_exclusion_keys, study_inputs
from modelrecovery.study.pipeline import check_sizes, check_study, prepare_grid, record_job
from modelrecovery.study.spec import StudySpec, load_spec
from modelrecovery.study.tracker import NullTracker, Tracker, standard_tags
from modelrecovery.study.tracking_names import PLAN

__all__ = ["PlanResult", "PlanSettings", "plan_study"]

#: finished jobs of the store with seeds below this are found and used by a plan
REUSE_SEEDS = 100


@dataclass(frozen=True)
class PlanSettings:
    """What a plan aims at and may spend.

    target: recovery accuracy to reach (N_target is where the curve reaches it).
    levels: level labels to plan (default: every level of the grid).
    budget_jobs: jobs per level and design (default: ``24 x`` the level's generators).
    min_n, max_n: the sizes considered (default: a tenth of the grid's smallest, at least
        10, and the grid's largest).
    max_ratio: stop when N_target's interval has high / low at most this.
    batch: (size, seed) slots per batch after the first; each runs one job per generator.
    initial: slots of the first batch, spread evenly in log N over the ladder.
    first_seed: the seeds of new slots start here (other seeds: another replication).
    """

    target: float = 0.8
    levels: tuple[str, ...] | None = None
    budget_jobs: int | None = None
    min_n: int | None = None
    max_n: int | None = None
    max_ratio: float = 2.0
    batch: int = 4
    initial: int = 6
    first_seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"--target must lie strictly between 0 and 1, got {self.target}")
        if self.max_ratio <= 1:
            raise ValueError(f"--max-ratio must be above 1, got {self.max_ratio}")
        for name in ("batch", "initial"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.initial < 3:
            raise ValueError(
                f"--initial must be at least 3 (sizes for a curve), got {self.initial}"
            )
        if self.budget_jobs is not None and self.budget_jobs < 1:
            raise ValueError(f"--budget-jobs must be at least 1, got {self.budget_jobs}")
        if self.first_seed < 0:
            raise ValueError(f"--first-seed must be >= 0, got {self.first_seed}")


@dataclass
class _Track:
    """One planned curve: a level and a design, its generators and jobs so far."""

    level: Any
    selection: str
    part: GridConfig  # the level grid holding the level
    generators: tuple[str, ...]
    budget: int
    outcomes: dict[str, tuple[int, int, str, float, bool]] = field(default_factory=dict)
    fit: CurveFit | None = None
    stop: str = ""
    batches: int = 0

    @property
    def label(self) -> str:
        return self.level.label + ("" if self.selection == "random" else f"_{self.selection}")

    def used_at(self, n: int) -> set[int]:
        return {seed for (size, seed, *_rest) in self.outcomes.values() if size == n}

    def jobs(self, sizes: list[int], first_seed: int, fits=None) -> list[Job]:
        """One job per generator for each slot: a size and the next seed unused there
        whose folds hold the size (``fits(n, seed)``; a seed's folds decide how many
        distinct triplets besides the human ones its parts hold)."""
        out: list[Job] = []
        taken: dict[int, set[int]] = {}
        for n in sizes:
            used = taken.setdefault(n, set(self.used_at(n)))
            seed = first_seed
            while seed in used or (fits is not None and not fits(n, seed)):
                seed += 1
                if seed > first_seed + 10 * REUSE_SEEDS:
                    raise ValueError(f"no seed's folds hold N = {n}: lower --max-n")
            used.add(seed)
            out += slot_jobs(self.part, self.level, self.selection, self.generators, n, seed)
        return out


def slot_jobs(
    part: GridConfig, level, selection: str, generators: tuple[str, ...], n: int, seed: int
) -> list[Job]:
    """The grid's own jobs at one (size, seed) for ``generators`` (ids as the grid's)."""
    one = dataclasses.replace(
        part,
        sizes=(int(n),),
        seeds=(int(seed),),
        levels=(level,),
        generators=generators,
        triplet_selection=(selection,),
    )
    return jobs_of(one)


@dataclass
class PlanResult:
    """What a plan returns.

    table: one row per level (and design): N_target with its interval, the asymptote with
        its interval, the status, why the plan stopped, jobs used (reused), and the
        triplets to collect in total for N_target and its interval's ends.
    generators: per level, design and generator: the same curve on the generator's jobs.
    jobs: every job the plan used (level, selection, generator, n_train, seed, recovered,
        reused).
    fits: (level label, selection) -> the pooled curve's fit.
    """

    spec: StudySpec
    run_id: str
    settings: PlanSettings
    table: pd.DataFrame
    generators: pd.DataFrame
    jobs: pd.DataFrame
    fits: dict[tuple[str, str], CurveFit]
    store: Path
    jobs_run_now: int
    report: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the command line prints as JSON."""
        return {
            "run_id": self.run_id,
            "jobs": len(self.jobs),
            "jobs_run_now": self.jobs_run_now,
            "store": str(Path(self.store).resolve()),
            "report": str(self.report) if self.report is not None else None,
            "levels": self.table.to_dict(orient="records"),
            **self.timings,
        }


def plan_study(
    spec: StudySpec | str | Path,
    tracker: Tracker | None = None,
    settings: PlanSettings | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    selections: tuple[str, ...] | None = None,
    executor: str | None = None,
    progress: bool = True,
    report: bool = True,
    on_batch: Any = None,
) -> PlanResult:
    """Plan ``spec``: per level (and triplet-selection design, ``selections``: default the
    grid's) estimate N_target adaptively; ``tracker`` records a ``plan/<study>`` run with
    every job as a child run, metrics ``n_target_<level>`` / ``n_target_low_<level>`` /
    ``n_target_high_<level>`` / ``asymptote_<level>`` (finite values only; the status as a
    tag), the tables and the figure. ``on_batch(track_label, fit, sizes)`` is told each
    batch (the command line prints it)."""
    if not isinstance(spec, StudySpec):
        spec = load_spec(str(spec), overrides)
    elif overrides:
        raise ValueError("overrides apply to a config name or path, not to a StudySpec")
    if selections:
        grid_update = spec.grid.model_copy(update={"triplet_selection": list(selections)})
        spec = spec.model_copy(update={"grid": grid_update})
    settings = settings or PlanSettings()
    tracker = tracker if tracker is not None else NullTracker()
    start = time.perf_counter()
    checked, executor = check_study(spec, executor)
    labels = [level.label for level in checked.levels]
    wanted = list(settings.levels or labels)
    unknown = [label for label in wanted if label not in labels]
    if unknown:
        raise ValueError(f"--levels: {unknown} not among the grid's levels {labels}")
    all_sizes = sorted({int(n) for e in spec.grid.levels for n in (e.sizes or spec.grid.sizes)})
    min_n = int(settings.min_n or max(10, all_sizes[0] // 10))
    max_n = int(settings.max_n or all_sizes[-1])
    if not 1 <= min_n < max_n:
        raise ValueError(f"--min-n ({min_n}) must be at least 1 and below --max-n ({max_n})")
    # the largest size must fit the concepts: the study's own check, on the plan's range
    levels = [e.model_copy(update={"sizes": None}) for e in spec.grid.levels]
    sized = spec.model_copy(
        update={"grid": spec.grid.model_copy(update={"sizes": [max_n], "levels": levels})}
    )
    floor = 1.0 / len(checked.candidates)
    if settings.target <= floor:
        raise ValueError(
            f"--target {settings.target} is at or below chance (1 / {len(checked.candidates)} "
            "candidates): every size reaches it"
        )
    inputs = study_inputs(spec, progress)
    n_concepts = inputs.human.train.n_concepts
    check_sizes(sized, n_concepts, human_exclusion_keys(inputs.human))
    ladder = np.array(size_ladder(min_n, max_n, tuple(all_sizes)))
    params = {
        "study": spec.study,
        "target": settings.target,
        "levels": ",".join(wanted),
        "triplet_selection": ",".join(checked.triplet_selection),
        "budget_jobs": settings.budget_jobs if settings.budget_jobs else "24 x generators",
        "min_n": min_n,
        "max_n": max_n,
        "max_ratio": settings.max_ratio,
        "batch": settings.batch,
        "initial": settings.initial,
        "first_seed": settings.first_seed,
        "executor": executor,
        "ladder": ",".join(str(int(n)) for n in ladder),
    }
    tags = standard_tags(PLAN.stage) | {"study": spec.study}
    with tracker.run(PLAN.run_name(study=spec.study), tags=tags, params=params) as parent:
        parent.log_dict(spec.as_config(), "config.yaml")
        tic = time.perf_counter()
        setup = prepare_grid(spec, tracker, parent, inputs, checked, progress)
        timings = {"generators_seconds": time.perf_counter() - tic}
        store = setup.store
        tracks = _tracks(setup.grids, wanted, settings)
        # finished jobs of the store at the ladder's sizes: used, and counted as reused
        done = store.done()
        for track in tracks:
            every = dataclasses.replace(
                track.part,
                sizes=tuple(int(n) for n in ladder),
                seeds=tuple(range(REUSE_SEEDS)),
                levels=(track.level,),
                generators=track.generators,
                triplet_selection=(track.selection,),
            )
            found = [job for job in jobs_of(every) if job.job_id in done]
            _ingest(track, found, store, reused=True)
        ran = 0
        tic = time.perf_counter()
        grid = setup.grid

        @functools.cache
        def fits(n: int, seed: int) -> bool:
            try:
                check_sizes_exactly(
                    n_concepts,
                    {seed: n},
                    n_folds=grid.n_folds,
                    train_fraction=grid.train_fraction,
                    eval_fraction=grid.eval_fraction,
                    exclude_keys=setup.jobs_read.exclude_keys,
                )
            except ValueError:
                return False
            return True

        def on_done(job: Job, result: JobResult) -> None:
            record_job(tracker, parent, job, result, setup.grid.device)

        while True:
            batches: dict[int, list[Job]] = {}
            for i, track in enumerate(tracks):
                if track.stop:
                    continue
                sizes = _next_sizes(track, ladder, settings, floor, max_n)
                if on_batch is not None and track.fit is not None:
                    on_batch(track.label, track.fit, sizes)
                if not sizes:
                    continue
                batches[i] = track.jobs(sizes, settings.first_seed, fits)
            if not batches:
                break
            by_part: dict[int, list[tuple[int, list[Job]]]] = {}
            for i, jobs in batches.items():
                by_part.setdefault(id(tracks[i].part), []).append((i, jobs))
            for group in by_part.values():
                part = tracks[group[0][0]].part
                jobs = [job for _, js in group for job in js]
                config = dataclasses.replace(
                    part,
                    sizes=tuple(sorted({j.n_train for j in jobs})),
                    seeds=tuple(sorted({j.seed for j in jobs})),
                )
                ran += len(
                    run_grid(
                        config,
                        setup.jobs_read,
                        store,
                        executor=executor,
                        dask_address=spec.executor.address,
                        n_workers=spec.executor.n_workers,
                        jobs_per_gpu=spec.executor.jobs_per_gpu,
                        progress=progress,
                        on_done=on_done,
                        jobs=jobs,
                    )
                )
                for i, js in group:
                    _ingest(tracks[i], js, store, reused=False)
                    tracks[i].batches += 1
        timings["jobs_seconds"] = time.perf_counter() - tic
        fits = {(t.level.label, t.selection): t.fit for t in tracks if t.fit is not None}
        table = _plan_table(tracks, spec, n_concepts)
        per_generator = _generator_table(tracks, settings, floor, max_n)
        jobs_table = _jobs_table(tracks)
        for _, row in table.iterrows():
            suffix = row["label"]
            metrics = {
                f"n_target_{suffix}": row["n_target"],
                f"n_target_low_{suffix}": row["n_target_low"],
                f"n_target_high_{suffix}": row["n_target_high"],
                f"asymptote_{suffix}": row["asymptote"],
                f"asymptote_low_{suffix}": row["asymptote_low"],
                f"asymptote_high_{suffix}": row["asymptote_high"],
                f"jobs_{suffix}": float(row["jobs"]),
            }
            parent.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
            parent.set_tags({f"status_{suffix}": row["status"], f"stop_{suffix}": row["stop"]})
        parent.log_table(table, "plan/plan.json")
        out = None
        if report:
            from modelrecovery.analysis.plan_report import write_plan_report

            out_dir = tracker.home / "reports" / parent.id
            out = write_plan_report(table, per_generator, jobs_table, fits, out_dir, spec.study)
            parent.log_artifacts(out_dir, "plan")
        timings["seconds"] = time.perf_counter() - start
        parent.log_metrics(timings)
    return PlanResult(
        spec=spec,
        run_id=parent.id,
        settings=settings,
        table=table,
        generators=per_generator,
        jobs=jobs_table,
        fits=fits,
        store=store.root,
        jobs_run_now=ran,
        report=out,
        timings=timings,
    )


def _tracks(grids: list[GridConfig], wanted: list[str], settings: PlanSettings) -> list[_Track]:
    tracks = []
    for part in grids:
        for level in part.levels:
            if level.label not in wanted:
                continue
            for selection in part.triplet_selection:
                budget = settings.budget_jobs or 24 * len(part.generators)
                tracks.append(_Track(level, selection, part, tuple(part.generators), budget))
    order = {label: i for i, label in enumerate(wanted)}
    return sorted(tracks, key=lambda t: order[t.level.label])


def _ingest(track: _Track, jobs: list[Job], store, reused: bool) -> None:
    """Add the stored outcomes of ``jobs`` to ``track``."""
    ids = {job.job_id for job in jobs} - set(track.outcomes)
    if not ids:
        return
    table = store.load(ids)["jobs"]
    for _, row in table.iterrows():
        track.outcomes[row["job_id"]] = (
            int(row["n_train"]),
            int(row["seed"]),
            str(row["generator"]),
            float(row["recovered"]),
            reused,
        )


def _arrays(track: _Track, generator: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    rows = [v for v in track.outcomes.values() if generator is None or v[2] == generator]
    return (
        np.array([r[0] for r in rows], float),
        np.array([r[3] for r in rows], float),
    )


def _next_sizes(
    track: _Track, ladder: np.ndarray, settings: PlanSettings, floor: float, max_n: int
) -> list[int]:
    """The next batch's sizes for ``track`` (:func:`plan_step`), or [] with
    ``track.stop`` set."""
    sizes, outcomes = _arrays(track)
    fit, stop, chosen = plan_step(
        sizes,
        outcomes,
        ladder=ladder,
        floor=floor,
        target=settings.target,
        max_n=max_n,
        max_ratio=settings.max_ratio,
        budget_jobs=track.budget,
        jobs_per_slot=len(track.generators),
        batch=settings.batch,
        initial=settings.initial,
    )
    track.fit = fit if fit is not None else track.fit
    track.stop = stop
    return chosen


def _plan_table(tracks: list[_Track], spec: StudySpec, n_concepts: int) -> pd.DataFrame:
    grid = spec.grid

    def collect(n: float) -> float:
        if n == 0:  # the interval's lower end below every size tried
            return 0.0
        if not math.isfinite(n) or n < 1:
            return math.nan
        try:
            return float(
                triplets_to_collect(
                    int(math.ceil(n)),
                    grid.train_fraction,
                    grid.eval_fraction,
                    n_concepts,
                    grid.n_folds,
                )
            )
        except ValueError:
            return math.nan

    rows = []
    for t in tracks:
        fit = t.fit
        if fit is None:  # the budget ran out before three sizes were tried
            rows.append(
                {"label": t.label, "level": t.level.label, "selection": t.selection}
                | {"generators": len(t.generators), "jobs": len(t.outcomes)}
                | {"status": "too_few_sizes", "stop": t.stop}
            )
            continue
        reused = sum(1 for v in t.outcomes.values() if v[4])
        rows.append(
            {
                "label": t.label,
                "level": t.level.label,
                "selection": t.selection,
                "generators": len(t.generators),
                "jobs": len(t.outcomes),
                "jobs_reused": reused,
                "batches": t.batches,
                "sizes_tried": len({v[0] for v in t.outcomes.values()}),
                "target": fit.target,
                "n_target": fit.n_target,
                "n_target_low": fit.n_target_low,
                "n_target_high": fit.n_target_high,
                "ratio": fit.ratio,
                "asymptote": fit.params.asymptote,
                "asymptote_low": fit.asymptote_low,
                "asymptote_high": fit.asymptote_high,
                "status": fit.status,
                "stop": t.stop,
                "max_n": fit.n_max,
                "triplets_to_collect": collect(fit.n_target),
                "triplets_to_collect_low": collect(fit.n_target_low),
                "triplets_to_collect_high": collect(fit.n_target_high),
            }
        )
    return pd.DataFrame(rows)


def _generator_table(
    tracks: list[_Track], settings: PlanSettings, floor: float, max_n: int
) -> pd.DataFrame:
    """The curve per generator on its own jobs, hardest first (N_target descending, then
    recovery at the largest size tried ascending)."""
    rows = []
    for t in tracks:
        for g in t.generators:
            sizes, outcomes = _arrays(t, g)
            if len(sizes) == 0:
                continue
            top = sizes.max()
            row = {
                "level": t.level.label,
                "selection": t.selection,
                "generator": g,
                "jobs": len(sizes),
                "largest_n": int(top),
                "recovery_at_largest": float(outcomes[sizes == top].mean()),
                "recovery_mean": float(outcomes.mean()),
            }
            if len(np.unique(sizes)) >= 3:
                fit = fit_curve(sizes, outcomes, floor=floor, target=settings.target, n_max=max_n)
                row |= {
                    "n_target": fit.n_target,
                    "n_target_low": fit.n_target_low,
                    "n_target_high": fit.n_target_high,
                    "asymptote": fit.params.asymptote,
                    "status": fit.status,
                }
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_n"] = table.get("n_target", pd.Series(math.nan, index=table.index)).fillna(math.inf)
    table = table.sort_values(
        ["level", "selection", "_n", "recovery_at_largest"], ascending=[True, True, False, True]
    )
    return table.drop(columns="_n").reset_index(drop=True)


def _jobs_table(tracks: list[_Track]) -> pd.DataFrame:
    rows = [
        {
            "level": t.level.label,
            "selection": t.selection,
            "job_id": job_id,
            "generator": g,
            "n_train": n,
            "seed": seed,
            "recovered": recovered,
            "reused": reused,
        }
        for t in tracks
        for job_id, (n, seed, g, recovered, reused) in t.outcomes.items()
    ]
    return pd.DataFrame(rows)
