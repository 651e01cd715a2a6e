"""SIGTERM and SIGINT while a command runs: the interrupt raised in the main thread, a
watchdog, the open MLflow runs ended FAILED, and a fast exit after an interrupt."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from modelrecovery import interrupts

STOP_SECONDS = 30.0  # after SIGTERM / SIGINT, the longest wait before a forced exit


class _Signals:
    """SIGTERM and SIGINT raise :class:`~modelrecovery.interrupts.Interrupted` in the main
    thread (and ask other threads to stop); a second signal exits at once. Installed only
    on the main thread, and restored afterwards (tests call :func:`main` in-process).

    A handler can fire inside a garbage-collection callback, where Python only prints the
    exception ("Exception ignored in ...") and goes on; the unraisable hook then stays
    quiet and delivers the interrupt again a moment later (SIGUSR1 to this process)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REDELIVER = signal.SIGUSR1

    def __init__(self, command: str) -> None:
        self.command = command
        self.saved: dict[int, object] = {}
        self.saved_hook = None
        self.timers: list[threading.Timer] = []

    def _handle(self, signum: int, frame: object) -> None:
        if interrupts.requested():  # a second signal while cleaning up: stop now
            print(
                f"{self.command}: interrupted again by {interrupts.signal_name(signum)}; "
                "stopped without cleaning up",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        interrupts.request(signum)
        interrupts.mute_logged_interrupts()
        threading.Thread(target=self._watchdog, args=(signum,), daemon=True).start()
        if interrupts.deferring():  # raised when the block ends
            return
        raise interrupts.Interrupted(signum)

    def _watchdog(self, signum: int) -> None:
        """The last resort: exit if the command has not stopped ``STOP_SECONDS`` after the
        signal (some library swallowed the interrupt and waits on something)."""
        time.sleep(STOP_SECONDS)
        print(
            f"{self.command}: {interrupts.signal_name(signum)} not handled within "
            f"{STOP_SECONDS:g} s; exiting without cleaning up (runs may stay RUNNING)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    def _redelivered(self, signum: int, frame: object) -> None:
        if interrupts.requested():
            interrupts.check()

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, interrupts.Interrupted):
            timer = threading.Timer(0.05, os.kill, (os.getpid(), self.REDELIVER))
            self.timers.append(timer)
            timer.start()
            return
        self.saved_hook(unraisable)

    def __enter__(self) -> _Signals:
        interrupts.clear()
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.saved[signum] = signal.signal(signum, self._handle)
            self.saved[self.REDELIVER] = signal.signal(self.REDELIVER, self._redelivered)
            self.saved_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        # a redelivery still pending must not meet SIGUSR1's default action (which ends the
        # process): cancel it, and ignore SIGUSR1 where nobody handled it before
        for timer in self.timers:
            timer.cancel()
        if self.saved.get(self.REDELIVER) == signal.SIG_DFL:
            self.saved[self.REDELIVER] = signal.SIG_IGN
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if self.saved_hook is not None:
            sys.unraisablehook = self.saved_hook
        interrupts.clear()


def _interrupted_exit(code: int) -> None:
    """After an interrupt, the console script leaves at once: the runs are ended and the
    line is printed, and the interpreter's own teardown (thread pools of torch, numba and
    Dask) took 3-4 s more when measured."""
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        if "mlflow" in sys.modules:
            try:
                sys.modules["mlflow"].flush_async_logging()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _end_open_runs() -> None:
    """End every MLflow run still active in this process as FAILED (a run whose
    ``start_run`` was cut short by a signal is not ended by its ``with`` block)."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    try:
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
