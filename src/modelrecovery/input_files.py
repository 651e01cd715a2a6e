"""Input files: one check that a path names a readable file (shared by the triplet and
feature loaders), and transparent reading of compressed text files.

Compression is recognised by a file's first bytes, not its name: gzip, bz2, xz and zip
(one member) are read through the standard library; zstd is recognised and refused with a
one-line error (it needs an optional package). Errors name the file and what was expected.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "COMPRESSIONS",
    "DECOMPRESSION_ERRORS",
    "READABLE_COMPRESSIONS",
    "check_compression",
    "check_file",
    "compression_of",
    "open_text",
    "read_failure",
    "zip_members",
]

COMPRESSIONS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZh"),  # followed by the block size, a digit 1-9
    ("xz", b"\xfd7zXZ\x00"),
    ("zip", b"PK\x03\x04"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)
"""Compressions recognised by their magic bytes."""

READABLE_COMPRESSIONS = ("gzip", "bz2", "xz", "zip")
"""Compressions :func:`open_text` reads (and pandas' ``compression=`` names for them)."""

DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # gzip.BadGzipFile, bz2's "Invalid data stream", I/O errors
    EOFError,  # a truncated stream
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
)
"""What reading a damaged compressed file raises."""


def check_file(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    error: type[Exception] = ValueError,
) -> Path:
    """``path`` as a Path if it names an existing, readable file.

    Raises
    ------
    FileNotFoundError
        ``<path>: no such <what>``.
    error (ValueError by default)
        ``<path>: is a folder, expected a <what>`` or ``<path>: not readable (permission
        denied)``.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: not readable (permission denied)")
    return path


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """The compression of a file from its first bytes (see :data:`COMPRESSIONS`), or None."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    for name, magic in COMPRESSIONS:
        if head.startswith(magic):
            if name == "bz2" and not head[3:4].isdigit():
                continue  # plain text that happens to start with "BZh"
            return name
    return None


def zip_members(path: str | os.PathLike[str]) -> list[str]:
    """Names of the files (not folders) inside a zip archive."""
    with zipfile.ZipFile(path) as zf:
        return [info.filename for info in zf.infolist() if not info.is_dir()]


def check_compression(
    path: str | os.PathLike[str],
    compression: str | None,
    what: str = "file",
    *,
    error: type[Exception] = ValueError,
) -> None:
    """A one-line error for a compression :func:`open_text` cannot read, or for a zip
    archive that does not hold exactly one file."""
    if compression is None or compression in ("gzip", "bz2", "xz"):
        return
    if compression == "zip":
        try:
            members = zip_members(path)
        except DECOMPRESSION_ERRORS as err:
            raise error(f"{path}: damaged zip archive ({err})") from None
        if len(members) != 1:
            shown = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "")
            raise error(
                f"{path}: zip archive holds {len(members)} files ({shown or 'none'}); "
                f"expected exactly one {what}"
            )
        return
    raise error(
        f"{path}: {compression}-compressed, which is not read here; decompress it first "
        f"(or recompress with gzip, bz2, xz or zip)"
    )


@contextlib.contextmanager
def open_text(
    path: str | os.PathLike[str],
    compression: str | None = None,
    *,
    errors: str = "strict",
) -> Iterator[IO[str]]:
    """Open a (possibly compressed) UTF-8 text file for reading, a BOM skipped, universal
    newlines. ``compression`` as from :func:`compression_of` (call
    :func:`check_compression` first for a clear error on what cannot be read)."""
    kwargs = {"encoding": "utf-8-sig", "errors": errors, "newline": None}
    with contextlib.ExitStack() as stack:
        if compression is None:
            fh: IO[str] = stack.enter_context(open(path, **kwargs))
        elif compression == "gzip":
            fh = stack.enter_context(gzip.open(path, "rt", **kwargs))
        elif compression == "bz2":
            fh = stack.enter_context(bz2.open(path, "rt", **kwargs))
        elif compression == "xz":
            fh = stack.enter_context(lzma.open(path, "rt", **kwargs))
        elif compression == "zip":
            zf = stack.enter_context(zipfile.ZipFile(path))
            (member,) = [i for i in zf.infolist() if not i.is_dir()]
            raw = stack.enter_context(zf.open(member))
            fh = stack.enter_context(io.TextIOWrapper(raw, **kwargs))
        else:
            raise ValueError(f"{path}: cannot read {compression}-compressed files")
        yield fh


def read_failure(
    path: str | os.PathLike[str],
    compression: str | None,
    err: BaseException,
    *,
    error: type[Exception] = ValueError,
) -> Exception:
    """The one-line error for a file whose reading failed with ``err`` (to raise)."""
    if isinstance(err, PermissionError):
        return error(f"{path}: not readable (permission denied)")
    how = f"{compression}-compressed file" if compression else "file"
    detail = str(err) or type(err).__name__
    return error(f"{path}: cannot read the {how} ({detail})")


def sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
