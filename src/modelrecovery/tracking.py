"""MLflow tracking conventions: where runs go, how they are named and tagged, and how a
finished run with the same inputs is found and reused instead of recomputed.

- Tracking URI (the *home*): ``MLFLOW_TRACKING_URI`` if set, else a SQLite store
  ``tracking/mlflow.db`` in the working directory, with each experiment's artifacts in
  ``tracking/artifacts/<experiment>``. MLflow's own default stores (``./mlflow.db``,
  ``./mlruns``), which ``mlflow run`` passes on to its command when no URI is set, are
  never used: the stage logs to the home instead (see :func:`setup_experiment`).
- Experiments carry ``mlflow.experimentKind = custom_model_development`` (MLflow 3's UI
  shows training runs, not the GenAI overview).
- One experiment per study; run names say what a run is (``fit/<model>/<family>``).
- Tags on every run: ``stage``, ``model``, ``family``, ``git_commit``, ``inputs_key`` (see
  :mod:`modelrecovery.study.keys`: the entry point, its parameters, the data hashes and
  the science's source, not the report, the stack or the command line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import sqlalchemy

from modelrecovery.study.keys import file_hash, inputs_key, science_hash
from modelrecovery.study.tracker import code_version, standard_tags

# re-exported: the reuse keys and the tags of every run
__all__ = ["code_version", "file_hash", "inputs_key", "science_hash", "standard_tags"]

TRACKING_DIR = Path("tracking")

# quiet by default: one progress bar per stage instead of one per artifact download
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# with a tracking server MLflow prints two links per ended run (480 lines for the default
# grid): the recover run's summary says where the study is
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection, connection_record) -> None:
    """SQLite stores (MLflow's and Optuna's) in write-ahead-log mode with normal sync:
    a recovery job's run is logged in ~40 ms instead of ~95 ms (measured), and readers
    (the UI) do not block writers. A committed transaction can be lost on power failure
    (never the database's consistency); WAL needs a local disk (on a network file system
    use the team stack)."""
    if not type(dbapi_connection).__module__.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI: runs, charts (not GenAI)


def home_uri() -> str:
    """The local store: SQLite ``tracking/mlflow.db`` in the working directory."""
    TRACKING_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(TRACKING_DIR / 'mlflow.db').resolve()}"


def is_mlflow_default_store(uri: str) -> bool:
    """True for MLflow's built-in default store in the working directory (``./mlflow.db``
    or ``./mlruns``): what ``mlflow run`` hands its command when no URI was chosen."""
    cwd = Path.cwd().resolve()
    return uri in {
        "sqlite:///mlflow.db",
        f"sqlite:///{cwd / 'mlflow.db'}",
        "./mlruns",
        "mlruns",
        str(cwd / "mlruns"),
        (cwd / "mlruns").as_uri(),
    }


def _launched_by_mlflow_run() -> bool:
    return bool(os.environ.get("MLFLOW_RUN_ID"))


def tracking_uri() -> str:
    """The MLflow tracking URI in use: ``MLFLOW_TRACKING_URI``, else the local store
    ``tracking/mlflow.db`` (also when ``mlflow run`` passes MLflow's own default)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and not (_launched_by_mlflow_run() and is_mlflow_default_store(uri)):
        return uri
    return home_uri()


def optuna_storage() -> str:
    """The Optuna storage URL (``OPTUNA_STORAGE`` or a SQLite file beside MLflow's, never
    the same file: both use alembic migrations)."""
    url = os.environ.get("OPTUNA_STORAGE")
    if url:
        return url
    TRACKING_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(TRACKING_DIR / 'optuna.db').resolve()}"


