"""``make ui`` (``python -m modelrecovery.tracking ui``): its own default port (the team
stack's MLflow server has 5000), and a taken port is a non-zero exit with one line saying
what is there, not ``Address already in use`` and exit 0."""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from modelrecovery.stack import StackSettings
from modelrecovery.ui import UI_PORT, default_port

ROOT = Path(__file__).resolve().parents[1]


def _ui(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    return subprocess.run(
        [sys.executable, "-m", "modelrecovery.tracking", "ui", *argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_ui_port_is_not_the_stacks(monkeypatch):
    monkeypatch.delenv("MODELRECOVERY_UI_PORT", raising=False)
    assert default_port() == UI_PORT != StackSettings().mlflow_port
    assert UI_PORT not in StackSettings().ports()
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^ui: .*\n\t\$\(PY\) -m modelrecovery\.tracking ui", make, re.M)
    assert f"`make ui` (the MLflow UI on port {UI_PORT})" in (ROOT / "README.md").read_text()
    tutorial = (ROOT / "docs" / "tutorials" / "default-study.md").read_text()
    assert f"http://127.0.0.1:{UI_PORT}/#/experiments?workflowType=machine_learning" in tutorial


def test_a_taken_port_fails_and_says_what_is_there(tmp_path):
    with socket.socket() as taken:  # a plain listening socket: this process
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _ui(tmp_path, "--port", str(port))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"modelrecovery ui: error: port {port} on 127.0.0.1 is taken: ")
    assert f"pid {os.getpid()} (" in line  # the process listening there
    assert "--port" in line and "Address already in use" not in done.stdout


def test_an_http_server_on_the_port_is_named(tmp_path):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        done = _ui(tmp_path, "--port", str(port))
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 2
    assert "an HTTP server (SimpleHTTP/" in done.stderr and "MLflow" not in done.stderr
