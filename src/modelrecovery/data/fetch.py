"""Fetching the public THINGS behavioural files (``modelrecovery data things``).

What is fetched (:data:`THINGS_FILES`):

- the small reference files (concept ids, metadata, SPoSE embeddings, the 2020 repeated
  set, the 2020 -> THINGS order permutation, the odd-one-out image names), from the public
  GitHub mirrors of the THINGS OSF projects that ``../shared/data/things/README.md`` names,
  pinned to a commit, each with its known SHA-256 and size;
- the 2023 triplets file (4.7M judgments with the ``noise_ceiling`` column) from OSF project
  ``f5rn6`` (``data/triplet_dataset/``). Its download link and published SHA-256 are asked of
  the OSF API (``api.osf.io``) at download time: OSF stores a SHA-256 of every file, and we
  hold no copy of this file to compute one. When the API gives none, the file is accepted
  unchecked with a warning line (its size is still checked against the HTTP length).

How (pooch): every file goes to ``<dest>/<name>`` only when complete and verified.
Bytes arrive in ``<dest>/<name>.part``; an interrupted download leaves that file and the
next run resumes it with an HTTP range request (a server that ignores ranges restarts it);
a finished download is checked (size, then SHA-256 by pooch) and moved into place, so a
file under its own name is always whole. A checksum mismatch deletes the bytes and says
so in one line. A second run verifies what is there and downloads nothing.

Mirrors and tests: ``--base-url URL`` (or ``MODELRECOVERY_THINGS_URL``) fetches every file as
``<URL>/<name>`` instead (a folder holding the files by name; the big file then has no
published checksum); ``MODELRECOVERY_OSF_API`` replaces ``https://api.osf.io/v2``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from modelrecovery.input_files import sha256 as file_sha256

__all__ = [
    "DownloadError",
    "RemoteFile",
    "THINGS_FILES",
    "fetch_things",
    "things_files",
]

OSF_API = "https://api.osf.io/v2"
BASE_URL_VAR = "MODELRECOVERY_THINGS_URL"
OSF_API_VAR = "MODELRECOVERY_OSF_API"
DEST_VAR = "MODELRECOVERY_THINGS_DIR"
DEFAULT_DEST = Path("data") / "things"
TIMEOUT_S = 30
CHUNK = 1 << 16
TRIPLETS_2023 = "triplets_large_final_correctednc_correctedorder.csv"


class DownloadError(ValueError):
    """A file could not be fetched or verified; one line saying which and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes
    ----------
    name : the file name under the destination folder.
    url : where it is published (None: resolved through the OSF API from ``osf``).
    sha256 : its known SHA-256 (None: unknown; OSF's published one is used when found).
    size : its size in bytes, when known.
    osf : (project id, path inside the project's osfstorage) of an OSF file.
    what : one line for the listing.
    """

    name: str
    url: str | None
    sha256: str | None
    size: int | None
    osf: tuple[str, str] | None = None
    what: str = ""


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


# The small files are byte-for-byte the copies in ../shared/data/things (sha256 and sizes
# computed from them); sources as in that folder's README.
THINGS_FILES: tuple[RemoteFile, ...] = (
    RemoteFile(
        "unique_id.txt",
        _github("ViCCo-Group/semantic_features_gpt_3", "3b132af", "data/things/unique_id.txt"),
        "e2e59d02197e89776034938e7a73940a0823cacac4b6084b56b1d8959816ff76",
        15201,
        what="the 1854 concept ids in THINGS order",
    ),
    RemoteFile(
        "spose_embedding_49d_sorted.txt",
        _github(
            "ViCCo-Group/semantic_features_gpt_3",
            "3b132af",
            "data/things/spose_embedding_49d_sorted.txt",
        ),
        "b934fac338b803c5f87f60dfe1da90de8d62bacc346e74346a8428aa10cbe175",
        2273072,
        what="SPoSE 49-d human embedding (2020 triplets), THINGS order",
    ),
    RemoteFile(
        "spose_embedding_66d_sorted.txt",
        _github(
            "ViCCo-Group/semantic_features_gpt_3",
            "3b132af",
            "data/things/spose_embedding_66d_sorted.txt",
        ),
        "6a485922fe22c10b2eb920140198488451d44ac6de0c6be5e8ee8eec8a2007cc",
        3303874,
        what="SPoSE 66-d human embedding (2023 triplets), THINGS order",
    ),
    RemoteFile(
        "things_concepts.tsv",
        _github("ViCCo-Group/thingsvision", "57e91c9", "data/files/things_concepts.tsv"),
        "f6eb4ec6fcad61e50a746bee820f98d1595fe655e9e210a9a407e9a17fd8cee4",
        497467,
        what="per-concept metadata, THINGS order",
    ),
    RemoteFile(
        "Categories_final_20200131.tsv",
        _github("ViCCo-Group/THINGS-data", "5e0eccac", "MRI/data/Categories_final_20200131.tsv"),
        "968d45a1a2fb8def83b33661031a1c473a61a8fe208c8c0af3474784c6bbcd95",
        254965,
        what="53 higher-level categories (THINGSplus)",
    ),
    RemoteFile(
        "triplets_noiseceiling_2020.tsv",
        _github("LukasMut/VICE", "f484c14", "data/test_triplets.csv"),
        "f2593378408f54fb047b2f9be040e2773be8f24118bc171d46c2c6a6da79afd4",
        376170,
        what="2020 repeated set (1000 triplets x 14-25 responses), 2020 order",
    ),
    RemoteFile(
        "sortindex.txt",
        _github("LukasMut/VICE", "f484c14", "data/sortindex"),
        "37720adbfbdc9637c1be642ed296c3bc2afbe1d2831418b7a9f941bc03d65a08",
        8159,
        what="2020 order -> THINGS order permutation",
    ),
    RemoteFile(
        "things1854_image_names.csv",
        _github("marrenj/CLIP-HBA-Mem", "59fb0de", "CLIP-HBA/Data/things1854_image_names.csv"),
        "abd559b3c7363b46247ac6ec6b717d30d36d10f491c39263d3dfa440590c451b",
        30044,
        what="odd-one-out reference image per concept, 2020 order",
    ),
    RemoteFile(
        TRIPLETS_2023,
        None,
        None,  # no copy to hash: OSF's published SHA-256 is fetched with the link
        None,
        osf=("f5rn6", f"data/triplet_dataset/{TRIPLETS_2023}"),
        what="THINGS 2023: 4.7M odd-one-out judgments with the noise_ceiling column",
    ),
)


def things_files(include_large: bool = True) -> list[RemoteFile]:
    """The THINGS files, the 4.7M-triplet file last (or left out)."""
    return [f for f in THINGS_FILES if include_large or f.osf is None]


# ------------------------------------------------------------------------------------------
# OSF: a file's download link and SHA-256 from its path
# ------------------------------------------------------------------------------------------


def _get_json(url: str) -> dict[str, Any]:
    import requests

    try:
        response = requests.get(url, timeout=TIMEOUT_S)
    except requests.RequestException as err:
        raise DownloadError(_unreachable(url, err)) from None
    if response.status_code != 200:
        raise DownloadError(f"{url}: HTTP {response.status_code} from the OSF API")
    try:
        return response.json()
    except ValueError:
        raise DownloadError(f"{url}: the OSF API answered something that is not JSON") from None


def resolve_osf(project: str, path: str, api: str | None = None) -> tuple[str, str | None, int]:
    """(download URL, published SHA-256 or None, size) of ``path`` in an OSF project's
    osfstorage, walking its folders by name through the OSF API (with pagination)."""
    api = (api or os.environ.get(OSF_API_VAR) or OSF_API).rstrip("/")
    url: str | None = f"{api}/nodes/{project}/files/osfstorage/"
    parts = [p for p in path.split("/") if p]
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        found = None
        while url and found is None:
            page = _get_json(url)
            for item in page.get("data", []):
                attributes = item.get("attributes", {})
                if attributes.get("name") == part:
                    found = item
                    break
            url = (page.get("links") or {}).get("next")
        if found is None:
            raise DownloadError(
                f"OSF project {project}: {'/'.join(parts[: depth + 1])} not found "
                f"(looking for {path})"
            )
        if last:
            attributes = found["attributes"]
            link = (found.get("links") or {}).get("download")
            if not link:
                raise DownloadError(f"OSF project {project}: {path} has no download link")
            hashes = (attributes.get("extra") or {}).get("hashes") or {}
            return link, hashes.get("sha256"), int(attributes.get("size") or 0)
        related = found.get("relationships", {}).get("files", {}).get("links", {})
        url = related.get("related", {}).get("href")
        if not url:
            raise DownloadError(f"OSF project {project}: {part} is not a folder")
    raise DownloadError(f"OSF project {project}: empty path")  # pragma: no cover


# ------------------------------------------------------------------------------------------
# Resumable download (a pooch downloader)
# ------------------------------------------------------------------------------------------


def _unreachable(url: str, err: BaseException) -> str:
    host = urlparse(url).netloc or url
    reason = " ".join(str(err).split())[:160]
    return f"cannot reach {host} (offline, or the host is down?): {reason}"


class ResumableDownloader:
    """A pooch downloader that appends to ``<dest>/<name>.part`` with HTTP range requests
    and moves the whole file into pooch's temporary file (which pooch then hashes and
    renames to the final name)."""

    def __init__(
        self, part: Path, name: str, size: int | None = None, progress: bool = True
    ) -> None:
        self.part = Path(part)
        self.name = name
        self.size = size
        self.progress = progress

    def __call__(self, url: str, output_file: Any, pooch_obj: Any = None) -> None:
        import requests
        from tqdm.auto import tqdm

        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and offset > self.size:  # not a prefix of this file
            self.part.unlink()
            offset = 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
        except requests.RequestException as err:
            raise DownloadError(f"{self.name}: {_unreachable(url, err)}") from None
        with response:
            if offset and response.status_code == 416:  # nothing left: the part is whole
                response_length = 0
                total = offset
            else:
                if response.status_code not in (200, 206):
                    raise DownloadError(f"{self.name}: HTTP {response.status_code} from {url}")
                if response.status_code == 200 and offset:  # the server ignored the range
                    offset = 0
                response_length = int(response.headers.get("Content-Length") or 0)
                total = offset + response_length if response_length else self.size
            written = offset
            bar = tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=self.name,
                disable=not self.progress,
                file=sys.stderr,
                leave=False,
            )
            try:
                if response_length or response.status_code in (200, 206):
                    with open(self.part, "ab" if offset else "wb") as out:
                        for chunk in response.iter_content(CHUNK):
                            out.write(chunk)
                            written += len(chunk)
                            bar.update(len(chunk))
            except (requests.RequestException, OSError) as err:
                if not isinstance(err, requests.RequestException):  # writing: disk full, ...
                    from modelrecovery.outputs import reason_of

                    raise DownloadError(
                        f"cannot write {self.part}: {reason_of(err)} (after {written} bytes; "
                        "they are kept: free space and run the command again to resume)"
                    ) from None
                raise DownloadError(
                    f"{self.name}: download interrupted after {written} of "
                    f"{total or '?'} bytes ({' '.join(str(err).split())[:120]}); the bytes "
                    f"are kept in {self.part}: run the command again to resume"
                ) from None
            finally:
                bar.close()
        if total and written != total:
            raise DownloadError(
                f"{self.name}: download interrupted after {written} of {total} bytes; the "
                f"bytes are kept in {self.part}: run the command again to resume"
            )
        if self.size is not None and written != self.size:
            self.part.unlink(missing_ok=True)
            raise DownloadError(
                f"{self.name}: got {written} bytes, expected {self.size}; the file was "
                "deleted: run the command again (or check the source)"
            )
        os.replace(self.part, output_file)


# ------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------


def fetch_file(
    remote: RemoteFile,
    dest: Path,
    *,
    base_url: str | None = None,
    osf_api: str | None = None,
    progress: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    """Fetch one file into ``dest`` (see the module docstring); returns a summary row."""
    import pooch

    log = log or (lambda text: print(text, file=sys.stderr))
    final = dest / remote.name
    url, sha256, size = remote.url, remote.sha256, remote.size
    if base_url:
        url = f"{base_url.rstrip('/')}/{remote.name}"
    elif remote.osf is not None:
        if final.exists():  # whole by construction: verify against OSF only when asked
            return {"file": remote.name, "status": "present", "sha256": None}
        url, sha256, osf_size = resolve_osf(*remote.osf, api=osf_api)
        size = osf_size or None
        if sha256 is None:
            log(f"{remote.name}: OSF publishes no SHA-256 for it; accepted unchecked (size only)")
    assert url is not None
    known = f"sha256:{sha256}" if sha256 else None
    present = final.exists()
    if present and known and file_sha256(final) != sha256:
        final.unlink()  # a stale or damaged copy: fetch again
        log(f"{remote.name}: the copy in {dest} failed its checksum; downloading it again")
        present = False
    downloader = ResumableDownloader(
        dest / f"{remote.name}.part", remote.name, size=size, progress=progress
    )
    try:
        pooch.retrieve(
            url,
            known_hash=known,
            fname=remote.name,
            path=dest,
            downloader=downloader,
            progressbar=False,
        )
    except ValueError as err:
        if isinstance(err, DownloadError):
            raise
        text = " ".join(str(err).split())
        if "hash" in text.lower():
            raise DownloadError(
                f"{remote.name}: checksum mismatch (expected sha256 {sha256}); the download "
                f"was deleted, nothing was kept under {dest}: run again, and if it repeats "
                f"the source {url} has changed"
            ) from None
        raise DownloadError(f"{remote.name}: {text}") from None
    return {
        "file": remote.name,
        "status": "present" if present else "downloaded",
        "sha256": sha256,
    }


def fetch_things(
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    osf_api: str | None = None,
    include_large: bool = True,
    progress: bool = True,
    files: list[RemoteFile] | None = None,
) -> list[dict[str, Any]]:
    """Fetch the THINGS behavioural files into ``dest`` (default ``$MODELRECOVERY_THINGS_DIR``
    or ``data/things``); returns one summary row per file. Raises :class:`DownloadError`
    (one line) at the first file that cannot be fetched or verified; files already whole
    stay. ``files``: another list of files (tests)."""
    import pooch

    pooch.get_logger().setLevel("WARNING")
    from modelrecovery.outputs import CannotWrite, check_output_folder, writing

    dest = Path(dest or os.environ.get(DEST_VAR) or DEFAULT_DEST)
    try:  # a file, a read-only or full folder: one line before any download
        check_output_folder(dest)
    except CannotWrite as err:
        raise DownloadError(str(err)) from None
    with writing(dest):
        dest.mkdir(parents=True, exist_ok=True)
    base_url = base_url or os.environ.get(BASE_URL_VAR) or None
    return [
        fetch_file(f, dest, base_url=base_url, osf_api=osf_api, progress=progress)
        for f in (things_files(include_large) if files is None else files)
    ]


def cmd_data_things(args: argparse.Namespace) -> dict[str, Any]:
    """``modelrecovery data things``: fetch the THINGS behavioural files."""
    rows = fetch_things(
        args.dest,
        base_url=args.base_url,
        include_large=not args.skip_large,
        progress=not args.no_progress,
    )
    dest = Path(args.dest or os.environ.get(DEST_VAR) or DEFAULT_DEST)
    result: dict[str, Any] = {"dest": str(dest)}
    result.update({row["file"]: row["status"] for row in rows})
    return result
