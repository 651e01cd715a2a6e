"""Check the tracking stores before any work starts.

MLflow retries an unreachable server for minutes and reports a read-only SQLite file as a
traceback after its retries; Optuna does the same with its storage. The command line calls
:func:`check_stores` first, so a wrong ``MLFLOW_TRACKING_URI`` or ``OPTUNA_STORAGE`` fails
within seconds with one line naming the variable, the value and what to do.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 5.0
SERVER_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle")


class StoreError(ValueError):
    """A tracking store that cannot be used (one line: variable, value, what to do)."""


#: the MLflow UI's classic (training runs) layout: every MLflow view link the project
#: prints carries it, else MLflow 3 may open the GenAI layout (the compare view does)
ML_VIEW = "workflowType=machine_learning"


def ui_link(server: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """A link to the MLflow UI of ``server`` (its experiments, an experiment's runs, or a
    run) in the training-runs layout (:data:`ML_VIEW`)."""
    page = "/#/experiments"
    if experiment_id is not None:
        page += f"/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{server.rstrip('/')}{page}?{ML_VIEW}"


def hide_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _describe(variable: str, value: str, default: bool) -> str:
    shown = hide_password(value)
    return f"{shown} (the default store)" if default else f"{variable}={shown}"


def check_sqlite(url: str, what: str, timeout: float = TIMEOUT_SECONDS) -> Path:
    """The database file of a ``sqlite:///`` URL, checked: its folder exists, and the
    file (or the folder, for a new one) can be written. Raises :class:`StoreError`."""
    path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None
    if path is None or not str(path):
        raise StoreError(f"{what}: expected sqlite:///<path to a .db file>")
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(
            f"{what}: the folder {folder} does not exist; create it or choose another path"
        )
    if path.is_dir():
        raise StoreError(f"{what}: {path} is a folder, expected a database file inside it")
    try:
        if path.exists():
            con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
            finally:
                con.close()
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
    except (OSError, sqlite3.Error) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(
            f"{what}: cannot write {path if path.exists() else folder} ({reason}); "
            "choose a writable location"
        ) from None
    free = _free_bytes(folder)
    if free is not None and free < MIN_FREE_BYTES:  # MLflow would retry for minutes
        raise StoreError(
            f"{what}: cannot write {path}: no space left on the device ({free // 1024} KiB "
            f"free, {MIN_FREE_BYTES // 1024} KiB needed); free some space or choose another "
            "location"
        )
    return path


MIN_FREE_BYTES = 1 << 20
"""The least free space a SQLite store's disk needs: with less, a full disk fails its
writes (and MLflow retries opening it for minutes before it gives up)."""


def _free_bytes(folder: Path) -> int | None:
    """Bytes this process may still write on the disk holding ``folder`` (None: unknown)."""
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail  # root: reserved blocks too
    return blocks * stat.f_frsize


def check_database_server(url: str, what: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """Connect once to a database server URL (PostgreSQL, MySQL, ...) with a timeout."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args=_connect_timeout(url, timeout))
    except ModuleNotFoundError as err:
        raise StoreError(
            f"{what}: the database driver is not installed ({_first_line(err)}); install it "
            "(PostgreSQL: pip install 'psycopg[binary]') or name one in the URL "
            "(postgresql+psycopg2://...)"
        ) from None
    except Exception as err:  # a malformed URL
        raise StoreError(f"{what}: not a usable database URL ({_first_line(err)})") from None
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as err:
        raise StoreError(
            f"{what}: cannot connect to the database ({_first_line(err)}); "
            "is the server running (make stack-up) and the URL right?"
        ) from None
    finally:
        engine.dispose()


