"""The columns of the four results tables, in one place: the contract between ``recover``
(which writes ``results/<table>.parquet``) and ``analyze`` (which reads any concatenation
of them).

Per table, its columns in the order the code writes them: name, type, meaning, and when a
column is present only under some condition (``when``; empty: always). The docs' page
*Results tables* is rendered from here (:mod:`modelrecovery.reference.tables`), and
:func:`check_columns` compares a real table with it: the tests run a small study and fail
on a column the code writes that is not listed here, a listed column that is missing, or a
dtype that is not the listed type.

The tables are built by :func:`modelrecovery.recovery.job.run_job` (``jobs``, ``scores``,
``fits``) and :func:`modelrecovery.study.pipeline.models_table` (``models``). This module
changes no result, so it is no part of the science's hash (``study.keys.NOT_SCIENCE``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "Table", "TABLES", "TYPES", "check_columns", "type_matches"]

#: the types a column may have (:func:`type_matches` says which dtypes each allows)
TYPES = ("str", "str or null", "int", "Int64", "float", "bool")


@dataclass(frozen=True)
class Column:
    """One column: its name, type (one of :data:`TYPES`), meaning, and ``when`` it is
    present (empty: in every table of its kind)."""

    name: str
    type: str
    meaning: str
    when: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: type {self.type!r} is not one of {TYPES}")

    @property
    def always(self) -> bool:
        """Whether every table of its kind has the column."""
        return not self.when


@dataclass(frozen=True)
class Table:
    """A results table: its name, what one row is, and its columns in order."""

    name: str
    row: str
    columns: tuple[Column, ...]

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


# ----------------------------------------------------------------------------------------------
# Conditions under which columns appear
# ----------------------------------------------------------------------------------------------

HUMAN_HELDOUT = "`grid.human_heldout` is on"
SELECTION = "`grid.triplet_selection` is not `random` (the job's selection)"
SEQUENTIAL = "the job's `triplet_selection` is `sequential`"
CRITERION = "`grid.selection_criterion` is not `accuracy`"
PAIRED = "`grid.selection_criterion` is `paired`"
CALIBRATED = "`probe.calibration` is not `study`"


def _away_from(setting: str, default: str) -> str:
    return f"`grid.{setting}` is not its default `{default}`"


# ----------------------------------------------------------------------------------------------
# Columns shared by the tables
# ----------------------------------------------------------------------------------------------

JOB_ID = Column(
    "job_id",
    "str",
    "id of the job: generator, N, seed, level, a hash of the grid's settings and of the "
    "generator's provenance. It changes with the grid config and with the generator, so it "
    "is **not** a pooling key",
)
GENERATOR = Column("generator", "str", "the data-generating model g")
N_TRAIN = Column("n_train", "int", "N, the number of training triplets per fold")
SEED = Column("seed", "int", "the simulation seed s")
LEVEL = Column(
    "level",
    "str",
    "flexibility level: `zero_shot`, `diagonal`, `rectangular<k>` (e.g. `rectangular8`), `full`",
)
FAMILY = Column(
    "family", "str", "probe family of the level: `zero_shot`, `diagonal`, `rectangular`, `full`"
)
K = Column("k", "Int64", "columns of a rectangular W (p x k); NA unless the level is rectangular")
CONDITION_KEY = Column(
    "condition_key",
    "str",
    "hash of the condition (16 hex): every condition column of the table (from `level` to "
    "`candidate_set`, and those present only away from their defaults) plus the folds, the "
    "split fractions and the dtype",
)

#: the job's condition (:meth:`~modelrecovery.recovery.grid.GridConfig.condition`)
CONDITION = (
    LEVEL,
    FAMILY,
    K,
    Column("regulariser", "str", "`scalar_shrinkage`, `l2` or `l1`"),
    Column("criterion", "str", "what chooses λ and ranks: `accuracy` (the study) or `nll`"),
    Column(
        "tie_rule",
        "str",
        "the winner among candidates tied at the best score (scores within 1e-12 count as "
        "tied). `random` (default): drawn uniformly with a seed derived from (seed, N, "
        "generator, level); ranks are ordinal in that same order, so `recovered` ⇔ "
        "`generator_rank == 1`. `first`: the first tied candidate in candidate order; ranks "
        "are average ranks (a generator tied with one other at the top has rank 1.5 and may "
        "still win). `study` (the published scripts): float32 values, λ by the first maximum "
        "of the float64 mean of the float32 fold accuracies, the winner by the first maximum "
        "(Python's `max`) of their float32 mean; ranks ordinal in that order",
    ),
    Column(
        "stopping",
        "str",
        "the optimiser's stopping rule: `converged` (run to convergence) or `study` (the "
        "study's L-BFGS rule, see [the method](../science/method.md))",
    ),
    Column(
        "warm_start",
        "bool",
        "True: the λ path is fitted from strong to weak penalty, each fit starting from the "
        "previous one (always False for `zero_shot`). False: every λ from the start point",
    ),
    Column(
        "sampling",
        "str",
        "triplet sampling: `uniform` (ours) or `paper_compatible` (the published scripts' "
        "biased sampler, one seed for every set and fold)",
    ),
    Column(
        "lams",
        "str",
        'the level\'s λ grid, ascending, `%g` values joined by `,` (e.g. `"0.1,10,1000"`; '
        'zero-shot `"0"`)',
    ),
    Column("candidate_set", "str", "the candidates' names, sorted, joined by `,`"),
    Column(
        "reduction",
        "str",
        "how full W uses the training row space: `always`, `path` or `never` (see [the "
        "study's rules](../science/study-rules.md))",
        _away_from("reduction", "auto"),
    ),
    Column(
        "evaluation",
        "str",
        "`study`: accuracies as the scripts compute them (similarities in the fit's dtype, "
        "the argmax taking the first position on ties)",
        _away_from("evaluation", "exact"),
    ),
    Column(
        "reshuffle",
        "bool",
        "True: the loss summed in the study's per-step reshuffled order",
        _away_from("reshuffle", "false"),
    ),
    Column(
        "matmul_precision",
        "str",
        "`high`: TF32 float32 products on a GPU, as the study's recovery runs",
        _away_from("matmul_precision", "highest"),
    ),
    Column(
        "calibration",
        "str",
        "what the generators' temperature T was matched to: `loo_matched` (the generator's "
        "expected leave-one-out ceiling)",
        CALIBRATED,
    ),
    Column(
        "triplet_selection",
        "str",
        "how the training triplets were chosen: `discriminating` (one-shot design) or "
        "`sequential` (batches); missing: `random` (uniform)",
        SELECTION,
    ),
    Column(
        "selection_pool",
        "int",
        "the design's pool per fold: `selection_pool` x N uniform triplets",
        SELECTION,
    ),
    Column("selection_batches", "int", "the number of batches", SEQUENTIAL),
    Column(
        "selection_criterion",
        "str",
        "the crowning rule: `loglik` (held-out log-likelihood) or `paired`; missing: `accuracy`",
        CRITERION,
    ),
    Column("undecided_z", "float", "the gap must exceed this many standard errors", PAIRED),
)

ID = (JOB_ID, GENERATOR, N_TRAIN, SEED)
HUMAN = (
    Column(
        "human_accuracy",
        "float",
        "accuracy on the human held-out test triplets (the noise-ceiling set), mean over "
        "folds at `best_lam`; it chooses nothing (λ, score, rank and winner are those of the "
        "same job without it)",
        HUMAN_HELDOUT,
    ),
    Column("human_nll", "float", "mean NLL on the same triplets, likewise", HUMAN_HELDOUT),
)
SECONDS = Column("seconds", "float", "wall time of the job")

JOBS = Table(
    "jobs",
    "one row per job",
    (
        *ID,
        *CONDITION,
        CONDITION_KEY,
        Column(
            "winner", "str", "the candidate crowned by the tie rule among those with the best score"
        ),
        Column("recovered", "bool", "winner == generator (and `decided`, under `paired`)"),
        Column("n_candidates", "int", "the number of candidates"),
        Column(
            "generator_rank",
            "float",
            "rank of g among the candidates (1 = best) under the tie rule: integers under "
            "`random` and `study`, averages of tied positions (e.g. 1.5) under `first`; equals "
            "g's `rank` in `scores`",
        ),
        Column("n_tied_top", "int", "candidates tied at the best score (1: a unique best)"),
        Column(
            "generator_human_accuracy",
            "float",
            "the generator's refit: its `human_accuracy` in `scores`",
            HUMAN_HELDOUT,
        ),
        Column(
            "winner_human_accuracy",
            "float",
            "the winner's refit: its `human_accuracy` in `scores`",
            HUMAN_HELDOUT,
        ),
        Column(
            "accuracy_winner",
            "str",
            "the study's crowning (mean test accuracy) on the same fits, for comparison",
            CRITERION,
        ),
        Column("accuracy_recovered", "bool", "accuracy_winner == generator", CRITERION),
        Column(
            "decided",
            "bool",
            "whether the log-likelihood gap of the best two candidates exceeds `undecided_z` "
            "standard errors; `recovered` is then winner == generator **and** decided",
            PAIRED,
        ),
        Column(
            "loglik_gap",
            "float",
            "mean per-triplet held-out log-likelihood difference, best minus runner-up "
            "(every fold's test triplets, each candidate at its selected λ)",
            PAIRED,
        ),
        Column("loglik_gap_se", "float", "its standard error", PAIRED),
        Column("pool_size", "int", "pool triplets, summed over folds", SELECTION),
        Column(
            "prior_seconds",
            "float",
            "computing the candidates' human-fitted predictions on the pools",
            SELECTION,
        ),
        Column("select_seconds", "float", "scoring the pool and choosing, summed", SELECTION),
        Column("select_seconds_per_batch", "float", "the same, mean per batch", SELECTION),
        Column(
            "refit_seconds",
            "float",
            "refitting every candidate between batches, summed (0 for `discriminating`)",
            SELECTION,
        ),
        SECONDS,
    ),
)

SCORES = Table(
    "scores",
    "one row per (job, candidate)",
    (
        *ID,
        *CONDITION,
        CONDITION_KEY,
        Column("candidate", "str", "the candidate model c"),
        Column(
            "best_lam",
            "float",
            "λ chosen by mean validation score over folds (ties: the smallest λ)",
        ),
        Column("val_accuracy", "float", "mean over folds at `best_lam`"),
        Column("val_nll", "float", "mean over folds at `best_lam`"),
        Column("test_accuracy", "float", "mean over folds at `best_lam`"),
        Column("test_nll", "float", "mean over folds at `best_lam`"),
        *HUMAN,
        Column(
            "score",
            "float",
            "what candidates are ranked by, higher is better: `test_accuracy` (criterion "
            "`accuracy`) or `-test_nll` (criterion `nll`); `-test_nll` whatever the criterion "
            "under `selection_criterion` `loglik` or `paired`",
        ),
        Column(
            "rank",
            "float",
            "rank of the candidate in the job (1 = best) under the job's `tie_rule`; the "
            "generator's row has its job's `generator_rank`",
        ),
    ),
)

FITS = Table(
    "fits",
    "one row per (job, candidate, λ, fold)",
    (
        *ID,
        FAMILY,
        LEVEL,
        CONDITION_KEY,
        Column("candidate", "str", "the candidate fitted"),
        Column("lam", "float", "λ of the fit"),
        Column("fold", "int", "fold index (0-based)"),
        Column(
            "train_nll",
            "float",
            "mean NLL on the fold's training triplets of the **returned** parameters",
        ),
        Column(
            "train_objective",
            "float",
            "the penalised loss of the returned parameters: `train_nll` + λ R(W)",
        ),
        Column("val_accuracy", "float", "on the fold's validation triplets"),
        Column("val_nll", "float", "on the fold's validation triplets"),
        Column("test_accuracy", "float", "on the fold's test triplets"),
        Column("test_nll", "float", "on the fold's test triplets"),
        Column("human_accuracy", "float", "on the human held-out test triplets", HUMAN_HELDOUT),
        Column("human_nll", "float", "on the human held-out test triplets", HUMAN_HELDOUT),
        Column("iterations", "int", "optimiser iterations"),
        Column("converged", "bool", "the stopping rule's convergence test was met"),
        Column("seconds", "float", "wall time of the fit"),
    ),
)

MODELS = Table(
    "models",
    "one row per (model, level)",
    (
        Column("model", "str", "the model's name"),
        FAMILY,
        K,
        LEVEL,
        Column("feature_dim", "int", "p, the dimension of the model's features"),
        Column(
            "n_parameters",
            "Int64",
            "parameter count of the backbone network (NA when unknown)",
        ),
        Column(
            "probe_parameters",
            "int",
            "free parameters of the probe at this level: 1 for `zero_shot` (its scale), p for "
            "`diagonal`, p·k for `rectangular<k>`, p·p for `full`",
        ),
        Column(
            "human_accuracy",
            "float",
            "accuracy on the held-out human triplets of this level's fitted generator",
        ),
        Column("human_nll", "float", "its mean NLL on the same triplets"),
        Column("lam", "float", "λ chosen for the generator on the human data"),
        Column("temperature", "float", "the generator's calibrated temperature T"),
        Column(
            "calibration",
            "str",
            "what T was matched to (`probe.calibration`): `study` (expected accuracy = the "
            "ceiling) or `loo_matched` (the generator's expected LOO ceiling)",
        ),
        Column(
            "expected_accuracy",
            "float",
            "at T, the generator's mean largest choice probability over the repeated responses",
        ),
        Column(
            "expected_loo_ceiling",
            "float",
            "at T, its exact expected leave-one-out noise ceiling on the repeated set (each "
            "triplet's own number of responses)",
        ),
        Column(
            "human_loo_ceiling", "float", "the humans' leave-one-out noise ceiling on the same set"
        ),
        Column("generator_run", "str", "the MLflow run of the generator"),
        Column(
            "uninformative",
            "str or null",
            "why this generator's fitted probe predicts the held-out human triplets no better "
            "than chance (it then runs no jobs unless `include_uninformative`); null: "
            "informative",
        ),
    ),
)

#: the four tables by name, in the order of the docs
TABLES: dict[str, Table] = {t.name: t for t in (JOBS, SCORES, FITS, MODELS)}


def type_matches(kind: str, dtype) -> bool:
    """Whether a pandas ``dtype`` can hold a column of type ``kind`` (:data:`TYPES`):
    ``str`` a string or object dtype; ``int`` an integer dtype; ``Int64`` an integer dtype
    (nullable or not); ``float`` a float dtype; ``bool`` a bool dtype."""
    from pandas.api import types

    if kind in ("str", "str or null"):
        return types.is_string_dtype(dtype) or types.is_object_dtype(dtype)
    if kind in ("int", "Int64"):
        return types.is_integer_dtype(dtype) and not types.is_bool_dtype(dtype)
    if kind == "float":
        return types.is_float_dtype(dtype)
    if kind == "bool":
        return types.is_bool_dtype(dtype)
    raise ValueError(f"unknown type {kind!r}")


def check_columns(name: str, frame) -> list[str]:
    """What in the table ``frame`` disagrees with :data:`TABLES` [``name``]: columns not
    listed, listed columns that are always present but missing, dtypes other than the
    listed type, and columns out of the listed order. Empty: it agrees."""
    table = TABLES[name]
    listed = table.names()
    problems = [
        f"{name}.{c}: not listed in recovery.columns" for c in frame.columns if c not in listed
    ]
    problems += [
        f"{name}.{c.name}: listed as always present, missing"
        for c in table.columns
        if c.always and c.name not in frame.columns
    ]
    for c in table.columns:
        if c.name in frame.columns and not type_matches(c.type, frame[c.name].dtype):
            problems.append(f"{name}.{c.name}: dtype {frame[c.name].dtype}, listed as {c.type}")
    present = [c for c in frame.columns if c in listed]
    expected = [c for c in listed if c in present]
    if present != expected:
        problems.append(f"{name}: columns in the order {present}, listed as {expected}")
    return problems
