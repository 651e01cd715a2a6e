"""Every shell block of the tutorials (docs/tutorials/*.md) runs as the reader would run it.

A fenced ```bash block is run, in page order, all blocks of a page in one fresh folder
(the working directory), with `bash -euo pipefail`, the project's environment's bin folder
first on PATH and no MLFLOW_* / OPTUNA_STORAGE variables (a reader's shell has none: the
tracking home is ./tracking). A block that must not run here is preceded by the line
`<!-- not run: REASON -->` with a non-empty REASON; every other block must exit 0 within
BLOCK_TIMEOUT seconds. Each block runs in a session of its own, and whatever it leaves
running in the background is stopped when it ends.

The extraction (:func:`fenced_blocks`) is shared with tests/test_docs_python.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
PAGES = sorted(path.stem for path in TUTORIALS.glob("*.md"))
BLOCK_TIMEOUT = 120  # seconds per block
MAKE_DATA = ROOT / "examples" / "own_data" / "make_data.py"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)[^`]*$")
NOT_RUN = re.compile(r"^<!--\s*not run\b:?(?P<reason>.*?)-->$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, first line (1-based, the fence's), code (the
    fence's indentation removed) and, for a block marked not to run, the marker's reason
    (None: no marker)."""

    lang: str
    line: int
    code: str
    not_run: str | None = None

    def where(self, page: str) -> str:
        return f"{page}:{self.line}"


def fenced_blocks(text: str, lang: str | None = None) -> list[Block]:
    """The fenced code blocks of a markdown text, in order (``lang``: only those).

    A block's marker is the last non-blank line before its opening fence, when that line is
    ``<!-- not run: REASON -->``. Fences may be indented (lists, admonitions); the closing
    fence is the first line of the same fence character, at least as long, and nothing
    else. An unclosed fence raises ValueError."""
    lines = text.splitlines()
    blocks: list[Block] = []
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise ValueError(f"line {i + 1}: the fence {fence} is never closed")
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[i + 1 : end]
        ]
        marker = NOT_RUN.match(previous)
        blocks.append(
            Block(
                lang=opening["lang"].lower(),
                line=i + 1,
                code="\n".join(body) + "\n",
                not_run=marker["reason"].strip() if marker else None,
            )
        )
        previous = ""
        i = end + 1
    return [b for b in blocks if lang is None or b.lang == lang]


def page_blocks(page: str) -> list[Block]:
    return fenced_blocks((TUTORIALS / f"{page}.md").read_text(), "bash")


def unaccounted(page: str) -> list[str]:
    """What is wrong with a page's markers: a `not run` marker without a reason, or one
    that marks no bash block."""
    text = (TUTORIALS / f"{page}.md").read_text()
    problems = [
        f"{b.where(page)}: `<!-- not run: REASON -->` needs a REASON"
        for b in fenced_blocks(text, "bash")
        if b.not_run == ""
    ]
    marked = {b.line for b in fenced_blocks(text) if b.not_run is not None and b.lang == "bash"}
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if NOT_RUN.match(line.strip()):
            following = next(
                (n for n in range(number + 1, len(lines) + 1) if lines[n - 1].strip()), None
            )
            if following not in marked:
                problems.append(f"{page}:{number}: a `not run` marker not followed by a bash block")
    return problems


def reader_env() -> dict[str, str]:
    """The environment of a reader's shell with the project installed."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MLFLOW_") and name != "OPTUNA_STORAGE"
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_block(code: str, cwd: Path, log: Path, timeout: float = BLOCK_TIMEOUT) -> tuple[int, str]:
    """Run ``code`` with ``bash -euo pipefail`` in ``cwd`` (its own session; anything left
    running is stopped afterwards); its exit status (None: timed out) and its output."""
    script = log.with_suffix(".sh")
    script.write_text(code)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", str(script)],
            cwd=cwd,
            env=reader_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code_ = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code_ = None
        finally:
            _stop_group(proc.pid)
            proc.wait()
    return code_, log.read_text(errors="replace")


def _stop_group(pgid: int) -> None:
    """SIGTERM the block's process group, then SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


# ---------------------------------------------------------------------------- the helper
def test_fenced_blocks_reads_markers_indentation_and_languages() -> None:
    text = "\n".join(
        [
            "# page",
            "```bash",
            "echo one",
            "```",
            "<!-- not run: needs a GPU -->",
            "",
            "```bash",
            "nvidia-smi",
            "```",
            "```text",
            "output",
            "```",
            "1. a step",
            "",
            "    ```bash",
            "    echo two",
            "      indented",
            "    ```",
            "<!-- not run: -->",
            "````bash",
            "echo '```'",
            "````",
        ]
    )
    blocks = fenced_blocks(text, "bash")
    assert [(b.line, b.code, b.not_run) for b in blocks] == [
        (2, "echo one\n", None),
        (7, "nvidia-smi\n", "needs a GPU"),
        (15, "echo two\n  indented\n", None),
        (20, "echo '```'\n", ""),
    ]
    assert [b.lang for b in fenced_blocks(text)] == ["bash", "bash", "text", "bash", "bash"]
    with pytest.raises(ValueError, match="never closed"):
        fenced_blocks("```bash\necho")


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_run_or_says_why_not(page) -> None:
    """Fast: every bash block of every tutorial is either run (no marker) or marked
    `not run` with a reason, and no marker is left dangling."""
    assert not unaccounted(page), "\n".join(unaccounted(page))


def test_the_tutorials_toy_data_is_the_examples_dataset(tmp_path) -> None:
    """The toy lab the tutorials write inline (own-data, plan, cluster-gpu) is byte for byte
    what examples/own_data/make_data.py writes, so the figures measured on it hold."""
    reference = tmp_path / "reference"
    done = subprocess.run(
        [sys.executable, str(MAKE_DATA), str(reference / "my-data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = {
        p.relative_to(reference): p.read_bytes() for p in reference.rglob("*") if p.is_file()
    }
    writers = [
        (page, b)
        for page in PAGES
        for b in page_blocks(page)
        if b.not_run is None and "my-data/train.csv" in b.code and "python - <<" in b.code
    ]
    assert {page for page, _ in writers} >= {"own-data", "plan", "cluster-gpu"}
    for page, block in writers:
        folder = tmp_path / f"{page}-{block.line}"
        folder.mkdir()
        status, output = run_block(block.code, folder, tmp_path / f"{page}-{block.line}.log")
        assert status == 0, f"{block.where(page)}:\n{output[-3000:]}"
        found = {
            p.relative_to(folder): p.read_bytes()
            for p in (folder / "my-data").rglob("*")
            if p.is_file()
        }
        assert found == expected, f"{block.where(page)} writes another dataset than make_data.py"


# ---------------------------------------------------------------------------- the pages
@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_tutorial_shell_blocks_run(page, tmp_path) -> None:
    """The page's runnable bash blocks, in order, in one fresh folder, each exit 0."""
    assert not unaccounted(page), "\n".join(unaccounted(page))
    work = tmp_path / "work"
    work.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    timings = []
    for block in page_blocks(page):
        if block.not_run is not None:
            continue
        start = time.monotonic()
        status, output = run_block(block.code, work, logs / f"block-{block.line}.log")
        timings.append(f"{block.where(page)} {time.monotonic() - start:.1f} s")
        if status != 0:
            what = "timed out" if status is None else f"exit status {status}"
            pytest.fail(
                f"{block.where(page)}: {what}\n--- block ---\n{block.code}"
                f"--- output (tail) ---\n{output[-4000:]}",
                pytrace=False,
            )
    print(f"{page}: " + ("; ".join(timings) or "no block runs here"))
