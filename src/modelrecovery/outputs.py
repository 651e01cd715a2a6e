"""Output files: every file the project writes for a user goes through :func:`atomic_path`
(a temporary file in the same folder, then ``os.replace``), so that a full disk or a
killed process leaves the old file or none, never a half-written one; output folders are
checked with :func:`check_output_folder` before any work or run is started.

A write that fails raises :class:`CannotWrite` (a ValueError: the command line's exit 2),
one line: ``cannot write <path>: <reason>``."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "CannotWrite",
    "atomic_path",
    "check_output_folder",
    "cannot_write",
    "reason_of",
    "write_bytes",
    "write_text",
    "write_with",
    "writing",
]

_REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent on the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "exists and is a file, expected a folder",
    errno.EFBIG: "file too large for the file system",
}


class CannotWrite(ValueError):
    """An output could not be written: ``cannot write <path>: <reason>``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")


def reason_of(err: OSError) -> str:
    """A short reason for a failed write (the errno's meaning, plainly)."""
    if err.errno in _REASONS:
        return _REASONS[err.errno]
    return (err.strerror or str(err) or type(err).__name__).lower()


def cannot_write(path: str | os.PathLike[str], err: OSError) -> CannotWrite:
    """The :class:`CannotWrite` for ``err`` raised while writing ``path`` (to raise)."""
    return CannotWrite(path, reason_of(err))


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised in the block into ``cannot write <path>: <reason>``."""
    try:
        yield
    except CannotWrite:
        raise
    except OSError as err:
        raise cannot_write(path, err) from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that read the suffix
    behave alike) to write to; when the block ends without error it replaces ``path``
    (``os.replace``), otherwise it is removed. The folder is created if missing. Any
    OSError becomes :class:`CannotWrite` naming ``path``."""
    path = Path(path)
    tmp: Path | None = None
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
            )
            os.close(fd)
            tmp = Path(name)
            yield tmp
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    return write_bytes(path, text.encode(encoding))


def write_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary file and put it at ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it is a folder that can be written, or can be created (its
    nearest existing parent is a writable folder); nothing is created. Raises
    :class:`CannotWrite` for an existing file, a parent that is a file, or a folder that
    cannot be written to (read-only, no permission, disk full)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CannotWrite(path, "an existing file, expected a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise CannotWrite(path, f"{existing} is a file, not a folder")
    try:  # the only sure test (access() says yes to root on a read-only mount)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise cannot_write(path, err) from None
    return path