def _connect_timeout(url: str, timeout: float) -> dict:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return {"connect_timeout": max(1, int(timeout))}
    if scheme == "mysql":
        return {"connect_timeout": max(1, int(timeout))}
    return {}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_mlflow_server(url: str, what: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """One request to an MLflow server's REST API (search one experiment), no retries:
    it fails when nothing listens, and when the server answers but its database does not
    (``/health`` would still say OK)."""
    probe = url.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    _check_reachable(url, what, min(timeout, CONNECT_SECONDS))
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            response.read(256)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise StoreError(
                f"{what}: the server there is not an MLflow tracking server (HTTP 404 for "
                "its REST API)"
            ) from None
        if err.code >= 500:
            detail = " ".join(err.read(300).decode(errors="replace").split())
            raise StoreError(
                f"{what}: the MLflow server answered HTTP {err.code} ({detail[:200]}); "
                "is its database up?"
            ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise StoreError(
            f"{what}: no MLflow server answers ({reason}); start it (make stack-up) or "
            "unset MLFLOW_TRACKING_URI to use the local store tracking/mlflow.db"
        ) from None


CONNECT_SECONDS = 2.0
"""The longest wait for a tracking server's TCP connection (a host that drops packets):
the request's own timeout is for a server that accepts but answers slowly."""


def _check_reachable(url: str, what: str, timeout: float) -> None:
    """One TCP connection to the server of ``url`` within ``timeout`` (not through a
    proxy the environment names for it: then the request decides)."""
    import socket

    parts = urlsplit(url)
    host = parts.hostname
    if not host or (
        urllib.request.getproxies().get(parts.scheme) and not (urllib.request.proxy_bypass(host))
    ):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        reason = (
            f"no answer within {timeout:g} s"
            if isinstance(err, TimeoutError)
            else (err.strerror or str(err))
        )
        raise StoreError(
            f"{what}: no MLflow server answers ({reason}); start it (make stack-up) or "
            "unset MLFLOW_TRACKING_URI to use the local store tracking/mlflow.db"
        ) from None


def check_tracking_uri(uri: str, default: bool = False, timeout: float = TIMEOUT_SECONDS) -> None:
    """Check an MLflow tracking URI (``MLFLOW_TRACKING_URI`` unless ``default``)."""
    what = _describe("MLFLOW_TRACKING_URI", uri, default)
    scheme = urlsplit(uri).scheme.split("+", 1)[0]
    if scheme in ("http", "https"):
        check_mlflow_server(uri, what, timeout)
    elif scheme == "sqlite":
        check_sqlite(uri, what, timeout)
    elif scheme in SERVER_SCHEMES:
        check_database_server(uri, what, timeout)
    elif scheme in ("", "file") or len(scheme) == 1:  # a folder (or a Windows drive)
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return
        folder = uri[len("file://") :] if uri.startswith("file://") else uri
        raise StoreError(
            f"{what}: a folder path; MLflow 3 needs a database or a server: use "
            f"sqlite:///{Path(folder).resolve() / 'mlflow.db'} or http://<host>:<port> "
            "(or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder store)"
        )
    # other schemes (databricks, ...): left to MLflow


def check_optuna_url(
    url: str, default: bool = False, timeout: float = TIMEOUT_SECONDS, what: str | None = None
) -> None:
    """Check an Optuna storage URL (``OPTUNA_STORAGE`` unless ``default``; ``what`` names
    another source, e.g. an option)."""
    what = f"{what}={hide_password(url)}" if what else _describe("OPTUNA_STORAGE", url, default)
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    if scheme == "sqlite":
        check_sqlite(url, what, timeout)
    elif scheme in SERVER_SCHEMES:
        check_database_server(url, what, timeout)
    else:
        raise StoreError(
            f"{what}: expected a database URL such as sqlite:///<path>/optuna.db or "
            "postgresql://<user>@<host>/<database>"
        )


def check_stores(mlflow: bool = True, optuna: bool = False) -> None:
    """Check the stores a command will use (``MLFLOW_TRACKING_URI`` / ``OPTUNA_STORAGE``
    or the local defaults): one line and :class:`StoreError` when one cannot be used."""
    server = os.environ.get("MLFLOW_TRACKING_URI", "")
    if mlflow and urlsplit(server).scheme in ("http", "https"):
        # a server is checked before MLflow is imported (1.5 s, several on a busy machine)
        check_tracking_uri(server)
    from modelrecovery.tracking import optuna_storage, tracking_uri

    mlflow_uri = tracking_uri() if mlflow or optuna else None
    if mlflow:
        check_tracking_uri(mlflow_uri, default=not os.environ.get("MLFLOW_TRACKING_URI"))
    if optuna:
        url = optuna_storage()
        check_optuna_url(url, default=not os.environ.get("OPTUNA_STORAGE"))
        if url == mlflow_uri and url.startswith("sqlite"):
            raise StoreError(
                f"OPTUNA_STORAGE and MLFLOW_TRACKING_URI are the same SQLite file ({url}); "
                "MLflow and Optuna need separate databases"
            )


def check_dask_scheduler(address: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """One TCP connection to a Dask scheduler address (``tcp://host:port`` or
    ``host:port``) before any work: Dask's own client waits and retries for long."""
    import socket

    what = f"executor.address={address}"
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.port is None:
        raise StoreError(f"{what}: expected a Dask scheduler address tcp://<host>:<port>")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except OSError as err:
        raise StoreError(
            f"{what}: no Dask scheduler answers ({err.strerror or err}); start one "
            "(dask scheduler) or set executor.address=null for a local cluster"
        ) from None
