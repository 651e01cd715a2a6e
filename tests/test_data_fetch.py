"""``modelrecovery data things``: downloads from a local HTTP server on 127.0.0.1 (the real
hosts are not reachable here): checksums, resume after an interrupted download, a corrupted
file, offline, the OSF API lookup, no partial file under a final name."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelrecovery.cli import main
from modelrecovery.data import fetch
from modelrecovery.data.fetch import DownloadError, RemoteFile, fetch_things

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "things"


class Server:
    """Serves ``files`` (name -> bytes) with Range support. ``cut[name] = n`` sends the full
    Content-Length but closes after n bytes (once); ``ignore_range`` answers 200 always;
    ``json[path]`` serves JSON documents (a fake OSF API)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.json: dict[str, dict] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                server.requests.append((path, self.headers.get("Range")))
                if path in server.json:
                    body = json.dumps(server.json[path]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = path.rsplit("/", 1)[-1]
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                ranged = self.headers.get("Range")
                if ranged and not server.ignore_range:
                    start = int(ranged.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _remote(name: str, data: bytes, url: str, **kw) -> RemoteFile:
    return RemoteFile(
        name, f"{url}/files/{name}", hashlib.sha256(data).hexdigest(), len(data), **kw
    )


@pytest.fixture()
def server():
    with Server() as s:
        yield s


def test_download_checksum_and_second_run_downloads_nothing(server, tmp_path):
    a, b = b"alpha\n" * 1000, bytes(range(256)) * 300
    server.files = {"a.txt": a, "b.bin": b}
    files = [_remote("a.txt", a, server.url), _remote("b.bin", b, server.url)]
    rows = fetch_things(tmp_path, files=files, progress=False)
    assert [r["status"] for r in rows] == ["downloaded", "downloaded"]
    assert (tmp_path / "a.txt").read_bytes() == a and (tmp_path / "b.bin").read_bytes() == b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]
    n = len(server.requests)
    rows = fetch_things(tmp_path, files=files, progress=False)
    assert [r["status"] for r in rows] == ["present", "present"]
    assert len(server.requests) == n  # verified locally, nothing fetched


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = bytes(range(256)) * 4000  # 1 MB
    server.files = {"big.bin": data}
    server.cut = {"big.bin": 300_000}
    files = [_remote("big.bin", data, server.url)]
    with pytest.raises(DownloadError, match="interrupted after .* run the command again"):
        fetch_things(tmp_path, files=files, progress=False)
    assert not (tmp_path / "big.bin").exists()  # nothing looks complete
    part = tmp_path / "big.bin.part"
    assert 0 < part.stat().st_size < len(data)
    kept = part.stat().st_size
    rows = fetch_things(tmp_path, files=files, progress=False)
    assert rows[0]["status"] == "downloaded"
    assert (tmp_path / "big.bin").read_bytes() == data
    assert not part.exists()
    assert server.requests[-1] == ("/files/big.bin", f"bytes={kept}-")


def test_server_ignoring_ranges_restarts_cleanly(server, tmp_path):
    data = b"0123456789" * 10_000
    server.files = {"f.bin": data}
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(data[:5000])
    fetch_things(tmp_path, files=[_remote("f.bin", data, server.url)], progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_corrupted_file_is_refused_and_nothing_kept(server, tmp_path):
    good = b"the right bytes\n" * 100
    bad = bytearray(good)
    bad[17] ^= 0xFF  # same size, one byte flipped
    server.files = {"c.txt": bytes(bad)}
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        fetch_things(tmp_path, files=[_remote("c.txt", good, server.url)], progress=False)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_damaged_local_copy_is_fetched_again(server, tmp_path):
    data = b"payload\n" * 50
    server.files = {"d.txt": data}
    (tmp_path / "d.txt").write_bytes(b"garbage")
    rows = fetch_things(tmp_path, files=[_remote("d.txt", data, server.url)], progress=False)
    assert rows[0]["status"] == "downloaded"
    assert (tmp_path / "d.txt").read_bytes() == data


def test_offline_is_one_line(tmp_path):
    with Server() as s:
        url = s.url  # a port that is closed once the server stops
    files = [RemoteFile("x.txt", f"{url}/x.txt", "0" * 64, 10)]
    with pytest.raises(DownloadError, match=r"x.txt: cannot reach 127.0.0.1:\d+ \(offline") as err:
        fetch_things(tmp_path, files=files, progress=False)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_osf_lookup_gives_link_and_published_sha256(server, tmp_path):
    data = b"image1\timage2\timage3\tchoice\tsubject_id\tnoise_ceiling\n1\t2\t3\t1\t7\t0\n"
    server.files = {"triplets.csv": data}
    api = f"{server.url}/v2"
    folder = f"{api}/nodes/abcde/files/osfstorage/0123/"
    server.json = {
        "/v2/nodes/abcde/files/osfstorage/": {
            "data": [{"attributes": {"name": "other"}}],
            "links": {"next": f"{api}/page2"},
        },
        "/v2/page2": {
            "data": [
                {
                    "attributes": {"name": "data"},
                    "relationships": {"files": {"links": {"related": {"href": folder}}}},
                }
            ],
            "links": {"next": None},
        },
        "/v2/nodes/abcde/files/osfstorage/0123/": {
            "data": [
                {
                    "attributes": {
                        "name": "triplets.csv",
                        "size": len(data),
                        "extra": {"hashes": {"sha256": hashlib.sha256(data).hexdigest()}},
                    },
                    "links": {"download": f"{server.url}/download/triplets.csv"},
                }
            ]
        },
    }
    remote = RemoteFile("triplets.csv", None, None, None, osf=("abcde", "data/triplets.csv"))
    rows = fetch_things(tmp_path, files=[remote], osf_api=api, progress=False)
    assert rows[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "triplets.csv").read_bytes() == data
    # a wrong published hash is a mismatch
    (tmp_path / "triplets.csv").unlink()
    server.files["triplets.csv"] = data.replace(b"7", b"8")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_things(tmp_path, files=[remote], osf_api=api, progress=False)
    missing = RemoteFile("t.csv", None, None, None, osf=("abcde", "data/nope.csv"))
    with pytest.raises(DownloadError, match="data/nope.csv not found"):
        fetch_things(tmp_path, files=[missing], osf_api=api, progress=False)


def test_the_published_list_matches_the_shared_copies():
    """Every small file's checksum and size are those of the shared byte-for-byte copies."""
    if not SHARED.is_dir():
        pytest.skip(f"shared THINGS data not found at {SHARED}")
    for remote in fetch.things_files(include_large=False):
        path = SHARED / remote.name
        assert path.stat().st_size == remote.size, remote.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == remote.sha256, remote.name
    assert fetch.things_files()[-1].osf == (
        "f5rn6",
        "data/triplet_dataset/triplets_large_final_correctednc_correctedorder.csv",
    )


def test_console_command_on_a_mirror(server, tmp_path, capsys, monkeypatch):
    """The real file list from a local mirror: the shared copies pass, one corrupted file
    gives exit 2 and one line."""
    if not SHARED.is_dir():
        pytest.skip(f"shared THINGS data not found at {SHARED}")
    server.files = {r.name: (SHARED / r.name).read_bytes() for r in fetch.things_files(False)}
    monkeypatch.setenv("MODELRECOVERY_THINGS_URL", server.url)
    dest = tmp_path / "things"
    code = main(["data", "things", "--dest", str(dest), "--skip-large", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"unique_id.txt +downloaded", out), out
    assert (dest / "sortindex.txt").read_bytes() == (SHARED / "sortindex.txt").read_bytes()
    (dest / "unique_id.txt").unlink()
    server.files["unique_id.txt"] = server.files["unique_id.txt"].replace(b"aardvark", b"aardwolf")
    code = main(["data", "things", "--dest", str(dest), "--skip-large", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("modelrecovery data: error: unique_id.txt: checksum mismatch")
    assert len(err.splitlines()) == 1
    assert not (dest / "unique_id.txt").exists()
