"""Interrupts (SIGTERM, SIGINT) as an exception every layer can see.

The command line turns the first SIGTERM or SIGINT into :class:`Interrupted` raised in the
main thread, and records the request here; long loops on other threads (L-BFGS iterations
of fits running side by side) call :func:`check` and stop at their next iteration, so a
command ends within a second or two and every MLflow run it had open ends FAILED.

:class:`Interrupted` derives from ``BaseException`` (like ``KeyboardInterrupt``) so that
``except Exception`` blocks do not swallow it, and not from ``KeyboardInterrupt``, which
Lightning turns into ``sys.exit(1)``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

_requested = threading.Event()
_signum: list[int] = []
_deferring = [0]  # depth of deferred() blocks on the main thread


class Interrupted(BaseException):
    """Raised when the process received SIGTERM or SIGINT."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal_name(self.signum)}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, ``SIGINT`` for 2."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def request(signum: int) -> None:
    """Record that the process was asked to stop (by signal ``signum``)."""
    if not _signum:
        _signum.append(int(signum))
    _requested.set()


def requested() -> bool:
    """Whether a stop was requested."""
    return _requested.is_set()


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested (called by long loops)."""
    if _requested.is_set():
        raise Interrupted(_signum[0] if _signum else signal.SIGTERM)


def clear() -> None:
    """Forget a request (the command line does this when a command starts and ends)."""
    _requested.clear()
    _signum.clear()


def interrupted_in(err: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` (or ``KeyboardInterrupt``, as SIGINT) behind ``err``: itself,
    or one in its chain of causes and contexts (numba wraps an exception raised by a signal
    handler during a compiled call in a ``SystemError``); or, when a stop was requested,
    the requested one, whatever ended the command."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, Interrupted):
            return node
        if isinstance(node, KeyboardInterrupt):
            return Interrupted(signal.SIGINT)
        node = node.__cause__ or node.__context__
    if _requested.is_set():
        # a stop was asked for and the command ended by another exception on its way out:
        # Lightning's own SIGTERM handler, which runs beside ours during a fit, ends the fit
        # with its SIGTERMException (a SystemExit) when our interrupt was deferred
        return Interrupted(_signum[0] if _signum else signal.SIGTERM)
    return None


def deferring() -> bool:
    """Whether the main thread is inside a :func:`deferred` block."""
    return _deferring[0] > 0


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block that a signal does not cut short (writing a finished job and logging its
    run): the command line only records the request, raised when the block ends."""
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        _deferring[0] += 1
    try:
        yield
    finally:
        if on_main:
            _deferring[0] -= 1
    check()


class _DropInterrupted(logging.Filter):
    """Drops log records about an exception caused by an interrupt (Optuna logs a failed
    trial with its traceback before re-raising): the command's one line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or interrupted_in(exc) is None


_DROP = _DropInterrupted()


def mute_logged_interrupts() -> None:
    """Add the filter to every handler there is now (libraries log through their own)."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if _DROP not in handler.filters:
                handler.addFilter(_DROP)
