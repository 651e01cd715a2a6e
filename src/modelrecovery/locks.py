"""Locks between processes that share a tracking home or a results store (two people
starting the same study at once): an exclusive lock on a file (``flock``: released by the
operating system when its holder dies, so a crash never leaves a lock behind) and whether
the process that wrote a claim still runs.

``flock`` locks work between processes of one machine and on local disks; on a network
file system they are only as good as its locking (NFS v4 maps them to its own locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from modelrecovery import interrupts

POLL_SECONDS = 0.1


def hostname() -> str:
    """This machine's name (what a claim records beside its process id)."""
    return socket.gethostname()


@contextlib.contextmanager
def file_lock(path: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created, with its folder, when missing) for the
    block; yields True. Waiting polls (a SIGTERM / SIGINT ends the wait with
    :class:`~modelrecovery.interrupts.Interrupted`); ``wait=False`` yields False at once
    when another process holds the lock (the block then runs without it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                interrupts.check()
                time.sleep(POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_alive(pid: int, host: str) -> bool | None:
    """Whether process ``pid`` of machine ``host`` runs: True or False on this machine,
    None (unknown) for a process of another machine."""
    if host != hostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True
