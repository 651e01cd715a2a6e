"""Preloaded into each worker process of the local Dask cluster (``recover`` started it in
its own process): a worker whose parent is gone exits at once and says nothing.

When the main process is killed (SIGKILL, the OOM killer) its workers lose the scheduler
that ran inside it. Dask's own parent monitor exits them too, but only once it gets the
GIL, and by then a worker may have logged heartbeat / connection tracebacks to the stderr
it inherited. Here, from the moment the parent is gone (``os.getppid()`` changes: the
orphan was re-parented), every log record of the worker is dropped, and a watchdog
thread (a look every 0.2 s) points stdout / stderr at ``/dev/null`` and ends the process.
The jobs' kernels release the GIL, so neither waits on a running fit. (Linux's
``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that started the process
ends, and which thread of Dask's that is, and for how long it lives, is Dask's detail.)

Only for the local cluster: workers of a remote scheduler (``executor.address``) are
started by someone else and are left alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time

WATCH_SECONDS = 0.2  # how often the watchdog looks at the parent


GRACE_SECONDS = 0.3  # a dying parent closes its sockets a moment before it is gone


class _ParentGone(logging.Filter):
    """Drops every record once the process's parent has changed. A record with a
    traceback (a connection the parent's death broke, seen before the kernel re-parented
    this process) waits up to ``GRACE_SECONDS`` for that to show."""

    def __init__(self, parent: int) -> None:
        super().__init__()
        self.parent = parent

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            deadline = time.monotonic() + GRACE_SECONDS
            while os.getppid() == self.parent and time.monotonic() < deadline:
                time.sleep(0.01)
        return os.getppid() == self.parent


def _silence() -> None:
    logging.disable(logging.CRITICAL)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
    except OSError:
        pass


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    _silence()
    os._exit(0)


def guard(parent: int | None = None) -> None:
    """Make this worker process quiet and gone once ``parent`` (its parent now) is."""
    parent = os.getppid() if parent is None else parent
    quiet = _ParentGone(parent)
    handlers = [logging.lastResort] if logging.lastResort is not None else []
    for name in (None, "distributed", "tornado", "asyncio"):
        handlers.extend(logging.getLogger(name).handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    threading.Thread(target=_watch, args=(parent,), name="parent watchdog", daemon=True).start()


def dask_setup(worker) -> None:  # the preload hook Dask calls in each worker process
    guard()
