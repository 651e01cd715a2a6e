"""A whole study, end to end, returning its results (the Python API).

world (or your files) -> features -> generators per (model, level) (tune, fit,
calibrate) -> recovery grid -> analysis report. Everything is recorded by a tracker
(:class:`~modelrecovery.study.tracker.Tracker`): the parent run ``recover/<study>`` holds
the specification, a child run per job (winner, scores), the results tables, recovery
accuracy per level and N (``recovery_accuracy_<level>``, step = N) and the report.

    >>> from modelrecovery.study import run_study, NullTracker
    >>> result = run_study("default", tracker=NullTracker(), overrides=["grid.sizes=[40]"])
    >>> result.curve          # recovery accuracy per level and N (pandas)
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelrecovery.analysis.metrics import (
    level_sort_key,
    recovery_chart_points,
    recovery_curve,
    recovery_metric_points,
    size_steps,
)
from modelrecovery.devices import require_device
from modelrecovery.features.io import load_features
from modelrecovery.probe.fit import warn_once
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.grid import GridConfig, Job, jobs_of
from modelrecovery.recovery.job import JobResult
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.study.diagnostics import Diagnosis, diagnose, format_diagnosis
from modelrecovery.study.generators import (
    Generator,
    build_generators,
    generator_matrix,
    generator_setups,
)
from modelrecovery.study.inputs import (
    StudyInputs,
    check_study_files,
    human_exclusion_keys,
    model_names,
    select_names,
    study_inputs,
)
from modelrecovery.study.keys import file_hash, science_hash
from modelrecovery.study.recover_run import grid_axes_params, record_jobs_used, recover_run_name
from modelrecovery.study.spec import StudySpec, load_spec, probe_parameters
from modelrecovery.study.tracker import NullTracker, Run, Tracker, code_version, standard_tags
from modelrecovery.study.tracking_names import JOB, RECOVER

__all__ = ["StudyResult", "run_study", "run_job", "grid_config", "level_grids", "models_table"]


@dataclass
class StudyResult:
    """What a study returns: its tables (pandas), generators, report and runs."""

    spec: StudySpec
    run_id: str
    jobs: pd.DataFrame
    scores: pd.DataFrame
    fits: pd.DataFrame | None
    models: pd.DataFrame
    curve: pd.DataFrame
    generators: dict[tuple[str, str], Generator]
    store: Path
    jobs_run_now: int
    report: Any = None  # the analysis Report (tables, figures, HTML), or None
    timings: dict[str, float] = field(default_factory=dict)
    tracking: str = ""  # where the runs are (the tracker's description)
    diagnosis: Diagnosis | None = None  # the models checked on the human data

    @property
    def verdict(self) -> list[str]:
        """The verdict's lines (the report's first section), or [] without a report."""
        return list(self.report.verdict) if self.report is not None else []

    def summary(self) -> dict[str, Any]:
        """What the command line prints (where everything was written included)."""
        return {
            "run_id": self.run_id,
            "experiment": self.spec.study,
            "tracking": self.tracking,
            "jobs": len(self.jobs),
            "jobs_run_now": self.jobs_run_now,
            "store": str(Path(self.store).resolve()),
            "report": str(Path(self.report.html).resolve()) if self.report is not None else None,
            **self.timings,
        }


def grid_config(spec: StudySpec, models: list[str], provenance: dict | None = None) -> GridConfig:
    """The recovery grid of the study; ``provenance`` (hashes of every input and the
    generators' runs, see :func:`grid_provenance`) enters the job ids."""
    settings = spec.grid.settings()
    settings["lams"] = tuple(float(v) for v in settings["lams"])
    return GridConfig(
        generators=tuple(select_names(spec.generators, models, "generators")),
        candidates=tuple(select_names(spec.candidates, models, "candidates")),
        sizes=tuple(int(n) for n in spec.grid.sizes),
        seeds=tuple(int(s) for s in spec.grid.seeds),
        levels=spec.grid.level_list,
        calibration=spec.probe.calibration,
        extra=provenance or {},
        **settings,
    )


def level_grids(
    grid: GridConfig, spec: StudySpec, left_out: dict[str, set[str]] | None = None
) -> list[GridConfig]:
    """``grid`` split by the levels' own ``sizes`` / ``seeds`` (``grid.levels[i].sizes``,
    the study's: zero-shot, diagonal and rectangular at 4 sizes x 10 seeds, full W at 18 x
    30) and by the generators each level runs (``left_out``: level label -> generators
    that run no jobs there): one grid per distinct (sizes, seeds, generators), in level
    order. Job ids depend on none of these lists, so a level's jobs are the same whichever
    grid runs them."""
    left_out = left_out or {}
    groups: dict[tuple, list] = {}
    for level, entry in zip(grid.levels, spec.grid.levels, strict=True):
        sizes = tuple(int(n) for n in (entry.sizes or grid.sizes))
        seeds = tuple(int(v) for v in (entry.seeds or grid.seeds))
        runs = tuple(g for g in grid.generators if g not in left_out.get(level.label, set()))
        if runs:
            groups.setdefault((sizes, seeds, runs), []).append(level)
    return [
        dataclasses.replace(grid, sizes=sizes, seeds=seeds, levels=tuple(levels), generators=runs)
        for (sizes, seeds, runs), levels in groups.items()
    ]


def grid_provenance(
    inputs: StudyInputs, candidates: list[str], generators: dict[tuple[str, str], Generator]
) -> dict:
    """What the jobs' results depend on besides the grid's settings: the content of every
    candidate's feature file, the human data, the science's source code, and each
    generator's reuse key (per level and model: what it was computed from, not its run,
    so two processes running one study share their jobs)."""
    by_level: dict[str, dict[str, str]] = {}
    for (level, model), g in generators.items():
        by_level.setdefault(level, {})[model] = g.key or g.run_id
    return {
        "inputs": {
            "features": {m: file_hash(inputs.feature_paths[m]) for m in sorted(candidates)},
            "human": inputs.human.data_hash,
            "code": science_hash(),
        },
        "generators": by_level,
    }


def models_table(
    generators: dict[tuple[str, str], Generator], metadata: dict[str, dict] | None = None
) -> pd.DataFrame:
    """Per (model, level) properties for the analysis (docs/reference/results-tables.md)."""
    metadata = metadata or {}
    rows = []
    for (level, model), g in generators.items():
        n_parameters = metadata.get(model, {}).get("n_parameters")
        rows.append(
            {
                "model": model,
                "family": g.level.family,
                "k": g.level.k,
                "level": level,
                "feature_dim": g.feature_dim,
                "n_parameters": pd.NA if n_parameters is None else int(n_parameters),
                "probe_parameters": probe_parameters(g.level, g.feature_dim),
                "human_accuracy": g.human_test_accuracy,
                "human_nll": g.human_test_nll,
                "lam": g.lam,
                "temperature": g.temperature,
                "calibration": g.calibration,
                "expected_accuracy": g.expected_accuracy,
                "expected_loo_ceiling": g.expected_loo_ceiling,
                "human_loo_ceiling": g.human_loo_ceiling,
                "generator_run": g.run_id,
                "uninformative": g.uninformative,
            }
        )
    table = pd.DataFrame(rows)
    for column in ("k", "n_parameters"):
        table[column] = table[column].astype("Int64")
    return table


def grid_inputs(
    inputs: StudyInputs,
    generators: dict[tuple[str, str], Generator],
    candidates: tuple[str, ...] | list[str],
) -> GridInputs:
    """What the grid's jobs read: each generator's (Z, T), the candidates' features, the
    keys of every human triplet (never simulated) and the human test triplets."""
    features = {
        m: load_features(inputs.feature_paths[m], n_concepts=inputs.human.train.n_concepts)
        for m in candidates
    }
    return GridInputs(
        {key: (g.z, g.temperature) for key, g in generators.items()},
        features,
        human_exclusion_keys(inputs.human),
        human_test=inputs.human.test,
    )


#: metadata that names a model rather than grouping it
NOT_GROUPS = ("backbone", "display", "description", "pretrained", "family", "readout")


def model_groups(metadata: dict[str, dict]) -> dict[str, dict[str, str]]:
    """The report's groupings from the models' metadata: training objective,
    architecture and any other label the specification gives (``labels``), each where at
    least one model has it."""
    from modelrecovery.analysis.groups import group_labels

    keys = ["objective", "architecture"]
    for meta in metadata.values():
        keys += [
            k
            for k, v in meta.items()
            if k not in keys and k not in NOT_GROUPS and isinstance(v, str) and k != "n_parameters"
        ]
    out = {key: group_labels(metadata, key) for key in keys}
    return {key: labels for key, labels in out.items() if labels}


def record_job(
    tracker: Tracker, parent: Run | None, job: Job, result: JobResult, device: str
) -> str:
    """One child run of the study's run per finished job: its parameters, tags and
    metrics (:meth:`Tracker.record`: three requests to a tracking server), timed as the
    job (it ended now, after its own ``seconds``); returns the run's id."""
    row = result.job.iloc[0]
    end = time.time()
    tags = standard_tags(JOB.stage, job.generator, job.level.family) | {
        "winner": str(row["winner"]),
        "job_id": job.job_id,
        "level": job.level.label,
    }
    params = {
        "generator": job.generator,
        "n_train": job.n_train,
        "seed": job.seed,
        "family": job.level.family,
        "k": job.level.k,
        "level": job.level.label,
        "tie_rule": row["tie_rule"],
        "stopping": row["stopping"],
        "device": device,
    }
    metrics = {
        "recovered": float(row["recovered"]),
        "generator_rank": float(row["generator_rank"]),
        "n_tied_top": float(row["n_tied_top"]),
        "seconds": float(row["seconds"]),
    }
    for _, s in result.scores.iterrows():
        metrics[f"score_{s['candidate']}"] = float(s["score"])
    return tracker.record(
        JOB.run_name(job_id=job.job_id),
        tags=tags,
        params=params,
        metrics=metrics,
        parent=parent,
        start_time=end - float(row["seconds"]),
        end_time=end,
    )


def grid_params(grid: GridConfig) -> dict[str, str]:
    """The grid's settings as the study run's parameters."""
    return {
        "levels": ",".join(level.label for level in grid.levels),
        "stopping": grid.stopping,
        "tie_rule": grid.tie_rule,
        "warm_start": grid.warm_start,
        "criterion": grid.criterion,
        "triplet_selection": ",".join(grid.triplet_selection),
        "selection_criterion": grid.selection_criterion,
        "reduction": grid.reduction,
        "evaluation": grid.evaluation,
        "reshuffle": grid.reshuffle,
        "matmul_precision": grid.matmul_precision,
        "sampling": "paper_compatible" if grid.paper_compatible_sampling else "uniform",
    }


def record_results(
    run: Run,
    tables: dict[str, pd.DataFrame],
    curve: pd.DataFrame,
    models: pd.DataFrame,
    metadata: dict[str, dict],
) -> None:
    """The study's results on its run: recovery accuracy per level and N as metrics (step
    = N), mean human accuracy per level, and the tables as ``results/`` artifacts (with
    the model groups, for ``analyze`` to pool)."""
    for name, value, step in recovery_metric_points(curve):
        run.log_metrics({name: value}, step=step)
    for name, value, step in recovery_chart_points(curve):  # the UI's charts: step = N's index
        run.log_metrics({name: value}, step=step)
    run.log_params({"size_steps": " ".join(f"{i}:N={n}" for i, n in enumerate(size_steps(curve)))})
    for level, part in models.groupby("level"):
        run.log_metrics({f"human_accuracy_{level}": float(part["human_accuracy"].mean())})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "results"
        folder.mkdir()
        for name, frame in {**tables, "models": models}.items():
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        curve.to_csv(folder / "recovery_curve.csv", index=False)
        (folder / "groups.json").write_text(json.dumps(model_groups(metadata)))
        run.log_artifacts(folder, "results")


def check_sizes(spec: StudySpec, n_concepts: int, excluded: int | Any = 0) -> None:
    """A one-line error, before any run, when the grid asks for more distinct triplets
    per fold than the study's concepts hold. ``excluded``: the keys of the human triplets
    (:func:`~modelrecovery.study.inputs.human_exclusion_keys`), which simulations avoid:
    then exact, for every level's sizes and seeds and every fold the jobs draw
    (:func:`~modelrecovery.recovery.executors.check_sizes_exactly`); a count only gives
    the check without them and a warning when about too few remain."""
    import numpy as np

    from modelrecovery.analysis.verdict import largest_size
    from modelrecovery.recovery.executors import check_sizes_exactly

    grid = spec.grid
    args = (n_concepts, grid.train_fraction, grid.eval_fraction, grid.n_folds)
    asked = max(max(entry.sizes or grid.sizes) for entry in grid.levels)
    exact = largest_size(*args)
    if asked > exact:
        raise ValueError(
            f"grid.sizes: N = {asked} is more than {n_concepts} concepts allow: a fold's "
            f"training, validation and test concepts hold at most N = {exact} distinct "
            f"triplets (validation and test {grid.eval_fraction:g} N each); use sizes up to "
            f"{exact}"
        )
    if not isinstance(excluded, (int, np.integer)):
        largest: dict[int, int] = {}
        for entry in grid.levels:
            for seed in entry.seeds or grid.seeds:
                n = max(entry.sizes or grid.sizes)
                largest[int(seed)] = max(largest.get(int(seed), 0), int(n))
        check_sizes_exactly(
            n_concepts,
            largest,
            n_folds=grid.n_folds,
            train_fraction=grid.train_fraction,
            eval_fraction=grid.eval_fraction,
            exclude_keys=np.asarray(excluded),
        )
        return
    estimate = largest_size(*args, int(excluded))
    if asked > estimate:
        warn_once(
            f"grid.sizes: N = {asked} is about more than the {n_concepts} concepts hold "
            f"besides the {excluded} human triplets (about N = {estimate}): a job may find "
            "too few distinct triplets to simulate"
        )


def check_study(spec: StudySpec, executor: str | None = None) -> tuple[GridConfig, str]:
    """Every check that needs no data: names, sizes, files, devices. Raises a one-line
    error before any run is created; returns the grid (without provenance) and the
    executor."""
    execution = spec.executor
    executor = executor or execution.kind
    checked = grid_config(spec, model_names(spec))
    check_study_files(spec)
    require_device(spec.probe.device, "probe.device")
    if executor == "inprocess" or not execution.address:  # else the workers check
        require_device(checked.device, "grid.device")
    return checked, executor


@dataclass
class GridSetup:
    """What a study's jobs need, once its generators are built: the generators, the grid
    (with provenance: the jobs' ids), what the jobs read, the results store and the grids
    by level (:func:`level_grids`, uninformative generators left out)."""

    generators: dict[tuple[str, str], Generator]
    grid: GridConfig
    jobs_read: GridInputs
    store: ResultsStore
    grids: list[GridConfig]


def prepare_grid(
    spec: StudySpec,
    tracker: Tracker,
    parent: Run | None,
    inputs: StudyInputs,
    checked: GridConfig,
    progress: bool = True,
) -> GridSetup:
    """Build (or reuse) the generators of ``spec`` under ``parent`` and set up its grid:
    the part of :func:`run_study` between reading the data and running jobs (``plan``
    shares it)."""
    models = list(inputs.feature_paths)
    wanted = select_names(spec.generators, models, "generators")
    if set(checked.triplet_selection) - {"random"}:  # designs need every candidate's probe
        chosen = select_names(spec.candidates, models, "candidates")
        wanted = wanted + [m for m in chosen if m not in wanted]
    generators = build_generators(
        {m: inputs.feature_paths[m] for m in wanted},
        inputs.human,
        tracker=tracker,
        setups=generator_setups(spec),
        parent=parent,
        progress=progress,
        workers=spec.probe.workers,
    )
    candidates = select_names(spec.candidates, models, "candidates")
    grid = grid_config(spec, models, grid_provenance(inputs, candidates, generators))
    jobs_read = grid_inputs(inputs, generators, grid.candidates)
    store = ResultsStore(spec.store or tracker.home / "results" / spec.study)
    left_out: dict[str, set[str]] = {}
    for (level, model), g in generators.items():
        if not g.simulates:  # uninformative about the human triplets: no jobs
            left_out.setdefault(level, set()).add(model)
    grids = level_grids(grid, spec, left_out)
    if not grids:
        raise ValueError(
            "every generator is uninformative about the held-out human triplets (see "
            "the warnings above): nothing to recover; include_uninformative=true runs "
            "them anyway"
        )
    return GridSetup(generators, grid, jobs_read, store, grids)


def run_study(
    spec: StudySpec | str | Path,
    tracker: Tracker | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    executor: str | None = None,
    progress: bool = True,
    on_check: Callable[[Diagnosis], None] | None = None,
) -> StudyResult:
    """Run the study ``spec`` (a :class:`StudySpec`, or a config name or path read with
    ``overrides``) and return its results; ``tracker`` records it (default: a
    :class:`~modelrecovery.study.tracker.NullTracker`, nothing durable). ``on_check``
    receives the models' diagnosis (what ``modelrecovery check`` prints) once the data are
    read, before any run is created."""
    if not isinstance(spec, StudySpec):
        spec = load_spec(str(spec), overrides)
    elif overrides:
        raise ValueError("overrides apply to a config name or path, not to a StudySpec")
    tracker = tracker if tracker is not None else NullTracker()
    start = time.perf_counter()
    checked, executor = check_study(spec, executor)
    execution = spec.executor
    timings: dict[str, float] = {}
    tags = standard_tags(RECOVER.stage) | {"study": spec.study}
    params = {
        "study": spec.study,
        "rules": spec.rules,
        "executor": executor,
        "device": checked.device,
        "probe_device": spec.probe.device,
    } | grid_axes_params(spec, checked)
    # every file read and checked before any run is created: a data error leaves none
    tic = time.perf_counter()
    inputs = study_inputs(spec, progress)
    timings["inputs_seconds"] = time.perf_counter() - tic
    check_sizes(spec, inputs.human.train.n_concepts, human_exclusion_keys(inputs.human))
    diagnosis = diagnose(spec, inputs, timing=False)
    if on_check is not None:
        on_check(diagnosis)
    with tracker.run(recover_run_name(spec, checked), tags=tags, params=params) as parent:
        parent.log_dict(spec.as_config(), "config.yaml")
        parent.log_dict({"lines": format_diagnosis(diagnosis)}, "check.json")
        tic = time.perf_counter()
        setup = prepare_grid(spec, tracker, parent, inputs, checked, progress)
        generators, grid, jobs_read, store, grids = (
            setup.generators,
            setup.grid,
            setup.jobs_read,
            setup.store,
            setup.grids,
        )
        timings["generators_seconds"] = time.perf_counter() - tic
        parent.log_params(grid_params(grid))
        tic = time.perf_counter()
        ran: list[Job] = []

        new_runs: dict[str, str] = {}  # job id -> its run, for the jobs run now

        def on_done(job: Job, result: JobResult) -> None:
            new_runs[job.job_id] = record_job(tracker, parent, job, result, grid.device)

        for part in grids:  # one grid per distinct (sizes, seeds) of the levels
            ran += run_grid(
                part,
                jobs_read,
                store,
                executor=executor,
                dask_address=execution.address,
                n_workers=execution.n_workers,
                jobs_per_gpu=execution.jobs_per_gpu,
                progress=progress,
                on_done=on_done,
            )
        timings["jobs_seconds"] = time.perf_counter() - tic
        record_jobs_used(tracker, parent, [j for part in grids for j in jobs_of(part)], new_runs)
        tables = store.load({job.job_id for part in grids for job in jobs_of(part)})
        curve = recovery_curve(tables["jobs"])
        models_df = models_table(generators, inputs.metadata)
        record_results(parent, tables, curve, models_df, inputs.metadata)
        report = None
        if spec.report:
            tic = time.perf_counter()
            report = study_report(
                tracker,
                parent,
                tables,
                models_df,
                generators,
                jobs_read.candidate_features,
                inputs,
                spec,
            )
            timings["report_seconds"] = time.perf_counter() - tic
        timings["seconds"] = time.perf_counter() - start
        parent.log_metrics(timings)
    return StudyResult(
        spec=spec,
        run_id=parent.id,
        jobs=tables["jobs"],
        scores=tables["scores"],
        fits=tables.get("fits"),
        models=models_df,
        curve=curve,
        generators=generators,
        store=store.root,
        jobs_run_now=len(ran),
        report=report,
        timings=timings,
        tracking=str(getattr(tracker, "uri", tracker.home)),
        diagnosis=diagnosis,
    )


def human_scores_table(generators: dict[tuple[str, str], Generator]) -> pd.DataFrame:
    """Each generator's fitted probe on every held-out human response (the verdict's
    leaderboard compares models on the same responses): model, level, response, correct
    (accuracy credit, ties shared), nll."""
    frames = [
        pd.DataFrame(
            {
                "model": model,
                "level": level,
                "response": range(len(g.human_correct)),
                "correct": g.human_correct,
                "nll": g.human_nll,
            }
        )
        for (level, model), g in generators.items()
        if g.human_correct is not None
    ]
    columns = ["model", "level", "response", "correct", "nll"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def study_report(tracker, parent, tables, models_df, generators, features, inputs, spec):
    """Build the analysis report into the tracker's home and record it under ``report``;
    returns the ``Report`` (its ``verdict`` lines first)."""
    from modelrecovery.analysis import ReportConfig, build_report

    # geometry: the most flexible level's transforms (the others are in their runs)
    levels = sorted({level for level, _ in generators}, key=level_sort_key)
    top = levels[-1]
    transforms = {
        name: generator_matrix(tracker, g)
        for (level, name), g in generators.items()
        if level == top
    }
    out_dir = tracker.home / "reports" / parent.id
    provenance = {
        "recover_run": parent.id,
        "git_commit": code_version(),
        "human_data_hash": inputs.human.data_hash,
        "generator_runs": {f"{m}/{lv}": g.run_id for (lv, m), g in generators.items()},
        "geometry_level": top,
        **inputs.provenance,
    }
    report = build_report(
        tables["jobs"],
        tables["scores"],
        models_df,
        features={m: features[m] for m in transforms if m in features},
        transforms=transforms,
        human_embedding=inputs.human_embedding,
        provenance=provenance,
        out_dir=out_dir,
        config=ReportConfig(
            geometry_level=top,
            reference=spec.reference,
            n_folds=spec.grid.n_folds,
            train_fraction=spec.grid.train_fraction,
            eval_fraction=spec.grid.eval_fraction,
            n_concepts=inputs.human.train.n_concepts,
        ),
        groups=model_groups(inputs.metadata),
        human_scores=human_scores_table(generators),
    )
    parent.log_artifacts(out_dir, "report")
    log_recovery_figure(parent, out_dir)
    return report


def log_recovery_figure(run: Run, report_dir: Path) -> None:
    """The report's recovery figure (log N, exact CIs, chance) at the top of the run's
    artifacts, ``recovery_accuracy.png``: the MLflow view of the curves to read."""
    figure = Path(report_dir) / "figures" / "recovery_accuracy.png"
    if figure.exists():
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / figure.name).write_bytes(figure.read_bytes())
            run.log_artifacts(Path(tmp))


def run_job(
    spec: StudySpec | str | Path,
    generator: str,
    n_train: int,
    seed: int = 0,
    level: str | None = None,
    tracker: Tracker | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
) -> JobResult:
    """One recovery job of the study (its generator at ``level``, default the grid's
    last, simulating ``n_train`` training triplets with ``seed``): the job's tables (the
    same job, id and numbers, as the study's grid runs), not stored. The generator it
    needs is built (or reused) through ``tracker``."""
    from modelrecovery.recovery.job import run_job as compute_job

    if not isinstance(spec, StudySpec):
        spec = load_spec(str(spec), overrides)
    tracker = tracker if tracker is not None else NullTracker()
    check_study(spec, "inprocess")
    inputs = study_inputs(spec, progress=False)
    models = list(inputs.feature_paths)
    grid = grid_config(spec, models)
    chosen = next((lv for lv in grid.levels if lv.label == (level or grid.levels[-1].label)), None)
    if chosen is None:
        labels = [lv.label for lv in grid.levels]
        raise ValueError(f"level {level!r} is not a level of the grid: {labels}")
    if generator not in models:
        raise ValueError(f"unknown generator {generator!r}; known models: {models}")
    setups = [s for s in generator_setups(spec) if s.level == chosen]
    built = build_generators(
        {generator: inputs.feature_paths[generator]},
        inputs.human,
        tracker=tracker,
        setups=setups,
        progress=False,
    )
    g = built[(chosen.label, generator)]
    if not g.simulates:
        raise ValueError(
            f"generator {generator} at level {chosen.label} is left out: {g.uninformative} "
            "(include_uninformative=true calibrates it anyway)"
        )
    candidates = list(grid.candidates)
    grid = grid_config(spec, models, grid_provenance(inputs, candidates, built))  # the study's ids
    grid = dataclasses.replace(grid, sizes=(int(n_train),), seeds=(int(seed),), levels=(chosen,))
    job = next(j for j in jobs_of(grid) if j.generator == generator)
    read = grid_inputs(inputs, built, grid.candidates)
    return compute_job(
        job,
        grid,
        g.z,
        g.temperature,
        read.candidate_features,
        read.exclude_keys,
        human_test=read.human_test if grid.human_heldout else None,
    )
