"""The results tables' columns (:mod:`modelrecovery.recovery.columns`) and MLflow's names
(:mod:`modelrecovery.study.tracking_names`) pinned to what a real study writes and logs,
and the reference pages rendered from them.

One tiny study (2 models, 2 levels, 2 sizes, 1 seed) runs once for the module: recover,
analyze, a plan and the ``fit`` command, into a temporary SQLite store. Every column of
its tables must be listed (and every always-present one written, with a compatible
dtype, in the listed order); every tag, parameter, metric and artifact of every run must
be listed for its kind (and every always-present entry logged)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_recovery_world
from modelrecovery.recovery.columns import TABLES, Column, check_columns
from modelrecovery.reference import render
from modelrecovery.study.tracking_names import KINDS, PARTS, SHARED_TAGS, Entry

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
    "image_size: 48}",
    "models=[timm:resnet10t,timm:lcnet_100]",
    "grid.sizes=[20,80]",
    "grid.seeds=[0]",
    "tune.lams=[0.1,10.0]",
    "tune.n_folds=2",
    "grid.levels=[{family: zero_shot},{family: full}]",
    "executor.kind=inprocess",
    # the tiny world's random-weight generators are no better than chance on its held-out
    # triplets: run them anyway (and so log the `uninformative` tags)
    "include_uninformative=true",
]


# ----------------------------------------------------------------------------------------------
# The registries themselves (fast)
# ----------------------------------------------------------------------------------------------


def _frame(table: str, columns: list[Column]) -> pd.DataFrame:
    """A two-row table with the given columns, each of its listed type."""
    values = {
        "str": ["a", "b"],
        "str or null": ["a", None],
        "int": np.array([1, 2], dtype=np.int64),
        "Int64": pd.array([1, pd.NA], dtype="Int64"),
        "float": [0.5, 1.5],
        "bool": [True, False],
    }
    return pd.DataFrame({c.name: values[c.type] for c in columns})


def test_check_columns_flags_an_unlisted_a_missing_and_a_mistyped_column() -> None:
    table = TABLES["jobs"]
    always = [c for c in table.columns if c.always]
    frame = _frame("jobs", always)
    assert check_columns("jobs", frame) == []
    assert check_columns("jobs", frame.assign(new_column=1)) == [
        "jobs.new_column: not listed in recovery.columns"
    ]
    assert check_columns("jobs", frame.drop(columns="winner")) == [
        "jobs.winner: listed as always present, missing"
    ]
    assert check_columns("jobs", frame.assign(n_train=[0.5, 1.0])) == [
        "jobs.n_train: dtype float64, listed as int"
    ]
    swapped = frame[["generator", "job_id", *frame.columns[2:]]]
    assert "columns in the order" in check_columns("jobs", swapped)[0]
    for name, tab in TABLES.items():  # every listed column has a known type and a meaning
        assert len(set(tab.names())) == len(tab.names()), name
        assert all(c.meaning for c in tab.columns), name


def test_entries_match_their_patterns_and_kinds_name_their_runs() -> None:
    assert Entry("recovery_accuracy_<curve>", "").matches("recovery_accuracy_full_sequential")
    assert not Entry("recovery_accuracy_<curve>", "").matches("recovery_accuracy_")
    assert not Entry("seeds", "").matches("seeds_full")
    assert Entry("report/", "").matches("report/figures/mds.png")
    assert Entry("mlflow.<tag>", "").matches("mlflow.source.name")
    fit = KINDS["fit"]
    assert fit.run_name(model="m", family="full") == "fit/m/full"
    assert fit.named("fit/m/full") and not fit.named("tune/m/full")
    with pytest.raises(ValueError, match="expected fields"):
        fit.run_name(model="m")
    assert fit.unlisted("metrics", ["train_nll", "surprise"]) == ["surprise"]
    assert "train_nll" in fit.missing("metrics", ["seconds"])
    assert all(kind.stage == stage for stage, kind in KINDS.items())
    for kind in KINDS.values():  # every entry has a meaning, no name twice in a part
        for part in PARTS:
            names = [e.name for e in kind.entries(part)]
            assert len(set(names)) == len(names), (kind.stage, part)
            assert all(e.meaning for e in kind.entries(part)), (kind.stage, part)


def test_the_reference_renders_every_column_and_every_kind() -> None:
    for name, table in TABLES.items():
        text = render(f"tables:{name}")
        assert all(f"| `{c}` |" in text for c in table.names()), name
    assert "## `models`" in render("tables")
    text = render("tracking")
    for kind in KINDS.values():
        assert f"`{kind.name}`" in text and f"{{#run-{kind.stage.replace('_', '-')}}}" in text
        for part in PARTS:
            shown = [e for e in kind.entries(part) if part != "tags" or e not in SHARED_TAGS]
            assert all(f"| `{e.name}` |" in text for e in shown), (kind.stage, part)
    assert render("tracking:recover") in text
    for bad in ("tables:nope", "tracking:nope"):
        with pytest.raises(ValueError, match="nope"):
            render(bad)


# ----------------------------------------------------------------------------------------------
# Against a real study (slow: about half a minute)
# ----------------------------------------------------------------------------------------------


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study's recover, analyze, plan and fit runs: (tables, runs), each run a dict
    of its stage, name, tags, params, metrics and artifact paths."""
    import mlflow

    from modelrecovery.cli import main
    from modelrecovery.config import split_overrides
    from modelrecovery.stages.analyze import analyze
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import run_study
    from modelrecovery.study.spec import load_spec

    home = tmp_path_factory.mktemp("reference_study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
        mp.setenv("OPTUNA_STORAGE", f"sqlite:///{home}/optuna.db")
        mp.setenv("MODELRECOVERY_DATA", str(home / "data"))
        mp.chdir(home)
        spec = load_spec("default", split_overrides(TINY) + [f"store={home / 'store'}"])
        result = run_study(spec, MLflowTracker(spec.study), progress=False)
        analyze(spec.study)
        plan = ["plan", "--config", "default", "--set", *TINY, "--levels", "zero_shot"]
        plan += ["--min-n", "10", "--max-n", "80", "--budget-jobs", "6", "--initial", "3"]
        assert main([*plan, "--store", str(home / "store"), "--no-progress"]) == 0
        world = next((home / "data" / "worlds").iterdir())
        features = sorted((world / "features").glob("*.npy"))[0]
        fit = ["fit", "--features", str(features), "--triplets", str(world / "triplets.tsv")]
        fit += ["--n-concepts", "36", "--family", "full", "--lam", "1"]
        assert main([*fit, "--experiment", spec.study]) == 0

        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(spec.study).experiment_id
        runs = [
            {
                "stage": run.data.tags.get("stage"),
                "name": run.info.run_name,
                "tags": run.data.tags,
                "params": run.data.params,
                "metrics": run.data.metrics,
                "artifacts": _artifacts(client, run.info.run_id),
            }
            for run in client.search_runs([experiment], max_results=5000)
        ]
        folder = mlflow.artifacts.download_artifacts(
            run_id=result.run_id, artifact_path="results", dst_path=str(home / "results")
        )
        tables = {name: pd.read_parquet(Path(folder) / f"{name}.parquet") for name in TABLES}
    return tables, runs


@pytest.mark.slow
def test_a_studys_tables_have_exactly_the_listed_columns(study) -> None:
    tables, _ = study
    for name, frame in tables.items():
        assert len(frame), name
        assert check_columns(name, frame) == [], name


@pytest.mark.slow
def test_every_conditional_column_is_listed(tmp_path) -> None:
    """One job with every setting that adds columns (a sequential design, paired crowning,
    the human held-out set, the scripts' settings, loo_matched calibration): its tables,
    through Parquet as the store keeps them, hold exactly every listed column."""
    from modelrecovery.recovery.grid import jobs_of
    from modelrecovery.recovery.job import run_job, simulate

    features = planted_recovery_world(n_concepts=60)
    config = planted_grid_config(
        features,
        sizes=(40,),
        seeds=(0,),
        lams=(0.1, 10.0),
        triplet_selection=("sequential",),
        selection_batches=2,
        selection_criterion="paired",
        human_heldout=True,
        reduction="never",
        evaluation="study",
        reshuffle=True,
        matmul_precision="high",
        calibration="loo_matched",
    )
    job = jobs_of(config)[0]
    models = {m: (x, 0.3) for m, x in features.items()}
    uniform = dataclasses.replace(job, selection="random")
    human = simulate(uniform, config, features[job.generator], 0.3, None)[0].test
    result = run_job(
        job, config, features[job.generator], 0.3, features, design_models=models, human_test=human
    )
    for name, frame in (("jobs", result.job), ("scores", result.scores), ("fits", result.fits)):
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        frame = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert check_columns(name, frame) == [], name
        assert list(frame.columns) == TABLES[name].names(), name


@pytest.mark.slow
def test_every_logged_name_is_listed_and_every_always_entry_logged(study) -> None:
    _, runs = study
    problems = []
    for run in runs:
        kind = KINDS.get(run["stage"])
        if kind is None:
            problems.append(f"{run['name']}: stage {run['stage']!r} is no kind of run")
            continue
        if not kind.named(run["name"]):
            problems.append(f"{run['name']}: not named {kind.name}")
        for part in PARTS:
            for key in kind.unlisted(part, run[part]):
                problems.append(f"{run['name']}: {part[:-1]} {key!r} not listed for {kind.stage}")
            for entry in kind.missing(part, run[part]):
                problems.append(f"{run['name']}: always-logged {part[:-1]} {entry!r} missing")
    assert problems == [], "\n".join(sorted(set(problems)))
    assert {run["stage"] for run in runs} == set(KINDS)  # every kind was seen


@pytest.mark.slow
def test_the_site_builds_with_the_generated_reference_pages(tmp_path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tables = (site / "reference" / "results-tables" / "index.html").read_text()
    assert "condition_key" in tables and "n_train" in tables
    assert "<!-- reference" not in tables  # every marker replaced
    tracking = (site / "reference" / "tracking" / "index.html").read_text()
    assert "recovery_accuracy_&lt;curve&gt;" in tracking and 'id="run-tune-trial"' in tracking
