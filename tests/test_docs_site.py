"""The documentation site, checked as a reader would: ``mkdocs build --strict`` (a broken
link, a missing page or an unknown reference marker fails), then the home page, the
own-data tutorial and the config reference opened in headless Chromium, with their
stylesheet applied, their figures loaded and their generated parts present."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MKDOCS = Path(sys.executable).parent / "mkdocs"

pytestmark = pytest.mark.slow

#: a script appended to a page: once loaded, it writes what a reader would see into the body
PROBE = """<script>window.addEventListener('load', function () {
  var im = document.images, ok = 0;
  for (var i = 0; i < im.length; i++) { if (im[i].complete && im[i].naturalWidth > 0) ok++; }
  var header = document.querySelector('.md-header');
  var article = document.querySelector('article');
  document.body.setAttribute('data-probe', JSON.stringify({
    images: im.length, loaded: ok,
    header_position: header ? getComputedStyle(header).position : null,
    tables: document.querySelectorAll('article table').length,
    text: article ? article.innerText.length : 0,
    title: document.title
  }));
});</script>"""


def build(site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of the repository's docs into ``site``."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not MKDOCS.exists():
        pytest.skip(f"{MKDOCS} not found (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    done = build(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def open_in_chromium(page: Path, tmp_path: Path) -> dict:
    """What the probe script saw after Chromium loaded ``page`` (a copy with the probe)."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--allow-file-access-from-files", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        probed.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"data-probe=\"([^\"]*)\"", done.stdout)
    assert match, f"the probe did not run; stderr: {done.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_site_builds_every_page_of_the_nav(site):
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(entries):
        for entry in entries:
            for value in entry.values():
                yield from pages(value) if isinstance(value, list) else [value]

    for source in pages(nav):
        assert (ROOT / "docs" / source).is_file(), source
        built = site / ("index.html" if source == "index.md" else source[:-3] + "/index.html")
        assert built.is_file(), built
        html = built.read_text()
        assert "<!-- reference:" not in html, f"{source}: a reference marker was left"
        assert "(being written)" not in html, f"{source}: still a placeholder"


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check CI relies on: a link to a missing page is an error, not a warning."""
    if not MKDOCS.exists():
        pytest.skip(f"{MKDOCS} not found")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "development.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr


@pytest.mark.parametrize(
    ("page", "min_images", "min_tables", "must_contain"),
    [
        ("index.html", 1, 2, ["make recover", "zero-shot", "modelrecovery init"]),
        ("tutorials/own-data/index.html", 1, 0, ["modelrecovery init", "modelrecovery check"]),
        ("reference/config/index.html", 0, 1, ["grid.sizes", "probe.stopping", "required"]),
    ],
)
def test_page_renders_in_headless_chromium(site, tmp_path, page, min_images, min_tables,
                                           must_contain):  # fmt: skip
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium not found (Debian: apt-get install -y chromium)")
    path = site / page
    seen = open_in_chromium(path, tmp_path)
    assert seen["header_position"] == "sticky", seen  # Material's stylesheet applied
    assert seen["images"] >= min_images, seen
    assert seen["loaded"] == seen["images"], seen  # every figure loaded
    assert seen["tables"] >= min_tables, seen
    assert seen["text"] > 500, seen
    text = html_module.unescape(re.sub(r"<[^>]+>", "", path.read_text()))  # what is read
    for words in must_contain:
        assert words in text, (page, words)
