"""``make ui``: the MLflow UI on the local tracking home, on its own port.

``python -m modelrecovery.tracking ui [--host H] [--port P]`` checks the port first: the
team stack's MLflow server has 5000, so the local UI defaults to :data:`UI_PORT` (5001;
``MODELRECOVERY_UI_PORT`` or ``make ui UI_PORT=...`` chooses another). When the port is
taken it exits 2 with one line saying what is there (the process, when this user can see
it, and whether an MLflow server answers), instead of ``mlflow ui`` printing ``Address
already in use`` and exiting 0 while the URL shows another store's runs."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

UI_PORT = 5001
UI_HOST = "127.0.0.1"


class PortTaken(ValueError):
    """The UI's port is in use (one line: the port, what is there, what to do)."""


def default_port() -> int:
    """``MODELRECOVERY_UI_PORT`` if set, else :data:`UI_PORT`."""
    text = os.environ.get("MODELRECOVERY_UI_PORT")
    if not text:
        return UI_PORT
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"MODELRECOVERY_UI_PORT={text!r}: expected a port number") from None


def _listener(port: int) -> str | None:
    """The process listening on ``port`` (``pid 123 (mlflow server ...)``), when this user
    may see it."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return None
                command = " ".join(psutil.Process(conn.pid).cmdline())[:120]
                return f"pid {conn.pid} ({command})"
    except (psutil.Error, OSError):
        return None
    return None


def _answer(host: str, port: int) -> str | None:
    """What an HTTP request to the port finds: an MLflow server, another HTTP server."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as response:
            body = response.read(200).decode(errors="replace").strip()
            server = response.headers.get("Server", "")
    except urllib.error.HTTPError as err:
        body, server = "", err.headers.get("Server", "") if err.headers else ""
    except (OSError, ValueError):
        return None
    try:
        with urllib.request.urlopen(
            f"http://{host}:{port}/api/2.0/mlflow/experiments/search?max_results=1", timeout=2
        ) as response:
            if b"experiments" in response.read(2000) or response.status == 200:
                return "an MLflow server answers there (the team stack's?)"
    except (OSError, ValueError):
        pass
    shown = f" ({server})" if server else (f" ({body[:40]})" if body else "")
    return f"an HTTP server{shown} answers there"


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortTaken` when ``port`` cannot be bound on ``host``."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
            return
        except OSError as err:
            reason = err.strerror or str(err)
    found = [part for part in (_listener(port), _answer(host, port)) if part]
    what = "; ".join(found) if found else reason
    raise PortTaken(
        f"port {port} on {host} is taken: {what}; choose another with --port "
        f"(make ui UI_PORT=...) or stop it"
    )


def mlflow_executable() -> str:
    """The ``mlflow`` command beside this Python (its environment's), else on PATH."""
    beside = Path(sys.executable).parent / "mlflow"
    if beside.is_file():
        return str(beside)
    found = shutil.which("mlflow")
    if found is None:
        raise FileNotFoundError("the mlflow command was not found (pip install mlflow)")
    return found


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line for the store ``uri``."""
    return [mlflow_executable(), "ui", "--backend-store-uri", uri, "--host", host,
            "--port", str(port)]  # fmt: skip


def launch(uri: str, host: str = UI_HOST, port: int | None = None) -> int:
    """Check the port, print the URL, then become ``mlflow ui`` (returns only on a
    problem: 2 and one line on stderr)."""
    port = default_port() if port is None else port
    try:
        check_port(host, port)
        command = ui_command(uri, host, port)
    except (PortTaken, FileNotFoundError) as err:
        print(f"modelrecovery ui: error: {err}", file=sys.stderr)
        return 2
    url = f"http://{host}:{port}/#/experiments?workflowType=machine_learning"
    print(f"MLflow UI on {uri}: {url}", file=sys.stderr, flush=True)
    os.execv(command[0], command)
    return 0  # not reached
