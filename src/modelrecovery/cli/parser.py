"""The ``modelrecovery`` argument parser: every subcommand's options, their types and the
checks that involve several options.

Choices and defaults come from the study's vocabulary (:mod:`modelrecovery.study.spec`,
which imports no torch); each subcommand's ``handler`` is its function in
:mod:`modelrecovery.cli.commands`. Building the parser imports no stage module."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from modelrecovery.cli import commands
from modelrecovery.devices import DEVICE_HELP, check_device
from modelrecovery.study.spec import (
    CALIBRATIONS,
    DTYPES,
    EXECUTORS,
    FAMILIES,
    FOLD_KINDS,
    REDUCTIONS,
    REGULARISERS,
    STOPPING_RULES,
    TRIPLET_FORMATS,
    TRIPLET_SELECTIONS,
    TUNE_METHODS,
    DataSpec,
    ExecutorSpec,
    ProbeSpec,
    TuneSpec,
    split_description,
)

PROG = "modelrecovery"


def _default(model, name: str):
    """The default of a field of a specification section (one place for each default)."""
    return model.model_fields[name].default


def _meaning(model, name: str) -> str:
    """What a field of a specification section means (its description's parenthesised
    part): the help of an option that sets the same thing, written once."""
    return split_description(model.model_fields[name].description)[1]


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

AUTO_FORMAT = "auto"  # guess the triplet format from the file (one of TRIPLET_FORMATS)


def _add_triplet_args(parser: argparse.ArgumentParser, flag: str | None = None) -> None:
    if flag is None:
        parser.add_argument("triplets", help="triplet file")
    else:
        parser.add_argument(flag, dest="triplets", required=True, help="triplet file")
    parser.add_argument(
        "--format",
        default=AUTO_FORMAT,
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
        "--format", default=AUTO_FORMAT, choices=TRIPLET_FORMATS, help="triplet file format"
    )
    parser.add_argument("--sortindex", default=None, help="THINGS 2020 sortindex file")
    parser.add_argument(
        "--n-concepts", type=integer(3), default=None, help="number of concepts (THINGS: 1854)"
    )
    parser.add_argument("--model", default=None, help="model name (default: feature file stem)")
    parser.add_argument("--experiment", default="default", help="MLflow experiment (study)")


FULL = "full"  # the default flexibility level of fit and tune (one of FAMILIES)


def _add_probe_args(parser: argparse.ArgumentParser) -> None:
    """Flexibility level, penalty, dtype, device and stopping options (defaults: the
    study's probe section, :class:`~modelrecovery.study.spec.ProbeSpec`)."""
    parser.add_argument(
        "--family",
        default=FULL,
        choices=FAMILIES,
        help="flexibility level: the form of W (zero_shot: a multiple of the identity; "
        "diagonal; rectangular: p x k, k = --k; full: p x p)",
    )
    parser.add_argument(
        "--k", type=integer(1), default=None, help="rank of rectangular W (needed by it)"
    )
    parser.add_argument(
        "--regulariser",
        default=_default(ProbeSpec, "regulariser"),
        choices=REGULARISERS,
        help="the penalty R(W) weighted by λ (scalar_shrinkage: toward a scaled identity)",
    )
    parser.add_argument(
        "--dtype",
        default=_default(ProbeSpec, "dtype"),
        choices=DTYPES,
        help="floating-point precision of the fit",
    )
    parser.add_argument(
        "--device", type=device, default=_default(ProbeSpec, "device"), help=DEVICE_HELP
    )
    parser.add_argument(
        "--stopping",
        default=_default(ProbeSpec, "stopping"),
        choices=STOPPING_RULES,
        help=_meaning(ProbeSpec, "stopping"),
    )
    parser.add_argument(
        "--reduction",
        default=_default(ProbeSpec, "reduction"),
        choices=REDUCTIONS,
        help=_meaning(ProbeSpec, "reduction"),
    )
    parser.add_argument(
        "--reshuffle",
        action="store_true",
        help="sum the loss in the study's per-step reshuffled order (torch.manual_seed(step))",
    )


CONFIG_HELP = (
    "a packaged config's name (default, things_paper, ...: `modelrecovery config list`) or "
    "a config file's path; relative paths inside a file are relative to its folder, inside "
    "a packaged config to the current folder"
)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help=CONFIG_HELP)
    parser.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config keys: key.sub=value, the value read as YAML",
    )
    parser.set_defaults(precheck=commands.check_config)


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], dict],
    help: str,
    *,
    mlflow: bool = False,
    optuna: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand whose work is ``handler``, run after its tracking stores (MLflow,
    Optuna) answer."""
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

    p = _command(
        sub,
        "noise-ceiling",
        commands.cmd_noise_ceiling,
        "Leave-one-response-out majority agreement over repeated triplets.",
    )
    _add_triplet_args(p)

    p = _command(
        sub,
        "evaluate",
        commands.cmd_evaluate,
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
        commands.run_data_things,
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

    config = sub.add_parser(
        "config",
        help="List the packaged configs, or print one (to copy it: "
        "`modelrecovery config show default > my.yaml`).",
        description="List the packaged configs, or print one (to copy it: "
        "`modelrecovery config show default > my.yaml`).",
    )
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    _command(config_sub, "list", commands.cmd_config, "The packaged configs' names.")
    p = _command(config_sub, "show", commands.cmd_config, "Print a packaged config's YAML.")
    p.add_argument("name", help="a packaged config: default, things_paper, world/default, ...")

    p = _command(
        sub,
        "world",
        commands.run_world,
        "Build the embedded world (procedural images, human embedding and triplets).",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a packaged world config's name or a YAML file's path (default: the packaged "
        "conf/world/default.yaml; `modelrecovery config show world/default` prints it)",
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
        commands.run_extract,
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
    p.add_argument("--batch-size", type=integer(1), default=32, help="images per forward pass")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of random weights")
    p.add_argument("--device", type=device, default="cpu", help=DEVICE_HELP)
    p.add_argument("--recompute", action="store_true", help="ignore cached features")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "fit",
        commands.run_fit,
        "Fit one probe on human triplets and log it to MLflow.",
        mlflow=True,
    )
    _add_data_args(p)
    _add_probe_args(p)
    p.add_argument("--lam", type=number(0), required=True, help="regularisation strength λ")

    p = _command(
        sub,
        "tune",
        commands.run_tune,
        "Choose λ by cross-validation (Optuna), refit with it, log everything to MLflow.",
        mlflow=True,
        optuna=True,
    )
    _add_data_args(p)
    _add_probe_args(p)
    p.add_argument(
        "--method",
        default=_default(TuneSpec, "method"),
        choices=TUNE_METHODS,
        help="grid (every λ of --lams) or tpe (Optuna's TPE sampler, --trials trials between "
        "the smallest and largest λ, log scale)",
    )
    p.add_argument(
        "--lams",
        type=number(0, strict=True),
        nargs="*",
        default=None,
        help="λ grid (default study's)",
    )
    p.add_argument(
        "--folds",
        type=integer(2),
        default=_default(TuneSpec, "n_folds"),
        help=_meaning(TuneSpec, "n_folds"),
    )
    p.add_argument(
        "--fold-kind",
        default=_default(TuneSpec, "fold_kind"),
        choices=FOLD_KINDS,
        help=_meaning(TuneSpec, "fold_kind"),
    )
    p.add_argument(
        "--trials",
        type=integer(1),
        default=_default(TuneSpec, "n_trials"),
        help=_meaning(TuneSpec, "n_trials"),
    )
    p.add_argument(
        "--seed",
        type=integer(0),
        default=_default(TuneSpec, "seed"),
        help=_meaning(TuneSpec, "seed"),
    )

    p = _command(
        sub,
        "dashboard",
        commands.run_dashboard,
        "Start optuna-dashboard on the Optuna storage (127.0.0.1 by default); blocks.",
        optuna=True,
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: tracking/optuna.db)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address the dashboard listens on")
    p.add_argument("--port", type=integer(1), default=8080, help="port the dashboard listens on")

    p = _command(
        sub,
        "stack",
        commands.cmd_stack,
        "Start, stop or show the team tracking stack (PostgreSQL, S3, MLflow server, "
        "optuna-dashboard) on this machine; env prints the variables that point the "
        "project at it.",
    )
    p.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="up (start every service), down (stop them), status (each service's state and "
        "address) or env (the export lines that point the project at the stack)",
    )

    p = _command(
        sub,
        "calibrate",
        commands.run_calibrate,
        "Calibrate T of a logged probe (an MLflow run with a probe model, --run-id) or of a "
        "zero-shot model (W = I) of a feature file (--features) on the repeated triplets; "
        "prints T, the model's expected accuracy and expected leave-one-out noise ceiling "
        "at T, and the human one.",
        mlflow=True,
    )
    p.add_argument("--run-id", default=None, help="MLflow run of a fit (with a probe model)")
    p.add_argument(
        "--features",
        default=None,
        help="a feature file (one row per concept): calibrate it as a zero-shot model (W = I)",
    )
    p.add_argument(
        "--triplets",
        required=True,
        help="human triplets with the repeated set (a THINGS 2023 file: its repeated set; "
        "with --features also a file of repeated triplets in any format)",
    )
    p.add_argument(
        "--format",
        default=AUTO_FORMAT,
        choices=TRIPLET_FORMATS,
        help="triplet file format (default: guess from the file)",
    )
    p.add_argument("--sortindex", default=None, help="THINGS 2020 sortindex file")
    p.add_argument(
        "--ceiling",
        type=number(1 / 3, strict=True),
        default=_default(ProbeSpec, "ceiling"),
        help="default: from repeated triplets",
    )
    p.add_argument(
        "--calibration",
        default=_default(ProbeSpec, "calibration"),
        choices=CALIBRATIONS,
        help="what T matches to the ceiling: study (the expected accuracy, mean max P) or "
        "loo_matched (the model's own expected leave-one-out noise ceiling)",
    )
    p.add_argument("--experiment", default="default", help="MLflow experiment (study)")
    p.add_argument("--device", type=device, default=_default(ProbeSpec, "device"), help=DEVICE_HELP)

    p = _command(
        sub,
        "init",
        commands.run_init,
        "Write a study config for your own data: one model per feature file, your training "
        "triplets and repeated set, a grid sized to your data (every key commented).",
    )
    p.add_argument("dir", help="folder for the study (created; holds study.yaml)")
    p.add_argument("--features", required=True, help="folder of feature files (.npy, .pt, text)")
    p.add_argument("--triplets", required=True, help="the human training triplets (any format)")
    p.add_argument(
        "--repeated",
        default=None,
        help="the repeated human triplets, each answered by several people (any format); "
        "default: a set of a THINGS 2023 --triplets file (--repeated-set)",
    )
    p.add_argument(
        "--repeated-set",
        type=integer(1),
        default=_default(DataSpec, "repeated_set"),
        help="the noise_ceiling set of a THINGS 2023 --triplets file that is the repeated set",
    )
    p.add_argument(
        "--concepts", default=None, help="concept names, one per line (their number: n_concepts)"
    )
    p.add_argument("--study", default=None, help="the study's name (default: the folder's name)")
    p.add_argument("--force", action="store_true", help="overwrite an existing study.yaml")

    p = _command(
        sub,
        "check",
        commands.run_check,
        "Check a study before running it (no MLflow run): every file, each model's zero-shot "
        "fit to the held-out human triplets (uninformative, near-duplicate, badly scaled), "
        "the noise ceiling, the grid's size and time.",
    )
    _add_config_args(p)

    p = _command(
        sub,
        "generators",
        commands.run_generators,
        "Build (or reuse) the study's generators: λ, W and calibrated T per model and level.",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "recover",
        commands.run_recover,
        "Run the whole model-recovery study of a config (generators, grid, report).",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument(
        "--executor",
        default=None,
        choices=EXECUTORS,
        help="where the grid's jobs run (default: the config's executor.kind; without one "
        f"{_default(ExecutorSpec, 'kind')})",
    )
    p.add_argument(
        "--store",
        default=None,
        help="the results store folder (default: the config's store, else results/<study> "
        "beside the tracking home: the folder of a local mlflow.db, or ./tracking)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "plan",
        commands.run_plan,
        "How many triplets make the generating model win: per level, N_target (the per-fold "
        "training size where recovery reaches --target) with a 95 percent interval, by an "
        "adaptive design of ordinary recovery jobs (docs/science/method.md §7).",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--target", type=float, default=0.8, help="recovery to reach (default 0.8)")
    p.add_argument(
        "--levels", nargs="*", default=None, help="level labels to plan (default: every level)"
    )
    p.add_argument(
        "--selection",
        nargs="*",
        default=None,
        choices=TRIPLET_SELECTIONS,
        help="triplet-selection designs to plan side by side (default: the config's)",
    )
    p.add_argument(
        "--budget-jobs",
        type=int,
        default=None,
        help="jobs per level and design at most (default: 24 x the level's generators)",
    )
    p.add_argument(
        "--min-n",
        type=int,
        default=None,
        help="smallest size (default: a tenth of the grid's smallest, at least 10)",
    )
    p.add_argument("--max-n", type=int, default=None, help="largest size (default: the grid's)")
    p.add_argument(
        "--max-ratio",
        type=float,
        default=2.0,
        help="stop when N_target's interval has high / low at most this (default 2)",
    )
    p.add_argument("--batch", type=int, default=4, help="(size, seed) slots per batch (default 4)")
    p.add_argument("--initial", type=int, default=6, help="slots of the first batch (default 6)")
    p.add_argument(
        "--first-seed", type=int, default=0, help="new slots' seeds start here (default 0)"
    )
    p.add_argument(
        "--executor",
        default=None,
        choices=EXECUTORS,
        help="where the jobs run (default: the config's executor.kind)",
    )
    p.add_argument("--store", default=None, help="the results store folder (as recover's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(
        sub,
        "analyze",
        commands.run_analyze,
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
        commands.run_simulate,
        "Simulate training and test triplets from one generator of a study.",
        mlflow=True,
        optuna=True,
    )
    _add_config_args(p)
    p.add_argument("--generator", required=True, help="the generating model (a model of the study)")
    p.add_argument("--level", default=None, help="level label (default: the last of the grid)")
    p.add_argument("--n-train", type=integer(1), required=True, help="training triplets")
    p.add_argument(
        "--seed", type=integer(0), default=0, help="the job's seed (folds, triplets, responses)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for the folds' triplets (CSV) and simulation.json",
    )
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
    if args.command == "calibrate" and (args.run_id is None) == (args.features is None):
        return "arguments --run-id, --features: give exactly one (a logged probe or a feature file)"
    return None


def subcommands(
    parser: argparse.ArgumentParser | None = None,
) -> dict[str, argparse.ArgumentParser]:
    """Every runnable subcommand by its full name (``fit``, ``data things``, ...)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(node: argparse.ArgumentParser, prefix: str) -> None:
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{prefix} {name}".strip())
                return
        found[prefix] = node

    walk(parser or build_parser(), "")
    return found
