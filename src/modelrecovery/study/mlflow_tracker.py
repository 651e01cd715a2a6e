"""The tracker on MLflow (+ the Optuna storage): every run through ``MlflowClient`` with
explicit parents (thread-safe, no fluent active-run stack), in the study's experiment of
the tracking home (:mod:`modelrecovery.tracking`). Under ``mlflow run`` the first
top-level run continues the run MLflow created."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from modelrecovery import tracking

MAX_TAG = 5000  # MLflow's limit on a tag value
_OPTUNA_READY: set[str] = set()  # Optuna storages whose schema this process created or saw


@functools.cache
def _context_tags() -> dict[str, str]:
    """MLflow's own run tags (user, source, git) as ``mlflow.start_run`` resolves them,
    resolved once per process."""
    from mlflow.tracking.context.registry import resolve_tags

    return {k: v for k, v in resolve_tags().items() if k.startswith("mlflow.")}


def local_home(uri: str) -> Path:
    """Where results stores and reports go beside a tracking store: the folder of a local
    SQLite file (``sqlite:////lab/study/mlflow.db`` -> ``/lab/study``), else ``./tracking``
    (a tracking server: its artifacts hold the reports too)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    return tracking.TRACKING_DIR


#: the tag naming the process that runs a run (``<host>:<pid>``): a run left RUNNING by a
#: process that is gone (SIGKILL, power loss) is marked KILLED by the next tracker
PROCESS_TAG = "modelrecovery.process"


def this_process() -> str:
    """``<host>:<pid>`` of this process (the value of :data:`PROCESS_TAG`)."""
    from modelrecovery.locks import hostname

    return f"{hostname()}:{os.getpid()}"


def mark_stale_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End KILLED every RUNNING run of the experiment whose process (:data:`PROCESS_TAG`)
    is gone from this machine, tagged ``stale`` with what happened; returns their ids.
    Runs of other machines, or without the tag, are left as they are."""
    from modelrecovery.locks import process_alive

    marked = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in runs:
        process = run.data.tags.get(PROCESS_TAG, "")
        host, _, pid = process.rpartition(":")
        if not pid.isdigit() or process_alive(int(pid), host) is not False:
            continue
        client.set_tag(
            run.info.run_id,
            "stale",
            f"its process {process} ended without ending this run (killed); marked KILLED "
            f"by {this_process()}",
        )
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        marked.append(run.info.run_id)
    return marked


class MLflowRun:
    """A run of the MLflow tracking store."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes 100 parameters a request
            self.client.log_batch(self.id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.id, metrics=items[start : start + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        items = [RunTag(k, str(v)[:MAX_TAG]) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.id, tags=items)

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        self.client.log_artifacts(self.id, str(folder), path)

    def log_dict(self, data: Any, name: str) -> None:
        self.client.log_dict(self.id, data, name)

    def log_table(self, frame: Any, name: str) -> None:
        """A table artifact shown by the MLflow UI's table view."""
        self.client.log_table(self.id, frame, name)


class MLflowTracker:
    """The study's runs in experiment ``experiment`` of the tracking home (created with
    the project's artifact location and tags when missing)."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.experiment_id = tracking.setup_experiment(experiment)
        self.client = MlflowClient()
        self.uri = tracking.tracking_uri()
        # runs a killed process left RUNNING (SIGKILL): KILLED, tagged stale
        mark_stale_runs(self.client, self.experiment_id)
        self.home = local_home(self.uri)
        # under `mlflow run`, the launcher's run (kept by setup_experiment) takes the first
        # top-level run
        self._launched = os.environ.get("MLFLOW_RUN_ID")

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        parent: MLflowRun | None = None,
    ) -> Iterator[MLflowRun]:
        all_tags = dict(_context_tags()) | {k: str(v) for k, v in (tags or {}).items()}
        all_tags[PROCESS_TAG] = this_process()
        if key is not None:
            all_tags["inputs_key"] = key
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.id
        if parent is None and self._launched:
            run_id, self._launched = self._launched, None
            os.environ.pop("MLFLOW_RUN_ID", None)  # later runs are runs of their own
            run = MLflowRun(self.client, run_id)
            run.set_tags(all_tags | {MLFLOW_RUN_NAME: name})
            self.client.update_run(run_id, status="RUNNING")
        else:
            created = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
            run = MLflowRun(self.client, created.info.run_id)
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            if params:
                run.log_params(params)
            yield run
            status = RunStatus.to_string(RunStatus.FINISHED)
        finally:
            try:
                self.client.set_terminated(run.id, status)
            except Exception:  # noqa: BLE001 - never hide the error that ended the run
                if status == RunStatus.to_string(RunStatus.FINISHED):
                    raise

    def record(
        self,
        name: str,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        parent: MLflowRun | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> str:
        """A finished run in three requests to the tracking server (create, one batch,
        terminate) instead of four or more; against a remote server each request costs
        it ~30 ms of CPU (``benchmarks/tracking_overhead.py``). With ``start_time`` /
        ``end_time`` (seconds since the epoch) the run's Duration is the work's own."""
        all_tags = dict(_context_tags()) | {k: str(v) for k, v in tags.items()}
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.id
        start = None if start_time is None else int(start_time * 1000)
        end = None if end_time is None else int(end_time * 1000)
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags=all_tags, start_time=start
        )
        run_id = run.info.run_id
        now = end if end is not None else int(time.time() * 1000)
        status = RunStatus.to_string(RunStatus.FAILED)
        try:
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
            )
            status = RunStatus.to_string(RunStatus.FINISHED)
        finally:
            self.client.set_terminated(run_id, status, end_time=end)
        return run_id

    def find(self, key: str) -> str | None:
        run = tracking.find_finished_run(self.experiment_id, key)
        return run.info.run_id if run is not None else None

    def find_jobs(self, job_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        """The experiment's finished job runs, newest first, page by page (a tag cannot
        be searched with ``IN``)."""
        wanted = set(job_ids)
        found: dict[str, tuple[str, str | None]] = {}
        token = None
        while wanted - found.keys():
            page = self.client.search_runs(
                [self.experiment_id],
                "tags.stage = 'job' and attributes.status = 'FINISHED'",
                max_results=5000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            for run in page:
                job_id = run.data.tags.get("job_id")
                if job_id in wanted and job_id not in found:
                    found[job_id] = (run.info.run_id, run.data.tags.get(MLFLOW_PARENT_RUN_ID))
            token = page.token
            if not token:
                break
        return found

    def artifacts(self, run_id: str, path: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))

    def optuna_storage(self) -> str:
        url = tracking.optuna_storage()
        if url not in _OPTUNA_READY:  # its schema created once, under a lock
            import optuna

            with tracking.store_lock(url):
                optuna.storages.get_storage(url)
            _OPTUNA_READY.add(url)
        return url

    def lightning_logger(self, run: MLflowRun) -> Any:
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(tracking_uri=tracking.tracking_uri(), run_id=run.id)

    def log_probe(self, run: MLflowRun, z: Any, temperature: float) -> None:
        """The probe as a pyfunc model ``probe`` of the run (``runs:/<run>/probe``)."""
        from modelrecovery.study.mlflow_model import log_probe_model

        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run.id):
            log_probe_model(z, temperature, Path(tmp) / "probe")
