"""How fast the command line reports two faults (issue 26): a tracking server that does
not answer, and SIGTERM in the middle of a probe fit.

    python benchmarks/fault_timings.py [--repeats 3]

1. ``fit`` with ``MLFLOW_TRACKING_URI`` at a port where nothing listens (refused) and at
   a listener that accepts and never answers (a hung server): seconds from start to exit.
2. ``fit`` of a full W (150 concepts x 90 dimensions, 40,000 triplets, float64; tens of
   seconds) sent SIGTERM 1, 3 and 6 s after its run appears: seconds from the signal to
   the exit (143). Prints one line per measurement and the worst of each kind."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import planted_triplets, repeated_triplets, write_things2023  # noqa: E402

FIT = ["--features", "x.npy", "--triplets", "human.tsv", "--n-concepts", "150"]
SLOW = ["--dtype", "float64", "--stopping", "converged", "--lam", "1e-6"]


def cli(argv: list[str], root: Path, **env: str) -> subprocess.Popen:
    full = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{root}/optuna.db",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelrecovery.cli", *argv],
        cwd=root,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running(db: Path) -> bool:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return bool(con.execute("select 1 from runs where status = 'RUNNING'").fetchall())
    except sqlite3.OperationalError:
        return False


def unreachable(root: Path, repeats: int) -> list[float]:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts (the kernel does), never answers
    cases = {"refused": "http://127.0.0.1:9", "hung": f"http://127.0.0.1:{hung.getsockname()[1]}"}
    worst = []
    for name, uri in cases.items():
        for _ in range(repeats):
            t0 = time.monotonic()
            proc = cli(["fit", *FIT, *SLOW], root, MLFLOW_TRACKING_URI=uri)
            _, err = proc.communicate(timeout=120)
            seconds = time.monotonic() - t0
            worst.append(seconds)
            print(f"tracking server {name}: exit {proc.returncode} after {seconds:.2f} s: "
                  f"{err.strip()[:90]}")  # fmt: skip
    hung.close()
    return worst


def sigterm_mid_fit(root: Path, repeats: int) -> list[float]:
    out = []
    for delay in (1.0, 3.0, 6.0):
        for _ in range(repeats):
            (root / "mlflow.db").unlink(missing_ok=True)
            proc = cli(["fit", *FIT, *SLOW], root)
            deadline = time.monotonic() + 120
            while not running(root / "mlflow.db") and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(delay)
            if proc.poll() is not None:
                print(f"fit ended before the signal ({delay} s): {proc.communicate()[1][-200:]}")
                continue
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
            seconds = time.monotonic() - t0
            out.append(seconds)
            print(f"SIGTERM {delay:g} s into the fit: exit {proc.returncode} after {seconds:.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(150, 90))
        write_things2023(
            root / "human.tsv",
            planted_triplets(x, 40_000, seed=1),
            repeated_triplets(x, 50, 5, seed=2),
        )
        np.save(root / "x.npy", x)
        reports = unreachable(root, args.repeats)
        stops = sigterm_mid_fit(root, args.repeats)
    print(f"worst: unreachable server reported in {max(reports):.2f} s; "
          f"SIGTERM mid-fit exited in {max(stops):.2f} s (cpus: {os.cpu_count()})")  # fmt: skip


if __name__ == "__main__":
    main()
