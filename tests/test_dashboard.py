"""`modelrecovery dashboard` serves the Optuna storage with optuna-dashboard on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.service
def test_dashboard_serves_the_tuning_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="tune/m/full/abc", storage=storage)
    study.optimize(lambda t: t.suggest_float("lam", 1e-3, 1.0, log=True), n_trials=2)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelrecovery.cli",
            "dashboard",
            "--storage",
            storage,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # its own folder and stores: nothing written into the working tree
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"},
    )
    try:
        body = ""
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/api/studies"
                body = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "tune/m/full/abc" in body
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
