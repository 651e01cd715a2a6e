"""Every ```python block of the Python API page (docs/reference/python.md) runs, so the page
cannot go stale: each block as a script of its own, in a folder holding what the page
says it needs (the toy lab of the own-data tutorial: my-data/ from
examples/own_data/make_data.py, my-study/study.yaml from `modelrecovery init`), with no
MLFLOW_* / OPTUNA_STORAGE variables. A fast test checks that every block compiles and that
every name it imports exists."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs_shell import MAKE_DATA, ROOT, fenced_blocks, reader_env

PAGE = ROOT / "docs" / "reference" / "python.md"
BLOCKS = fenced_blocks(PAGE.read_text(), "python")
IDS = [f"python.md:{b.line}" for b in BLOCKS]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A folder with the own-data tutorial's my-data/ and my-study/study.yaml."""
    folder = tmp_path_factory.mktemp("python-page")
    steps = [
        [sys.executable, str(MAKE_DATA), "my-data"],
        [str(Path(sys.executable).parent / "modelrecovery"), "init", "my-study",
         "--features", "my-data/features", "--triplets", "my-data/train.csv",
         "--repeated", "my-data/repeated.csv"],
    ]  # fmt: skip
    for command in steps:
        done = subprocess.run(
            command, cwd=folder, env=reader_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}: {done.stderr}"
    return folder


def test_the_page_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_compiles_and_its_imports_exist(block) -> None:
    tree = ast.parse(block.code, filename=f"python.md:{block.line}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_runs(block, lab) -> None:
    script = lab / f"block_{block.line}.py"
    script.write_text(block.code)
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=lab,
        env=reader_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"python.md:{block.line} failed\n--- block ---\n{block.code}"
        f"--- stderr (tail) ---\n{done.stderr[-4000:]}"
    )
