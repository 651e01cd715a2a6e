"""The ``modelrecovery`` command line.

Every subcommand's arguments are declared here, and its work is a function of a stage
module (``modelrecovery/stages/``) named by ``handler``, imported only when that command
runs: ``--help`` and argument errors never import torch, MLflow or Lightning.

Exit codes: 0 done; 2 bad input (one line naming the file, row, option or setting and what
was expected); 1 an unexpected error (one line; ``--traceback`` shows it whole); 130 / 143
interrupted by SIGINT / SIGTERM (one line; the open MLflow runs end FAILED, nothing is
recorded as finished). Commands that track check their stores first (see
:mod:`modelrecovery.backends`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from modelrecovery import interrupts
from modelrecovery.devices import DEVICE_HELP, check_device

# The same names as modelrecovery.probe.families (tested), here to keep --help light.
FAMILIES = ("zero_shot", "diagonal", "rectangular", "full")
REGULARISERS = ("scalar_shrinkage", "l2", "l1")
STOPPING_RULES = ("converged", "study")
REDUCTIONS = ("auto", "always", "path", "never")
TRIPLET_FORMATS = ("auto", "things2023", "things2020", "csv", "npz")

PROG = "modelrecovery"
STOP_SECONDS = 30.0  # after SIGTERM / SIGINT, the longest wait before a forced exit


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``modelrecovery fit: error: argument --k: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- argument types: each error names what was expected (argparse adds the option) ---


def integer(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {low}, got {text!r}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def number(low: float | None = None, *, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number (``> low`` when strict, else ``>= low``)."""
    bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number{bound}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number{bound}, got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"expected a number{bound}, got {value:g}")
        return value

    return parse


def device(text: str) -> str:
    """An argparse type: cpu, cuda, cuda:<n> or auto (availability is checked later)."""
    try:
        return check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# --- shared argument groups ---


