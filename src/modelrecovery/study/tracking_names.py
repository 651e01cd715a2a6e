"""What a study records in MLflow, in one place: per kind of run, its name, tags,
parameters, metrics and artifacts, each with its meaning.

The code names its runs and stages from here (:meth:`RunKind.run_name`,
:attr:`RunKind.stage`); the docs' page *MLflow runs, tags, parameters, metrics* is rendered
from here (:mod:`modelrecovery.reference.tracking`); and a test runs a small study and
fails on a key a run logs that is not listed here, or a key listed as always present that
a run did not log.

A name may hold placeholders in angle brackets, e.g. ``recovery_accuracy_<curve>`` or
``fit/<model>/<family>``: a placeholder stands for one or more characters. An artifact
ending in ``/`` is a folder (everything under it). This module changes no result, so it is
no part of the science's hash (``study.keys.NOT_SCIENCE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Entry", "RunKind", "KINDS", "PARTS", "SHARED_TAGS", "kind_of_stage"]

#: the parts of a run the registry lists, in the order of the docs
PARTS = ("tags", "params", "metrics", "artifacts")

_PLACEHOLDER = re.compile(r"<(\w+)>")


@dataclass(frozen=True)
class Entry:
    """A tag, parameter, metric or artifact: its name (placeholders in ``<...>``), its
    meaning, and ``when`` it is logged (empty: on every run of its kind)."""

    name: str
    meaning: str
    when: str = ""

    @property
    def always(self) -> bool:
        return not self.when

    def matches(self, key: str) -> bool:
        """Whether ``key`` (a logged name, or an artifact's path) is this entry."""
        if self.name.endswith("/"):
            return key.startswith(self.name)
        parts = _PLACEHOLDER.split(self.name)
        # split() alternates literal text and placeholder names: literals at even places
        pattern = ".+".join(re.escape(text) for text in parts[::2])
        return re.fullmatch(pattern, key) is not None


@dataclass(frozen=True)
class RunKind:
    """One kind of run: its ``stage`` tag, its name (placeholders in ``<...>``), what it
    is, its parent kinds, and its tags, parameters, metrics and artifacts."""

    stage: str
    name: str
    what: str
    parents: str
    tags: tuple[Entry, ...]
    params: tuple[Entry, ...]
    metrics: tuple[Entry, ...]
    artifacts: tuple[Entry, ...] = ()

    def run_name(self, **fields: object) -> str:
        """The run's name with its placeholders filled (every one must be given)."""
        names = _PLACEHOLDER.findall(self.name)
        if set(fields) != set(names):
            raise ValueError(f"run name {self.name}: expected fields {names}, got {sorted(fields)}")
        return _PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]), self.name)

    def named(self, run_name: str) -> bool:
        """Whether ``run_name`` is a name of this kind."""
        return Entry(self.name, "").matches(run_name)

    def entries(self, part: str) -> tuple[Entry, ...]:
        """The entries of one of :data:`PARTS`."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return getattr(self, part)

    def unlisted(self, part: str, keys) -> list[str]:
        """The ``keys`` logged as ``part`` that no entry of the part lists."""
        entries = self.entries(part)
        return sorted(k for k in keys if not any(e.matches(k) for e in entries))

    def missing(self, part: str, keys) -> list[str]:
        """The entries of ``part`` listed as always logged that none of ``keys`` is."""
        keys = list(keys)
        return [
            e.name for e in self.entries(part) if e.always and not any(e.matches(k) for k in keys)
        ]


# ----------------------------------------------------------------------------------------------
# Entries shared by several kinds
# ----------------------------------------------------------------------------------------------

GIT_COMMIT = Entry(
    "git_commit",
    "the project's commit (`+dirty` when `src/` has uncommitted changes; the package "
    "version outside a git checkout)",
)
RUN_NAME = Entry("mlflow.runName", "the run's name (above)")
PARENT = Entry("mlflow.parentRunId", "the parent run", "the run is a child run")
MLFLOW_OWN = Entry(
    "mlflow.<tag>",
    "MLflow's own tags: `mlflow.user`, `mlflow.source.name`, `mlflow.source.type`, "
    "`mlflow.source.git.commit`, `mlflow.loggedArtifacts` (a table artifact) and others",
    "set by MLflow",
)
PROCESS = Entry(
    "modelrecovery.process",
    "`<host>:<pid>` of the process running the run: a run left RUNNING by a process that is "
    "gone is ended KILLED by the next study on that machine",
)
STALE = Entry(
    "stale",
    "what happened to a run whose process ended without ending it (it is then KILLED)",
    "the run was left RUNNING by a killed process",
)
INPUTS_KEY = Entry(
    "inputs_key",
    "hash of the entry point, its parameters, the data's hashes and the science's source: "
    "a finished run with the same key is reused instead of recomputed",
)
MODEL = Entry("model", "the model")
FAMILY = Entry("family", "the probe family: `zero_shot`, `diagonal`, `rectangular`, `full`")
CONVERGED_TAG = Entry("converged", "`true` or `false`: whether every fit of the run may be trusted")
WARNING = Entry("warning", "why a fit must not be trusted", "some fit must not be trusted")
DEVICE = Entry("device", "where the fits ran: `cpu`, `cuda:<n>` (it enters no reuse key)")
HASHES = Entry("hash_<data>", "SHA-256 of the input files: `hash_features`, `hash_triplets`")
STUDY_TAG = Entry("study", "the study (the experiment's name)")

#: the tags most kinds carry (the docs list them once, the kinds' tables the rest)
SHARED_TAGS = (GIT_COMMIT, MODEL, FAMILY, RUN_NAME, PARENT, MLFLOW_OWN, PROCESS, STALE)


def _tracked(stage: str, *extra: Entry, model: bool = True, process: bool = True) -> tuple:
    """The tags every run of a kind carries, then ``extra``."""
    out = [Entry("stage", f"`{stage}`"), GIT_COMMIT]
    if model:
        out += [MODEL, FAMILY]
    out += [RUN_NAME, PARENT, MLFLOW_OWN]
    if process:
        out += [PROCESS, STALE]
    return (*out, *extra)


# the recovery curves' metric names (analysis.metrics.recovery_metric_points)
CURVE = (
    "`<curve>` is the level (e.g. `full`), with `_<triplet_selection>` appended when the "
    "selection is not `random`, and `_<first 8 hex of condition_key>` when several "
    "conditions share them"
)

# ----------------------------------------------------------------------------------------------
# The kinds of run
# ----------------------------------------------------------------------------------------------

RECOVER = RunKind(
    stage="recover",
    name="recover/<study>/<digest>",
    what="a study: its generators, its jobs, its tables and its report. `<digest>`: 8 hex "
    "characters of the grid's axes and settings (two runs of the same grid share the name)",
    parents="none (under `mlflow run`, it continues the launcher's run)",
    tags=_tracked(
        "recover",
        STUDY_TAG,
        Entry("jobs_new", "the number of the grid's jobs this run ran"),
        Entry("jobs_reused", "the number of the grid's jobs found finished in the store"),
        Entry(
            "reused_from",
            "the earlier recover runs whose job runs this one reused: their run ids, or their "
            "count beyond 10",
            "jobs were reused from earlier recover runs",
        ),
        Entry(
            "jobs_reused_without_run",
            "reused jobs that have no job run (a store filled elsewhere)",
            "some reused job has no run",
        ),
        model=False,
    ),
    params=(
        STUDY_TAG,
        Entry("rules", "the study's rules: `platform` or a profile such as `study_scripts`"),
        Entry("executor", "where the jobs ran: `inprocess` or `dask`"),
        Entry("device", "where the jobs' fits ran (`grid.device`)"),
        Entry("probe_device", "where the generators' fits ran (`probe.device`)"),
        Entry("sizes", "the grid's sizes N, comma-separated"),
        Entry("seeds", "the grid's seeds, comma-separated"),
        Entry("generators", "the generators, comma-separated"),
        Entry("candidates", "the candidates, comma-separated"),
        Entry("levels", "the levels, comma-separated"),
        Entry("sizes_<level>", "a level's own sizes", "a level has its own sizes"),
        Entry("seeds_<level>", "a level's own seeds", "a level has its own seeds"),
        Entry("grid_digest", "the run name's last part"),
        Entry("stopping", "the grid's stopping rule"),
        Entry("tie_rule", "the grid's tie rule"),
        Entry("warm_start", "the grid's warm start"),
        Entry("criterion", "the grid's criterion"),
        Entry("triplet_selection", "the grid's triplet selections, comma-separated"),
        Entry("selection_criterion", "the grid's crowning rule"),
        Entry("reduction", "the grid's reduction"),
        Entry("evaluation", "the grid's evaluation"),
        Entry("reshuffle", "the grid's reshuffle"),
        Entry("matmul_precision", "the grid's matmul precision"),
        Entry("sampling", "`uniform` or `paper_compatible`"),
        Entry(
            "size_steps",
            "which N each step of the `recovery_by_size_*` metrics is, e.g. "
            "`0:N=40 1:N=400 2:N=4000`",
        ),
    ),
    metrics=(
        Entry(
            "recovery_accuracy_<curve>",
            f"recovery accuracy, step = N (`analyze` reads these); {CURVE}",
        ),
        Entry(
            "recovery_by_size_<curve>",
            "the same with step = the index of N in `size_steps`: sizes evenly spaced and "
            "shared by the levels, so several curves fit on one chart",
        ),
        Entry("recovery_ci_low_by_size_<curve>", "its exact 95% interval's lower end"),
        Entry("recovery_ci_high_by_size_<curve>", "its exact 95% interval's upper end"),
        Entry("human_accuracy_<level>", "mean human held-out accuracy of the level's generators"),
        Entry("jobs_new", "as the tag"),
        Entry("jobs_reused", "as the tag"),
        Entry("inputs_seconds", "reading the data and features"),
        Entry("generators_seconds", "building (or finding) the generators"),
        Entry("jobs_seconds", "running the jobs"),
        Entry("report_seconds", "building the report", "`report` is on"),
        Entry("seconds", "the whole study"),
    ),
    artifacts=(
        Entry("config.yaml", "the study's specification, every setting"),
        Entry("check.json", "the models' diagnosis (what `modelrecovery check` prints)"),
        Entry(
            "jobs_used.json",
            "one row per job of the grid: job id, run id of its job run, reused or new, the "
            "recover run that ran it",
        ),
        Entry(
            "results/<table>.parquet",
            "the results tables `jobs`, `scores`, `fits`, `models` (their columns: "
            "[Results tables](results-tables.md))",
        ),
        Entry("results/recovery_curve.csv", "recovery accuracy per condition and N"),
        Entry("results/groups.json", "the models' groups, for `analyze` to pool"),
        Entry("report/", "the report: `report.html`, `figures/`, `tables/`", "`report` is on"),
        Entry(
            "recovery_accuracy.png",
            "the report's recovery figure (N on a log axis, exact 95% intervals, chance)",
            "`report` is on",
        ),
    ),
)

GENERATOR = RunKind(
    stage="generator",
    name="generator/<model>/<level>",
    what="a model as the generator of one level: λ tuned, the probe fitted on the human "
    "triplets, the temperature calibrated; reused by `inputs_key`",
    parents="recover, plan (or none: `modelrecovery generators`)",
    tags=_tracked(
        "generator",
        Entry("level", "the level's label, e.g. `rectangular8`"),
        INPUTS_KEY,
        Entry(
            "uninformative",
            "`true`: the fitted probe predicts the held-out human triplets no better than "
            "chance; it runs no jobs unless `include_uninformative`",
            "the generator is uninformative",
        ),
        Entry("uninformative_reason", "why", "the generator is uninformative"),
    ),
    params=(
        MODEL,
        Entry("level", "the level's label"),
        FAMILY,
        Entry("k", "columns of a rectangular W (`None` otherwise)"),
        Entry("regulariser", "`scalar_shrinkage`, `l2`, `l1`"),
        Entry("ceiling", "the given noise ceiling (`None`: measured on the repeated triplets)"),
        Entry("calibration", "`study` or `loo_matched`"),
        Entry("dtype", "`float32` or `float64`"),
        Entry("feature_dim", "p, the features' dimension"),
        Entry("probe_parameters", "the probe's free parameters at this level"),
        Entry("stopping", "the stopping rule"),
        Entry("reduction", "the reduction"),
        Entry("reshuffle", "the study's per-step reshuffle"),
        DEVICE,
        Entry("features_path", "the feature file"),
        HASHES,
    ),
    metrics=(
        Entry("lam", "λ chosen by cross-validation (0 for `zero_shot`)"),
        Entry("temperature", "the calibrated temperature T (NaN when uninformative)"),
        Entry("expected_accuracy", "at T, the mean largest choice probability on the repeated set"),
        Entry("expected_loo_ceiling", "at T, the expected leave-one-out noise ceiling"),
        Entry("human_loo_ceiling", "the humans' leave-one-out noise ceiling"),
        Entry("human_test_accuracy", "the fitted probe's accuracy on the held-out human triplets"),
        Entry("human_test_nll", "its mean NLL there"),
        Entry("seconds", "wall time"),
    ),
    artifacts=(
        Entry("generator/z.npy", "Z = X W, the generator's transformed features"),
        Entry("generator/W.npy", "the fitted W"),
        Entry("generator/generator.json", "everything the grid needs: λ, T, runs, statistics"),
        Entry(
            "generator/human_test.npz",
            "the fitted probe's accuracy credit and NLL on every held-out human response (the "
            "verdict's leaderboard)",
        ),
    ),
)

TUNE = RunKind(
    stage="tune",
    name="tune/<model>/<family>",
    what="λ by cross-validation (an Optuna study; one trial run per λ), then the refit with "
    "the best λ on all training triplets (a fit run). Zero-shot: no λ, only the fit",
    parents="generator (or none: `modelrecovery tune`)",
    tags=_tracked("tune", INPUTS_KEY, CONVERGED_TAG, WARNING),
    params=(
        MODEL,
        FAMILY,
        Entry("k", "columns of a rectangular W (`None` otherwise)"),
        Entry("regulariser", "the regulariser"),
        Entry("method", "`grid` (every λ) or `tpe` (Optuna's sampler)"),
        Entry("lams", "the λ grid (or range)"),
        Entry("n_folds", "cross-validation folds"),
        Entry("fold_kind", "what the folds split: `triplets` or `concepts`"),
        Entry("n_trials", "trials of a `tpe` search"),
        Entry("seed", "the folds' and the sampler's seed"),
        Entry("stopping", "the stopping rule"),
        DEVICE,
        Entry(
            "optuna_study",
            "the Optuna study: `<experiment>/tune/<model>/<family>/<12 hex of inputs_key>`",
            "the family is not `zero_shot`",
        ),
    ),
    metrics=(
        Entry("best_lam", "the λ chosen (0 for `zero_shot`)"),
        Entry("refit_<metric>", "the refit's metrics, as on its fit run"),
    ),
    artifacts=(Entry("trials.json", "the Optuna trials table", "the family is not `zero_shot`"),),
)

TRIAL = RunKind(
    stage="tune_trial",
    name="trial/<model>/<family>/<n>",
    what="one λ of a tuning: its fold fits' validation scores",
    parents="tune",
    tags=_tracked(
        "tune_trial",
        CONVERGED_TAG,
        Entry("unconverged_folds", "how many fold fits must not be trusted", "some must not"),
        WARNING,
        Entry("pruned", "`true`: Optuna stopped the trial early", "the trial was pruned"),
    ),
    params=(
        Entry("lam", "λ"),
        Entry("trial", "the trial's number `<n>`"),
        Entry("study", "the Optuna study"),
    ),
    metrics=(
        Entry("fold_val_accuracy", "a fold's validation accuracy, step = the fold"),
        Entry("fold_val_nll", "a fold's validation NLL, step = the fold"),
        Entry("val_accuracy", "mean over folds (Optuna's objective)", "the trial was not pruned"),
        Entry("val_nll", "mean over folds", "the trial was not pruned"),
    ),
)

FIT = RunKind(
    stage="fit",
    name="fit/<model>/<family>",
    what="one probe fitted on human triplets with `lightning.Trainer`",
    parents="tune (or none: `modelrecovery fit`)",
    tags=_tracked(
        "fit",
        CONVERGED_TAG,
        Entry(
            "stop_reason",
            "why L-BFGS stopped: `rule` (its rule was met), `max_steps` or `non_finite`",
        ),
        Entry("degenerate_features", "`true`", "the features are degenerate"),
        WARNING,
        Entry(
            "failure",
            "why the fit has no usable result; the run ends FAILED",
            "`modelrecovery fit` diverged",
        ),
    ),
    params=(
        MODEL,
        Entry("feature_dim", "p, the features' dimension"),
        Entry("n_validation", "validation triplets (0: none)"),
        Entry("n_test", "test triplets (the repeated human set)"),
        Entry("stopping", "the stopping rule"),
        Entry("reduction", "the reduction"),
        Entry("reshuffle", "the study's per-step reshuffle"),
        DEVICE,
        HASHES,
        # the Lightning module's hyperparameters (probe.lightning_module)
        Entry("family", "the probe family (logged by Lightning)"),
        Entry("k", "columns of a rectangular W"),
        Entry("regulariser", "the regulariser"),
        Entry("lam", "λ"),
        Entry("temperature", "T during the fit (1)"),
        Entry("n_train", "training triplets"),
        Entry("p", "the features' dimension"),
        Entry("reduced_rank", "rank of the training row space when W is reduced (`None`: not)"),
        Entry("path", "the objective's path: `dense` or `sparse`"),
        Entry("dtype", "`float32` or `float64`"),
    ),
    metrics=(
        Entry("train_accuracy", "on the training triplets"),
        Entry("train_nll", "mean NLL on the training triplets"),
        Entry("val_accuracy", "on the validation triplets", "validation triplets are given"),
        Entry("val_nll", "on the validation triplets", "validation triplets are given"),
        Entry("test_accuracy", "on the test triplets", "test triplets are given"),
        Entry("test_nll", "on the test triplets", "test triplets are given"),
        Entry("iterations", "L-BFGS iterations"),
        Entry("evaluations", "objective evaluations"),
        Entry("converged", "1 when the fit may be trusted, else 0"),
        Entry("seconds", "wall time of the fit"),
        Entry("train_objective", "the penalised loss: `train_nll` + λ R(W)"),
        Entry("final_loss", "the same (the name Lightning users look for)"),
        Entry("train_loss", "the loss per L-BFGS step (logged by Lightning)"),
        Entry("epoch", "Lightning's step counter, beside `train_loss`"),
    ),
    artifacts=(
        Entry("W.npy", "the fitted W"),
        Entry("loss_curve.png", "the loss per L-BFGS step"),
        Entry(
            "probe/",
            'the probe as an MLflow pyfunc model: `mlflow.pyfunc.load_model("runs:/<run>/probe")`'
            " predicts on a DataFrame with columns `i, j, k`",
            "`modelrecovery fit` or `tune` (a generator's fit stores W and Z on the generator "
            "run instead)",
        ),
    ),
)

CALIBRATE = RunKind(
    stage="calibrate",
    name="calibrate/<model>/<level>",
    what="the temperature T at which the fitted probe is as noisy as people. Its tag "
    "`family` holds the level's label (e.g. `rectangular8`)",
    parents="generator (or none: `modelrecovery calibrate`)",
    tags=_tracked("calibrate"),
    params=(
        Entry("calibration", "`study` (expected accuracy) or `loo_matched` (expected LOO ceiling)"),
        Entry("ceiling_source", "`repeated triplets` (measured) or `given`"),
        Entry("n_responses", "repeated responses"),
        Entry("n_triplets", "distinct repeated triplets"),
        DEVICE,
    ),
    metrics=(
        Entry("temperature", "T"),
        Entry("ceiling", "the target"),
        Entry("achieved_agreement", "the matched statistic at T"),
        Entry("expected_accuracy", "at T, the mean largest choice probability"),
        Entry("expected_loo_ceiling", "at T, the expected leave-one-out noise ceiling"),
        Entry("human_loo_ceiling", "the humans' leave-one-out noise ceiling"),
    ),
)

JOB = RunKind(
    stage="job",
    name="job/<job_id>",
    what="one recovery job (generator, N, seed, level), recorded when it finishes; its "
    "start and end are the job's own",
    parents="recover, plan",
    tags=_tracked(
        "job",
        Entry("job_id", "the job's id (`jobs.job_id`)"),
        Entry("level", "the level's label"),
        Entry("winner", "the crowned candidate"),
        process=False,
    ),
    params=(
        Entry("generator", "the generating model g"),
        Entry("n_train", "N"),
        Entry("seed", "the simulation seed"),
        FAMILY,
        Entry("k", "columns of a rectangular W (`None` otherwise)"),
        Entry("level", "the level's label"),
        Entry("tie_rule", "the tie rule"),
        Entry("stopping", "the stopping rule"),
        DEVICE,
    ),
    metrics=(
        Entry("recovered", "1 when the winner is the generator (and decided), else 0"),
        Entry("generator_rank", "g's rank among the candidates"),
        Entry("n_tied_top", "candidates tied at the best score"),
        Entry("seconds", "wall time of the job"),
        Entry("score_<candidate>", "each candidate's score (`scores.score`)"),
    ),
)

PLAN = RunKind(
    stage="plan",
    name="plan/<study>",
    what="`modelrecovery plan`: the sizes N where recovery reaches its target, by batches "
    "of jobs. Its tags and metrics name each level by `<label>`: the level, with "
    "`_<triplet_selection>` when not `random`",
    parents="none",
    tags=_tracked(
        "plan",
        STUDY_TAG,
        Entry("status_<label>", "`reached`, `unreachable`, `undetermined` or `too_few_sizes`"),
        Entry("stop_<label>", "why the level's planning stopped"),
        model=False,
    ),
    params=(
        STUDY_TAG,
        Entry("target", "the recovery accuracy to reach"),
        Entry("levels", "the levels planned"),
        Entry("triplet_selection", "the designs planned"),
        Entry("budget_jobs", "jobs per level and design"),
        Entry("min_n", "the smallest N considered"),
        Entry("max_n", "the largest N considered"),
        Entry("max_ratio", "stop when `N_target`'s interval has high / low at most this"),
        Entry("batch", "(size, seed) slots per batch after the first"),
        Entry("initial", "slots of the first batch"),
        Entry("first_seed", "the first seed of new slots"),
        Entry("executor", "where the jobs ran"),
        Entry("ladder", "the sizes N considered"),
    ),
    metrics=(
        Entry(
            "n_target_<label>", "`N_target`: where the fitted curve reaches the target", "finite"
        ),
        Entry("n_target_low_<label>", "its interval's lower end", "finite"),
        Entry("n_target_high_<label>", "its interval's upper end", "finite"),
        Entry("asymptote_<label>", "the fitted curve's asymptote", "finite"),
        Entry("asymptote_low_<label>", "its interval's lower end", "finite"),
        Entry("asymptote_high_<label>", "its interval's upper end", "finite"),
        Entry("jobs_<label>", "the level's jobs"),
        Entry("generators_seconds", "building (or finding) the generators"),
        Entry("jobs_seconds", "running the jobs"),
        Entry("seconds", "the whole plan"),
    ),
    artifacts=(
        Entry("config.yaml", "the study's specification"),
        Entry("plan/plan.json", "one row per level and design: `N_target`, asymptote, status"),
        Entry("plan/", "the plan's report: `report.html`, figures, tables", "`report` is on"),
    ),
)

ANALYZE = RunKind(
    stage="analyze",
    name="analyze/<study>",
    what="`modelrecovery analyze`: the report over several recover runs, pooled (one job per "
    "condition, generator, N and seed; the latest run wins)",
    parents="none",
    tags=_tracked(
        "analyze",
        Entry("sources", "the recover runs pooled, comma-separated"),
        model=False,
        process=False,
    ),
    params=(
        Entry("n_sources", "recover runs pooled"),
        Entry("n_jobs", "jobs kept"),
        Entry("n_duplicate_jobs", "job rows dropped as duplicates"),
    ),
    metrics=(
        Entry(
            "recovery_accuracy_<curve>",
            f"recovery accuracy of the pooled jobs, step = N; {CURVE}",
        ),
    ),
    artifacts=(
        Entry(
            "pooling.json",
            "the conditions' labels by `condition_key`, and the jobs kept per source run",
        ),
        Entry("report/", "the report: `report.html`, `figures/`, `tables/`"),
    ),
)

#: every kind of run, by its ``stage`` tag, in the order of the docs
KINDS: dict[str, RunKind] = {
    k.stage: k for k in (RECOVER, GENERATOR, TUNE, TRIAL, FIT, CALIBRATE, JOB, PLAN, ANALYZE)
}


def kind_of_stage(stage: str) -> RunKind:
    """The kind of run whose ``stage`` tag is ``stage``."""
    if stage not in KINDS:
        raise KeyError(f"no kind of run has stage {stage!r} (known: {list(KINDS)})")
    return KINDS[stage]
