"""One tracking home: ``MLFLOW_TRACKING_URI`` if set, else ``tracking/mlflow.db`` with
artifacts in ``tracking/artifacts/<experiment>``, also under a bare ``mlflow run`` (which
hands its command MLflow's own default store ``./mlflow.db``)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from modelrecovery import tracking


@pytest.fixture
def bare(tmp_path, monkeypatch):
    for variable in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def _artifact_dir(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://"))


def test_default_home_is_tracking_folder(bare):
    home = f"sqlite:///{bare / 'tracking' / 'mlflow.db'}"
    assert tracking.tracking_uri() == home
    experiment_id = tracking.setup_experiment("study-a")
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.name == "study-a"
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    with mlflow.start_run() as run:
        mlflow.log_text("x", "a.txt")
    assert _artifact_dir(run).is_relative_to(bare / "tracking" / "artifacts" / "study-a")
    assert (bare / "tracking" / "mlflow.db").exists()
    assert not (bare / "mlruns").exists() and not (bare / "mlflow.db").exists()


def test_environment_wins(bare, monkeypatch):
    uri = f"sqlite:///{bare / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.tracking_uri() == uri
    experiment_id = tracking.setup_experiment("study-b")
    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location == (bare / "artifacts" / "study-b").as_uri()
    assert not (bare / "tracking").exists()


def test_existing_experiment_gets_the_kind_tag(bare):
    mlflow.set_tracking_uri(tracking.tracking_uri())
    old = mlflow.create_experiment("old-study")
    assert tracking.ensure_experiment("old-study") == old
    assert mlflow.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == (
        "custom_model_development"
    )


def _launch(monkeypatch, uri: str, experiment_id: str = "0") -> str:
    """What ``mlflow run`` does before its command starts: a run, then three variables."""
    client = mlflow.tracking.MlflowClient(uri)
    run = client.create_run(experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    return run.info.run_id


def test_bare_mlflow_run_logs_to_the_home(bare, monkeypatch):
    # no MLFLOW_TRACKING_URI: `mlflow run` used ./mlflow.db, experiment Default
    default = f"sqlite:///{bare / 'mlflow.db'}"
    launcher = _launch(monkeypatch, default)
    experiment_id = tracking.setup_experiment("default-world")
    home = f"sqlite:///{bare / 'tracking' / 'mlflow.db'}"
    assert mlflow.get_tracking_uri() == home
    assert mlflow.get_experiment(experiment_id).name == "default-world"
    with mlflow.start_run(run_name="recover/default-world") as run:
        mlflow.log_text("x", "a.txt")
    assert run.info.run_id != launcher and run.info.experiment_id == experiment_id
    assert _artifact_dir(run).is_relative_to(bare / "tracking" / "artifacts" / "default-world")
    note = mlflow.tracking.MlflowClient(default).get_run(launcher).data.tags
    assert home in note["mlflow.note.content"]
    assert not (bare / "mlruns").exists()


def test_mlflow_run_in_the_home_continues_its_run(bare, monkeypatch):
    home = tracking.home_uri()
    mlflow.set_tracking_uri(home)
    chosen = tracking.ensure_experiment("default-world")  # what `make recover` does first
    launcher = _launch(monkeypatch, home, chosen)
    assert tracking.setup_experiment("default-world") == chosen
    with mlflow.start_run() as run:
        pass
    assert run.info.run_id == launcher


def test_mlflow_run_into_default_experiment_moves_to_the_study(bare, monkeypatch):
    home = tracking.home_uri()
    mlflow.set_tracking_uri(home)
    launcher = _launch(monkeypatch, home, "0")
    experiment_id = tracking.setup_experiment("study-c")
    assert mlflow.get_experiment(experiment_id).name == "study-c"
    with mlflow.start_run() as run:
        pass
    assert run.info.run_id != launcher


def test_command_line_creates_the_experiment(bare, capsys):
    assert tracking.main(["experiment", "made"]) == 0
    experiment_id = capsys.readouterr().out.strip()
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.artifact_location == (bare / "tracking" / "artifacts" / "made").as_uri()
    assert tracking.main(["uri"]) == 0
    assert capsys.readouterr().out.strip() == tracking.home_uri()


def test_sqlite_stores_use_the_write_ahead_log(tmp_path, monkeypatch):
    """MLflow's and Optuna's SQLite files are opened in WAL mode with normal sync."""
    import sqlite3

    import mlflow
    import optuna

    from modelrecovery.tracking import optuna_storage, setup_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    setup_experiment("wal-check")
    with mlflow.start_run():
        mlflow.log_param("a", 1)
    optuna.create_study(storage=optuna_storage(), study_name="wal-check")
    for name in ("mlflow.db", "optuna.db"):
        with sqlite3.connect(tmp_path / name) as con:
            assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
