"""Screenshots of the MLflow and Optuna views of a small study, in headless Chromium.

    python benchmarks/screenshots.py [--home DIR] [--out docs/images]

Without ``--home`` a tiny study (36 concepts, two models, zero-shot and full W, N = 20 and
80, two seeds: 16 jobs, about a minute) is run into a temporary tracking home; with it,
that home's ``mlflow.db`` and ``optuna.db`` are shown (its newest recover run), built
there first when it has none. Starts
``mlflow server`` and ``optuna-dashboard`` on free ports of 127.0.0.1, takes

- ``mlflow_compare_jobs.png``: the compare view of the recover run's job runs,
- ``mlflow_recovery_chart.png``: the recover run's recovery figure (log N, exact
  intervals, chance) in its Artifacts tab (``recovery_accuracy.png``),
- ``optuna_dashboard.png``: a λ study in optuna-dashboard (the named objective),

with ``chromium --headless --screenshot`` (palette PNGs, a few hundred KB in all), and
stops the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
VIEW = "workflowType=machine_learning"

TINY = [
    "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
    "image_size: 48}",
    "models=[timm:resnet10t,timm:lcnet_100]",
    "grid.sizes=[20,80] grid.seeds=[0,1] tune.lams=[0.1,10.0] tune.n_folds=2",
    "grid.levels=[{family: zero_shot},{family: full}]",
    "executor.kind=inprocess",
    "include_uninformative=true",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_home(home: Path) -> None:
    """Run the tiny study into ``home`` (MLflow and Optuna SQLite files there)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"
    os.environ["OPTUNA_STORAGE"] = f"sqlite:///{home}/optuna.db"
    os.environ["MODELRECOVERY_DATA"] = str(home / "data")
    from modelrecovery.config import split_overrides
    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import run_study
    from modelrecovery.study.spec import load_spec

    spec = load_spec("default", split_overrides(TINY + [f"store={home / 'store'}"]))
    run_study(spec, MLflowTracker(spec.study), progress=False)


def wait_for(url: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def screenshot(
    url: str, path: Path, profile: Path, size: str = "1280,800", budget_ms: int = 25_000
) -> None:
    """A PNG of ``url`` after its scripts ran, reduced to a 256-colour palette."""
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--user-data-dir={profile}",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="a tracking home (default: build one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print("screenshots: /usr/bin/chromium not found (apt-get install chromium)")
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="screenshots-")
    home = args.home.resolve() if args.home else Path(tmp.name) / "home"
    if not (home / "mlflow.db").exists():  # build the tiny study's home
        home.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        build_home(home)
        print(f"tiny study: {time.perf_counter() - tic:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{home}/mlflow.db")
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    recover = client.search_runs(
        [e.experiment_id for e in experiments],
        "tags.stage = 'recover'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    experiment = recover.info.experiment_id
    jobs = client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{recover.info.run_id}' and tags.stage = 'job'"
    )
    # the full-W jobs at one seed: the compare view's columns
    chosen = [r.info.run_id for r in jobs if r.data.params.get("level") == "full"][:6]

    mlflow_port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--backend-store-uri",
                f"sqlite:///{home}/mlflow.db",
                "--workers",
                "1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=home,
        ),  # fmt: skip
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelrecovery.cli",
                "dashboard",
                "--storage",
                f"sqlite:///{home}/optuna.db",
                "--port",
                str(dashboard_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=home,
        ),  # fmt: skip
    ]
    try:
        server = f"http://127.0.0.1:{mlflow_port}"
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        wait_for(f"{server}/health")
        wait_for(f"{dashboard}/api/studies")
        studies = json.load(urllib.request.urlopen(f"{dashboard}/api/studies", timeout=10))
        listed = studies.get("study_summaries") or studies.get("studies") or []
        study = sorted(listed, key=lambda s: s["study_name"])[-1]
        runs = urllib.parse.quote(json.dumps(chosen))
        pages = {
            "mlflow_compare_jobs": (
                f"{server}/#/compare-runs?runs={runs}&experiments="
                f"{urllib.parse.quote(json.dumps([experiment]))}&{VIEW}"
            ),
            "mlflow_recovery_chart": (
                f"{server}/#/experiments/{experiment}/runs/{recover.info.run_id}"
                f"/artifacts/recovery_accuracy.png?{VIEW}"
            ),
            "optuna_dashboard": f"{dashboard}/dashboard/studies/{study['study_id']}",
        }
        profile = Path(tmp.name) / "chromium"
        for name, url in pages.items():
            path = args.out / f"{name}.png"
            # the chart tab lists charts by name: the recovery_by_size_* ones in its 4th row
            screenshot(url, path, profile)
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                  f"{path.stat().st_size / 1000:.0f} kB  ({url})")  # fmt: skip
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
