"""Running a command: parse, check the tracking stores, call the subcommand's handler,
print its result, and turn every failure into one line and an exit code."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence

from modelrecovery import interrupts
from modelrecovery.cli.parser import PROG, build_parser, check_args
from modelrecovery.cli.signals import _end_open_runs, _interrupted_exit, _Signals


def format_value(value: object) -> str:
    """Numbers with 6 significant digits (4.5e-10 stays 4.5e-10), the rest as text."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    if not result:
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {format_value(value)}")


def _error_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) if str(err).strip() else type(err).__name__
    return text


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_FULL_DATABASE = "database or disk is full"


def _write_failure(err: BaseException) -> str | None:
    """``cannot write <path>: <reason>`` for a failure to write anywhere in ``err``'s chain
    (a full disk, a read-only file system, a full SQLite store), else None."""
    if isinstance(err, ValueError):  # already one line naming what was wrong
        return None
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            from modelrecovery.outputs import reason_of

            return f"cannot write {err.filename or 'an output file'}: {reason_of(err)}"
        if _FULL_DATABASE in str(err):
            uri = os.environ.get("MLFLOW_TRACKING_URI", "the tracking store")
            return f"cannot write {uri}: {_FULL_DATABASE}"
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


def _not_a_full_database(record: object) -> bool:
    """A logging filter: drop the record of a commit that failed on a full disk."""
    return _FULL_DATABASE not in record.getMessage()  # type: ignore[attr-defined]


def _quiet_third_party() -> None:
    """Keep the console to progress and results: no third-party deprecation warnings."""
    import logging
    import warnings

    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    # MLflow announces creating and migrating its database on every new store
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # ... and logs a failed commit (a full disk) with its traceback: the error line says it
    logging.getLogger("mlflow.store.db.utils").addFilter(_not_a_full_database)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelrecovery`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or an argument error (2, one line printed)
        return done.code if isinstance(done.code, int) else 2
    command = f"{PROG} {args.command}"
    problem = check_args(args)
    if problem:
        print(f"{command}: error: {problem}", file=sys.stderr)
        return 2
    _quiet_third_party()
    with _Signals(command):
        try:
            if any(args.stores):
                precheck = getattr(args, "precheck", None)
                if precheck is not None:  # the config and its files: before any store or run
                    precheck(args)
                from modelrecovery.store_checks import check_stores

                check_stores(mlflow=args.stores[0], optuna=args.stores[1])
            result = args.handler(args)
        except BaseException as err:  # noqa: BLE001 - every outcome becomes one line
            return _report(err, command, args)
    _print(result, args.json)
    return 0


def console() -> None:
    """The ``modelrecovery`` console script: :func:`main` and its exit code."""
    code = main()
    _interrupted_exit(code)
    raise SystemExit(code)


def _report(err: BaseException, command: str, args: argparse.Namespace) -> int:
    """One line on stderr for ``err`` and the exit code."""
    _end_open_runs()
    interrupted = interrupts.interrupted_in(err)
    if interrupted is not None:
        tracked = " (open MLflow runs marked FAILED)" if any(args.stores) else ""
        print(
            f"{command}: {interrupted}; stopped, nothing recorded as finished{tracked}",
            file=sys.stderr,
            flush=True,
        )
        return interrupted.exit_code
    if isinstance(err, SystemExit):
        raise err
    unwritable = _write_failure(err)
    if unwritable:
        print(f"{command}: error: {unwritable}", file=sys.stderr)
        return 2
    if isinstance(err, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        print(f"{command}: error: {_error_line(err)}", file=sys.stderr)
        return 2
    if type(err).__name__ == "MlflowException":
        print(f"{command}: error: MLflow: {_error_line(err)}", file=sys.stderr)
        # a run, experiment or model that is not there is bad input, not a failure
        missing = getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST",)
        return 2 if missing else 1
    if type(err).__name__ == "StackError":  # a stack service that did not start or stop
        print(f"{command}: error: {_error_line(err)}", file=sys.stderr)
        return 1
    if args.traceback:
        import traceback

        traceback.print_exception(err)
    print(
        f"{command}: unexpected error: {type(err).__name__}: {_error_line(err)}"
        + ("" if args.traceback else f" (rerun with `{PROG} --traceback ...` for details)"),
        file=sys.stderr,
    )
    return 1