def _add_triplet_args(parser: argparse.ArgumentParser, flag: str | None = None) -> None:
    if flag is None:
        parser.add_argument("triplets", help="triplet file")
    else:
        parser.add_argument(flag, dest="triplets", required=True, help="triplet file")
    parser.add_argument(
        "--format",
        default="auto",
        choices=TRIPLET_FORMATS,
        help="triplet file format (default: guess from the file)",
    )
    parser.add_argument(
        "--sortindex",
        default=None,
        help="THINGS 2020 order -> THINGS order permutation file (for --format things2020)",
    )
    parser.add_argument(
        "--n-concepts",
        type=integer(3),
        default=None,
        help="number of concepts (default: from the format)",
    )


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--features``, ``--triplets`` and their format options."""
    parser.add_argument("--features", required=True, help="feature file (.npy, .pt, text)")
    parser.add_argument("--triplets", required=True, help="human triplet file")
    parser.add_argument("--test-triplets", default=None, help="test triplets (non-THINGS files)")
    parser.add_argument(
        "--format", default="auto", choices=TRIPLET_FORMATS, help="triplet file format"
    )
    parser.add_argument("--sortindex", default=None, help="THINGS 2020 sortindex file")
    parser.add_argument(
        "--n-concepts", type=integer(3), default=None, help="number of concepts (THINGS: 1854)"
    )
    parser.add_argument("--model", default=None, help="model name (default: feature file stem)")
    parser.add_argument("--experiment", default="default", help="MLflow experiment (study)")


def _add_probe_args(parser: argparse.ArgumentParser) -> None:
    """Flexibility level, penalty, dtype, device and stopping options."""
    parser.add_argument("--family", default="full", choices=FAMILIES)
    parser.add_argument(
        "--k", type=integer(1), default=None, help="rank of rectangular W (needed by it)"
    )
    parser.add_argument("--regulariser", default="scalar_shrinkage", choices=REGULARISERS)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", type=device, default="cpu", help=DEVICE_HELP)
    parser.add_argument(
        "--stopping",
        default="converged",
        choices=STOPPING_RULES,
        help="L-BFGS stopping rule: converged (the optimum) or study (the paper's early stop)",
    )
    parser.add_argument(
        "--reduction",
        default="auto",
        choices=REDUCTIONS,
        help="full W when p exceeds the training concepts: auto (converged rule: the "
        "reduction at the optimum; study rule: the study's p x p path in the row space), "
        "always (the reduction at the optimum, under the study's rule a different path), "
        "path, or never (p x p)",
    )
    parser.add_argument(
        "--reshuffle",
        action="store_true",
        help="sum the loss in the study's per-step reshuffled order (torch.manual_seed(step))",
    )


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="conf/<name>.yaml or a path")
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="overrides key.sub=value")


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    handler: str,
    help: str,
    *,
    mlflow: bool = False,
    optuna: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand whose work is ``handler`` (``module:function``), run after its
    tracking stores (MLflow, Optuna) answer."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler, stores=(mlflow, optuna))
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The full command line (light: imports no stage module)."""
    parser = ArgumentParser(
        prog=PROG,
        description="Model recovery for representational alignment (odd-one-out probes).",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stages = "modelrecovery.stages"

    p = _command(
        sub,
        "noise-ceiling",
        "modelrecovery.cli:cmd_noise_ceiling",
        "Leave-one-response-out majority agreement over repeated triplets.",
    )
    _add_triplet_args(p)

    p = _command(
        sub,
        "evaluate",
        "modelrecovery.cli:cmd_evaluate",
        "Zero-shot accuracy and NLL of a feature file on a triplet file.",
    )
    p.add_argument("--features", required=True, help="feature file (.npy, .pt, text)")
    _add_triplet_args(p, flag="--triplets")

    data = sub.add_parser(
        "data",
        help="Fetch public data sets (THINGS behavioural files).",
        description="Fetch public data sets (THINGS behavioural files).",
    )
    data_sub = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    p = _command(
        data_sub,
        "things",
        "modelrecovery.data.fetch:cmd_data_things",
        "Fetch the THINGS behavioural files (the 2023 triplets with the noise-ceiling column, "
        "concept ids, SPoSE embeddings, the 2020 repeated set, sortindex, image names): "
        "checksums, resume, progress bar.",
    )
    p.add_argument(
        "--dest",
        default=None,
        help="folder for the files (default: $MODELRECOVERY_THINGS_DIR or data/things)",
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="a mirror holding the files by name (default: $MODELRECOVERY_THINGS_URL, else "
        "the published sources: GitHub mirrors and OSF f5rn6)",
    )
    p.add_argument(
        "--skip-large",
        action="store_true",
        help="only the small files (not the 4.7M-triplet file)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "world",
        f"{stages}.world:cmd_world",
        "Build the embedded world (procedural images, human embedding and triplets).",
    )
    p.add_argument(
        "--config", default=None, help="world config YAML (default: conf/world/default.yaml)"
    )
    p.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config fields, e.g. --set n_concepts=120 seed=1",
    )
    p.add_argument(
        "--root", default=None, help="parent folder of worlds (default: data/worlds, git-ignored)"
    )
    p.add_argument("--recompute", action="store_true", help="rebuild even if the world exists")

    p = _command(
        sub,
        "extract",
        f"{stages}.extract:cmd_extract",
        "Extract features of backbones (or the default model set) from images, cached.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="backbones: timm:<model>, open_clip:<arch>[:<tag>], efficientnet_lite0_imagenet, "
        "resized:<px>:<backbone>",
    )
    which.add_argument(
        "--default-set",
        action="store_true",
        help="the default model set (10 backbones; on a world folder mixed with their human "
        "read-outs, on an image table their plain features)",
    )
    which.add_argument(
        "--config",
        default=None,
        help="a files study (e.g. things_paper): every model with a backbone, pretrained, "
        "copied to data.features_dir/<file>; the others are listed as slots to fill",
    )
    p.add_argument(
        "--images",
        required=True,
        help="image table (concept,image CSV or THINGS image_name list), a world folder, or "
        "a THINGS image folder (<folder>/<concept>/<image>; all 1854 concepts, THINGS order)",
    )
    p.add_argument("--out", required=True, help="feature cache folder")
    p.add_argument(
        "--things-dir",
        default=None,
        help="THINGS files for a THINGS image folder: unique_id.txt, sortindex.txt, "
        "things1854_image_names.csv (default: $MODELRECOVERY_THINGS_DIR or data/things)",
    )
    p.add_argument(
        "--exemplars",
        default="reference",
        choices=["reference", "all"],
        help="THINGS image folder: the odd-one-out reference image per concept, or all of "
        "a concept's images averaged",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="trained weights for --models (default: seeded random weights)",
    )
    p.add_argument(
        "--features-dir",
        default=None,
        help="with --config: where the feature files go (default: the study's data.features_dir)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="with --config: seeded random weights instead of pretrained ones (tests)",
    )
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--seed", type=integer(0), default=0, help="seed of random weights")
    p.add_argument("--device", type=device, default="cpu", help=DEVICE_HELP)
    p.add_argument("--recompute", action="store_true", help="ignore cached features")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "fit",
        f"{stages}.fit:cmd_fit",
        "Fit one probe on human triplets and log it to MLflow.",
        mlflow=True,
    )
    _add_data_args(p)
    _add_probe_args(p)
    p.add_argument("--lam", type=number(0), required=True, help="regularisation strength λ")

    p = _command(
        sub,
        "tune",
        f"{stages}.tune:cmd_tune",
        "Choose λ by cross-validation (Optuna), refit with it, log everything to MLflow.",
        mlflow=True,
        optuna=True,
    )
    _add_data_args(p)
    _add_probe_args(p)
    p.add_argument("--method", default="grid", choices=["grid", "tpe"])
    p.add_argument(
        "--lams",
        type=number(0, strict=True),
        nargs="*",
        default=None,
        help="λ grid (default study's)",
    )
    p.add_argument("--folds", type=integer(2), default=5)
    p.add_argument("--fold-kind", default="triplets", choices=["triplets", "concepts"])
    p.add_argument("--trials", type=integer(1), default=20, help="TPE trials")
    p.add_argument("--seed", type=integer(0), default=0)

    p = _command(
        sub,
        "dashboard",
        f"{stages}.tune:cmd_dashboard",
        "Start optuna-dashboard on the Optuna storage (127.0.0.1 by default); blocks.",
        optuna=True,
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: tracking/optuna.db)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=integer(1), default=8080)

    p = _command(
        sub,
        "stack",
        "modelrecovery.cli:cmd_stack",
        "Start, stop or show the team tracking stack (PostgreSQL, S3, MLflow server, "
        "optuna-dashboard) on this machine.",
    )
    p.add_argument("action", choices=["up", "down", "status", "env"])

    p = _command(
        sub,
        "calibrate",
        f"{stages}.calibrate:cmd_calibrate",
        "Calibrate T of a logged probe (an MLflow run with a probe model) on the repeated "
        "test triplets.",
        mlflow=True,
    )
    p.add_argument("--run-id", required=True, help="MLflow run of a fit (with a probe model)")
    p.add_argument("--triplets", required=True, help="human triplets with the repeated set")
    p.add_argument("--format", default="auto", choices=TRIPLET_FORMATS)
    p.add_argument("--sortindex", default=None)
    p.add_argument(
        "--ceiling",
        type=number(1 / 3, strict=True),
        default=None,
        help="default: from repeated triplets",
    )
    p.add_argument("--experiment", default="default")
    p.add_argument("--device", type=device, default="cpu", help=DEVICE_HELP)

    p = _command(
        sub,
        "generators",
        f"{stages}.generators:cmd_generators",
        "Build (or reuse) the study's generators: λ, W and calibrated T per model and level.",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--no-progress", action="store_true")

    p = _command(
        sub,
        "recover",
        f"{stages}.recover:cmd_recover",
        "Run the whole model-recovery study of a config (generators, grid, report).",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--executor", default=None, choices=["inprocess", "dask"])
    p.add_argument("--no-progress", action="store_true")

    p = _command(
        sub,
        "analyze",
        f"{stages}.analyze:cmd_analyze",
        "Pool recover runs of a study and write the report (figures, tables, HTML).",
        mlflow=True,
    )
    p.add_argument("--experiment", default="default-world", help="the study's experiment")
    p.add_argument("--run-ids", nargs="*", default=None, help="recover runs (default: all)")
    p.add_argument("--filter", default="", help="extra MLflow filter, e.g. tags.x = 'y'")
    p.add_argument("--out", default=None, help="report folder (default tracking/reports/<run>)")

    p = _command(
        sub,
        "simulate",
        f"{stages}.simulate:cmd_simulate",
        "Simulate training and test triplets from one generator of a study.",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--generator", required=True)
    p.add_argument("--level", default=None, help="level label (default: the last of the grid)")
    p.add_argument("--n-train", type=integer(1), required=True, help="training triplets")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--out", required=True)
    return parser


def check_args(args: argparse.Namespace) -> str | None:
    """Checks that involve several options; the problem in one line, or None."""
    family = getattr(args, "family", None)
    if family == "rectangular" and args.k is None:
        return "argument --k: family rectangular needs --k (the rank of W, an integer >= 1)"
    if family is not None and family != "rectangular" and args.k is not None:
        return f"argument --k: only family rectangular takes --k, got --family {family}"
    if args.command == "fit" and family != "zero_shot" and args.lam <= 0:
        return f"argument --lam: expected a number > 0 for family {family}, got {args.lam:g}"
    return None


# --- commands without a stage module ---


def _load(args: argparse.Namespace):
    from modelrecovery.data.loaders import load_triplets

    return load_triplets(
        args.triplets, format=args.format, sortindex=args.sortindex, n_concepts=args.n_concepts
    )


def cmd_noise_ceiling(args: argparse.Namespace) -> dict:
    """Leave-one-response-out majority agreement over repeated triplets."""
    from modelrecovery.data.noise_ceiling import noise_ceiling, noise_ceiling_details

    triplets = _load(args)
    try:
        ceiling = noise_ceiling(triplets)
    except ValueError as err:
        raise ValueError(f"{args.triplets}: {err}") from err
    details = noise_ceiling_details(triplets)
    repeated = details[details["n_responses"] >= 2]
    return {
        "noise_ceiling": ceiling,
        "n_responses": len(triplets),
        "n_repeated_triplets": len(repeated),
        "responses_per_repeated_triplet": float(repeated["n_responses"].mean()),
    }


def cmd_evaluate(args: argparse.Namespace) -> dict:
    """Zero-shot accuracy and NLL of a feature file on a triplet file."""
    from modelrecovery.features.io import load_features
    from modelrecovery.probe.zero_shot import zero_shot_scores

    triplets = _load(args)
    features = load_features(args.features)
    if args.n_concepts is None and features.shape[0] > triplets.n_concepts:
        raise ValueError(
            f"{args.triplets}: the triplets' largest concept id is {int(triplets.ids.max())} "
            f"(0-based), so the number of concepts was taken as {triplets.n_concepts}, but the "
            f"features {args.features} have {features.shape[0]} rows (one per concept); give "
            f"--n-concepts {features.shape[0]} if the triplets index those concepts"
        )
    features = load_features(args.features, n_concepts=triplets.n_concepts)
    scores = zero_shot_scores(features, triplets.ids, triplets.odd, name=str(args.features))
    if "warning" in scores:
        print(scores["warning"], file=sys.stderr)
    return {
        "features": str(args.features),
        "triplets": str(args.triplets),
        "n_triplets": len(triplets),
        "feature_dim": int(features.shape[1]),
        **scores,
    }


# --- running a command ---


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


def _resolve(handler: str) -> Callable[[argparse.Namespace], dict]:
    module, _, name = handler.partition(":")
    return getattr(importlib.import_module(module), name)


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
            threading.Timer(0.05, os.kill, (os.getpid(), self.REDELIVER)).start()
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
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if self.saved_hook is not None:
            sys.unraisablehook = self.saved_hook
        interrupts.clear()


def _error_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) if str(err).strip() else type(err).__name__
    return text


def _quiet_third_party() -> None:
    """Keep the console to progress and results: no third-party deprecation warnings."""
    import logging
    import warnings

    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    # MLflow announces creating and migrating its database on every new store
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
                from modelrecovery.backends import check_stores

                check_stores(mlflow=args.stores[0], optuna=args.stores[1])
            result = _resolve(args.handler)(args)
        except BaseException as err:  # noqa: BLE001 - every outcome becomes one line
            return _report(err, command, args)
    _print(result, args.json)
    return 0


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


def console() -> None:
    """The ``modelrecovery`` console script: :func:`main` and its exit code."""
    code = main()
    _interrupted_exit(code)
    raise SystemExit(code)


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
    if isinstance(err, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        print(f"{command}: error: {_error_line(err)}", file=sys.stderr)
        return 2
    if type(err).__name__ == "MlflowException":
        print(f"{command}: error: MLflow: {_error_line(err)}", file=sys.stderr)
        # a run, experiment or model that is not there is bad input, not a failure
        missing = getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST",)
        return 2 if missing else 1
    if args.traceback:
        import traceback

        traceback.print_exception(err)
    print(
        f"{command}: unexpected error: {type(err).__name__}: {_error_line(err)}"
        + ("" if args.traceback else f" (rerun with `{PROG} --traceback ...` for details)"),
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    console()