def artifact_location(name: str, uri: str | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: ``artifacts/<name>`` beside a SQLite
    database (not MLflow's ``./mlruns``); ``None`` (the server's choice, e.g. its proxied
    S3 bucket) for any other store."""
    uri = uri or tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :])
    return (database.parent / "artifacts" / name).resolve().as_uri()


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name`` in the current tracking store, created with
    :func:`artifact_location` and the experiment-kind tag when missing (the tag is added
    to an existing experiment that has none)."""
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=artifact_location(name, mlflow.get_tracking_uri()),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def _leave_launcher_run(run_id: str, launcher_uri: str, home: str, name: str) -> None:
    """Record the study in the home instead of ``mlflow run``'s run: note the move on
    that run and clear the variables that would make ``start_run`` continue it."""
    note = (
        f"modelrecovery logged this launch to {home}, experiment {name!r} (the project's "
        "tracking home); set MLFLOW_TRACKING_URI and --experiment-name to launch there."
    )
    try:
        mlflow.tracking.MlflowClient(launcher_uri).set_tag(run_id, "mlflow.note.content", note)
    except Exception:  # noqa: BLE001 - a note on the launcher's run is a courtesy
        pass
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(variable, None)
    os.environ["MLFLOW_TRACKING_URI"] = home
    print(f"modelrecovery: logging to {home}, experiment {name!r}", file=sys.stderr)


def store_lock(uri: str):
    """A lock held while a SQLite store is created or migrated (``<folder>/locks/<file>.lock``
    beside it): two processes starting on a new store would both create its schema (one
    then dies with ``duplicate column name``). No lock (a null context) for a server."""
    import contextlib

    from modelrecovery.locks import file_lock

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = Path(uri[len("sqlite:///") :])
    return file_lock(database.parent / "locks" / f"{database.name}.lock")


def setup_experiment(name: str) -> str:
    """Point MLflow at :func:`tracking_uri` and select (create) the study's experiment
    (the store created under :func:`store_lock`).

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the stage continues the run MLflow
    created when that run is in the tracking home and in an experiment chosen with
    ``--experiment-name``. When ``mlflow run`` used MLflow's own default store
    (``./mlflow.db``: no ``MLFLOW_TRACKING_URI`` set) or its ``Default`` experiment, the
    stage records its runs in the home under experiment ``name`` instead and leaves a
    note on the launcher's run saying where they went.
    """
    uri = tracking_uri()
    with store_lock(uri):
        return _setup_experiment(name, uri)


def _setup_experiment(name: str, uri: str) -> str:
    launcher_uri = os.environ.get("MLFLOW_TRACKING_URI") or uri  # before set_tracking_uri
    mlflow.set_tracking_uri(uri)
    launched = os.environ.get("MLFLOW_RUN_ID")
    if launched:
        run = None
        if launcher_uri == uri:
            run = mlflow.get_run(launched)
        if run is not None and run.info.experiment_id != "0":
            experiment_id = run.info.experiment_id
            mlflow.set_experiment(experiment_id=experiment_id)
            ensure_experiment(mlflow.get_experiment(experiment_id).name)
            return experiment_id
        _leave_launcher_run(launched, launcher_uri, uri, name)
    experiment_id = ensure_experiment(name)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def find_finished_run(experiment_id: str, key: str) -> mlflow.entities.Run | None:
    """The newest FINISHED run of the experiment with tag ``inputs_key = key``."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.inputs_key = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def main(argv: list[str] | None = None) -> int:
    """``python -m modelrecovery.tracking uri | experiment NAME | ui``: print the tracking
    URI in use, or create (if missing) the experiment ``NAME`` there with its artifact
    location and tags and print its id (``make recover`` does this before ``mlflow run``,
    which would otherwise create it with artifacts in ``./mlruns``), or start the MLflow
    UI on it (``make ui``; :mod:`modelrecovery.ui`: its own port, checked first)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelrecovery.tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("uri", help="print the tracking URI in use")
    p = sub.add_parser("experiment", help="create (if missing) an experiment; print its id")
    p.add_argument("name")
    p = sub.add_parser("ui", help="the MLflow UI on the tracking URI (its port checked first)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 5001 ($MODELRECOVERY_UI_PORT)")
    args = parser.parse_args(argv)
    if args.command == "ui":
        from modelrecovery.ui import launch

        return launch(tracking_uri(), args.host, args.port)
    import logging

    for name in ("mlflow.store.db.utils", "alembic"):  # a new store's creation notes
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri()
    if args.command == "uri":
        print(uri)
        return 0
    mlflow.set_tracking_uri(uri)
    print(ensure_experiment(args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
