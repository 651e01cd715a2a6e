"""The recover stage end to end on a tiny embedded world, and simulate; bad configs fail
before any work."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from modelrecovery.cli import main
from modelrecovery.config import split_overrides
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.study.pipeline import run_study as run
from modelrecovery.study.spec import load_spec

TINY = split_overrides(
    [
        "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
        "image_size: 48}",
        "models=[timm:resnet10t,timm:lcnet_100]",
        "grid.sizes=[20,80] grid.seeds=[0] tune.lams=[0.1,10.0] tune.n_folds=2",
        "grid.levels=[{family: zero_shot},{family: full}]",
        "executor.kind=inprocess",
        # the tiny world's random-weight generators are no better than chance on its
        # held-out triplets: run them anyway (these tests are of the mechanics)
        "include_uninformative=true",
    ]
)


def run_study(spec) -> dict:
    """The study through MLflow, as ``modelrecovery recover`` runs it: its summary."""
    return run(spec, MLflowTracker(spec.study), progress=False).summary()


@pytest.fixture
def env(study_home):
    return study_home


@pytest.mark.slow
def test_recover_runs_the_study_and_resumes(env, capsys):
    config = load_spec("default", TINY + [f"store={env / 'store'}"])
    summary = run_study(config)
    assert summary["jobs"] == summary["jobs_run_now"] == 8
    run = mlflow.get_run(summary["run_id"])
    assert run.data.tags["stage"] == "recover"
    client = mlflow.tracking.MlflowClient()
    for level in ("zero_shot", "full"):
        curve = client.get_metric_history(summary["run_id"], f"recovery_accuracy_{level}")
        assert sorted(m.step for m in curve) == [20, 80]
    experiment = run.info.experiment_id
    jobs = mlflow.search_runs([experiment], "tags.stage = 'job'")
    assert len(jobs) == 8 and (jobs["tags.mlflow.parentRunId"] == summary["run_id"]).all()
    # each job's run: name, parameters, metrics, MLflow's own tags, finished
    assert (jobs["status"] == "FINISHED").all()
    assert (jobs["tags.mlflow.runName"] == "job/" + jobs["tags.job_id"]).all()
    assert set(jobs["params.level"]) == {"zero_shot", "full"}
    assert set(jobs["params.n_train"]) == {"20", "80"} and jobs["params.device"].eq("cpu").all()
    assert jobs["metrics.recovered"].isin([0.0, 1.0]).all()
    assert jobs["metrics.score_resnet10t"].notna().all() and jobs["tags.mlflow.user"].notna().all()
    # a generator per (model, level), each tuned and calibrated on its own
    generators = mlflow.search_runs([experiment], "tags.stage = 'generator'")
    pairs = set(zip(generators["tags.model"], generators["tags.level"], strict=True))
    assert pairs == {(m, lv) for m in ("resnet10t", "lcnet_100") for lv in ("zero_shot", "full")}
    assert set(generators.loc[generators["tags.level"] == "zero_shot", "metrics.lam"]) == {0.0}
    models = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=summary["run_id"], artifact_path="results")
        + "/models.parquet"
    )
    assert len(models) == 4 and set(models["level"]) == {"zero_shot", "full"}
    runs = dict(zip(generators["run_id"], generators["metrics.temperature"], strict=True))
    for _, row in models.iterrows():
        assert runs[row["generator_run"]] == pytest.approx(row["temperature"])
        expected = 1 if row["level"] == "zero_shot" else row["feature_dim"] ** 2
        assert row["probe_parameters"] == expected
    # beside the local tracking store (MLFLOW_TRACKING_URI = <env>/mlflow.db)
    assert (env / "reports" / summary["run_id"] / "report.html").exists()
    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=summary["run_id"], artifact_path="results")
        + "/jobs.parquet"
    )
    assert set(table["generator"]) == {"resnet10t", "lcnet_100"}
    # again: generators reused, every job found in the store
    n_fits = len(mlflow.search_runs([experiment], "tags.stage = 'fit'"))
    again = run_study(config)
    assert again["jobs_run_now"] == 0 and again["jobs"] == 8
    assert len(mlflow.search_runs([experiment], "tags.stage = 'fit'")) == n_fits
    # simulate writes one job's data
    code = main(
        [
            "--json",
            "simulate",
            "--set",
            *TINY,
            "--generator",
            "lcnet_100",
            "--n-train",
            "40",
            "--out",
            str(env / "sim"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    meta = json.loads((env / "sim" / "simulation.json").read_text())
    assert len(meta["files"]) == 9
    assert len(pd.read_csv(env / "sim" / "fold0_train.csv")) == 40


def test_bad_study_config_fails_before_work(env, capsys):
    assert main(["recover", "--set", *TINY, "generators=[nope]"]) == 2
    assert "unknown generators ['nope']" in capsys.readouterr().err
    assert main(["recover", "--set", "grid.unknown=1"]) == 2
    assert "unknown key grid.unknown" in capsys.readouterr().err
    assert main(["recover", "--set", *TINY, "candidates=[]"]) == 2
    assert "candidate list is empty" in capsys.readouterr().err
    assert not (env / "tracking").exists() and not (env / "results").exists()
    assert not (env / "data").exists()  # nothing was built: the names are checked first


@pytest.mark.slow
def test_recover_with_the_scripts_rules_runs_their_whole_profile(env):
    """`--set rules=study_scripts` on the tiny world: every piece reaches the jobs and the
    generators (their conditions, parameters and calibration target)."""
    # zero-shot and diagonal: the p x p full fits of the scripts would take minutes here
    levels = "grid.levels=[{family: zero_shot},{family: diagonal}]"
    config = load_spec("default", TINY + [levels, f"store={env / 'store'}", "rules=study_scripts"])
    summary = run_study(config)
    assert summary["jobs"] == summary["jobs_run_now"] == 8
    params = mlflow.get_run(summary["run_id"]).data.params
    assert params["rules"] == "study_scripts" and params["tie_rule"] == "study"
    assert params["reduction"] == "never" and params["evaluation"] == "study"
    assert params["reshuffle"] == "True" and params["sampling"] == "paper_compatible"
    assert params["matmul_precision"] == "high"
    results = mlflow.artifacts.download_artifacts(run_id=summary["run_id"], artifact_path="results")
    jobs = pd.read_parquet(results + "/jobs.parquet")
    assert set(jobs["tie_rule"]) == {"study"} and set(jobs["sampling"]) == {"paper_compatible"}
    assert set(jobs["reduction"]) == {"never"} and set(jobs["evaluation"]) == {"study"}
    assert jobs["reshuffle"].all()
    fits = pd.read_parquet(results + "/fits.parquet")
    assert fits["test_accuracy"].notna().all() and set(fits["level"]) == {"zero_shot", "diagonal"}
    experiment = mlflow.get_run(summary["run_id"]).info.experiment_id
    generators = mlflow.search_runs([experiment], "tags.stage = 'generator'")
    assert set(generators["params.reshuffle"]) == {"True"}
    assert set(generators["params.reduction"]) == {"never"}
    assert set(generators["params.ceiling"]) == {"0.678"}
