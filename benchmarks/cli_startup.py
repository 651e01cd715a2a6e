"""How long the command line takes to answer, as a new user meets it.

Times (median of ``--repeats`` runs, each a fresh process) of ``modelrecovery --help``,
a subcommand's ``--help``, an argument error, ``noise-ceiling`` and ``evaluate`` on a small
file written here (40 concepts, 2,000 triplets), next to two baselines measured in the same
run: a bare ``python -c pass`` and ``python -c "import torch"``. Goals (issue
"Reliability"): ``--help`` and argument errors under 1 s; ``noise-ceiling`` and
``evaluate`` on a small file under 3 s.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def seconds(argv: list[str], cwd: Path, repeats: int, expect: int) -> float:
    """Median wall time of ``argv`` over ``repeats`` fresh processes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != expect:
            raise SystemExit(f"{argv}: exit {proc.returncode}, expected {expect}: {proc.stderr}")
    return statistics.median(times)


def write_small_inputs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    ids = np.array([rng.choice(40, 3, replace=False) for _ in range(2000)])
    odd = rng.integers(0, 3, len(ids))
    lines = ["i,j,k,odd"] + [f"{a},{b},{c},{o}" for (a, b, c), o in zip(ids, odd, strict=True)]
    (folder / "small.csv").write_text("\n".join(lines) + "\n")
    np.save(folder / "small.npy", x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    cli = [py, "-m", "modelrecovery.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_small_inputs(folder)
        # warm the OS file cache and numba's compiled-kernel cache once
        subprocess.run(
            [*cli, "evaluate", "--features", "small.npy", "--triplets", "small.csv"],
            cwd=folder,
            capture_output=True,
        )
        cases = [
            ("python -c pass (baseline)", [py, "-c", "pass"], 0),
            ("python -c 'import torch' (baseline)", [py, "-c", "import torch"], 0),
            ("modelrecovery --help", [*cli, "--help"], 0),
            ("modelrecovery fit --help", [*cli, "fit", "--help"], 0),
            ("modelrecovery fit --lam abc (argument error)", [*cli, "fit", "--lam", "abc"], 2),
            ("modelrecovery noise-ceiling small.csv", [*cli, "noise-ceiling", "small.csv"], 0),
            (
                "modelrecovery evaluate (small files)",
                [*cli, "evaluate", "--features", "small.npy", "--triplets", "small.csv"],
                0,
            ),
        ]
        results = {name: seconds(argv, folder, args.repeats, code) for name, argv, code in cases}
    base = results["python -c pass (baseline)"]
    width = max(len(name) for name in results)
    print(f"{'command':<{width}}  seconds  x bare python")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:7.2f}  {value / base:6.1f}")
    help_s = results["modelrecovery --help"]
    error_s = results["modelrecovery fit --lam abc (argument error)"]
    small = max(
        results["modelrecovery noise-ceiling small.csv"],
        results["modelrecovery evaluate (small files)"],
    )
    print(
        f"help_seconds={help_s:.2f} argument_error_seconds={error_s:.2f} "
        f"small_file_seconds={small:.2f}"
    )


if __name__ == "__main__":
    main()
