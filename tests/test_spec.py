"""The study configuration's schema: bad keys fail at once with one line naming the file,
the key, the value and what was expected; scalars where lists are expected are accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from modelrecovery.config import CONF_DIR
from modelrecovery.study import spec as vocabulary
from modelrecovery.study.spec import StudySpec, load_spec, validate_spec

SHIPPED = ("default", "things_paper")

# (override, fragment of the one-line message)
BAD = [
    ("grid.sizes=abc", "grid.sizes = 'abc': expected a positive integer or a non-empty list"),
    ("grid.sizes=[40, -4]", "grid.sizes = [40, -4]: expected a positive integer"),
    ("grid.sizes=[]", "grid.sizes = []: expected a positive integer or a non-empty list"),
    ("grid.sizes=40.5", "grid.sizes = 40.5: expected a positive integer"),
    ("grid.n_folds=abc", "grid.n_folds = 'abc': expected an integer >= 2"),
    ("grid.n_folds=1", "grid.n_folds = 1: expected an integer >= 2"),
    ("grid.n_folds=true", "grid.n_folds = True: expected an integer >= 2"),
    ("tune.n_folds=1", "tune.n_folds = 1: expected an integer >= 2"),
    ("tune.lams=abc", "tune.lams = 'abc': expected a finite number > 0"),
    ("tune.lams=[0]", "tune.lams = [0]: expected a finite number > 0"),
    ("grid.lams=[0]", "grid.lams = [0]: expected a finite number > 0"),
    ("grid.lams=[1.0, -2.0]", "grid.lams = [1.0, -2.0]: expected a finite number > 0"),
    ("grid.lams=.inf", "grid.lams = inf: expected a finite number > 0"),
    ("grid.seeds=-1", "grid.seeds = -1: expected an integer >= 0"),
    ("tune.seed=-1", "tune.seed = -1: expected an integer >= 0"),
    ("grid.criterion=best", "grid.criterion = 'best': expected one of accuracy, nll"),
    ("grid.tie_rule=last", "grid.tie_rule = 'last': expected one of random, first, study"),
    ("grid.stopping=never", "grid.stopping = 'never': expected one of converged, study"),
    ("tune.stopping=never", "tune.stopping = 'never': expected one of converged, study"),
    ("grid.dtype=float16", "grid.dtype = 'float16': expected one of float32, float64"),
    ("probe.dtype=half", "probe.dtype = 'half': expected one of float32, float64"),
    ("executor.kind=slurm", "executor.kind = 'slurm': expected one of inprocess, dask"),
    ("executor.n_workers=0", "executor.n_workers = 0: expected an integer >= 1"),
    ("probe.regulariser=l3", "probe.regulariser = 'l3': expected one of scalar_shrinkage, l2"),
    ("probe.workers=0", "probe.workers = 0: expected an integer >= 1"),
    ("probe.ceiling=0.2", "probe.ceiling = 0.2: expected null or a number between 1/3 and 1"),
    ("probe.device=gpu", "probe.device = 'gpu': expected one of cpu, cuda, auto or cuda:<n>"),
    ("tune.method=random", "tune.method = 'random': expected one of grid, tpe"),
    ("tune.fold_kind=rows", "tune.fold_kind = 'rows': expected one of triplets, concepts"),
    ("data.kind=cloud", "data.kind = 'cloud': expected one of world, files"),
    ("grid.warm_start=2", "grid.warm_start = 2: expected true or false"),
    ("report=maybe", "report = 'maybe': expected true or false"),
    ("candidates=[1, 2]", "candidates = [1, 2]: expected all or a model name or a list"),
    ("study=''", "study = '': expected a non-empty name"),
    (
        "grid.levels=[{family: fulll}]",
        "grid.levels[0].family = 'fulll': expected one of zero_shot, diagonal, rectangular, full",
    ),
    (
        "grid.levels=[{family: full}, {family: rectangular}]",
        "grid.levels[1] = {'family': 'rectangular'}: expected k >= 1 with family rectangular",
    ),
    (
        "grid.levels=[{family: rectangular, k: 0}]",
        "grid.levels[0].k = 0: expected an integer >= 1",
    ),
    (
        "grid.levels=[{family: diagonal, k: 4}]",
        "expected no k with family diagonal",
    ),
    (
        "grid.levels=[{family: full, rank: 4}]",
        "unknown key grid.levels[0].rank (known: ['family', 'k', 'seeds', 'sizes'])",
    ),
    (
        "grid.levels=[{family: full}, {family: full}]",
        "expected distinct levels; full repeats",
    ),
    ("grid.levels=[]", "grid.levels = []: expected a level {family:"),
    ("data.kind=files", "data.triplets is missing: expected the human triplet file"),
]


def _error(overrides: list[str], name: str = "default") -> str:
    with pytest.raises(ValueError) as info:
        load_spec(name, overrides)
    return str(info.value)


def _one_clean_line(message: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message
    assert "pydantic" not in message and "errors.pydantic.dev" not in message
    assert "validation error" not in message


@pytest.mark.parametrize(("override", "fragment"), BAD)
def test_bad_override_names_key_value_and_expectation(override: str, fragment: str) -> None:
    message = _error([override])
    _one_clean_line(message)
    assert message.startswith("config conf/default.yaml: ") or message.startswith(
        f"config {CONF_DIR / 'default.yaml'}: "
    )
    assert fragment in message, message
    assert f"(override {override})" in message


def test_message_example_of_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONF_DIR.parent)
    assert _error(["grid.n_folds=abc"]) == (
        "config conf/default.yaml: grid.n_folds = 'abc': expected an integer >= 2 "
        "(concept-disjoint folds per job) (override grid.n_folds=abc)"
    )


def test_several_problems_on_one_line() -> None:
    message = _error(["grid.n_folds=1", "tune.lams=[0]"])
    _one_clean_line(message)
    assert (
        "grid.n_folds = 1: expected an integer >= 2 (concept-disjoint folds per job) "
        "(override grid.n_folds=1)"
    ) in message
    assert "; " in message and "tune.lams = [0]" in message


def test_scalars_where_lists_are_expected_become_lists() -> None:
    spec = load_spec(
        "default",
        [
            "grid.sizes=4000",
            "grid.seeds=3",
            "grid.lams=10.0",
            "tune.lams=1e-2",  # YAML reads 1e-2 as text: still a number
            "grid.levels={family: rectangular, k: 4}",
            "generators=resnet10t",
        ],
    )
    assert spec.grid.sizes == (4000,)
    assert spec.grid.seeds == (3,)
    assert spec.grid.lams == (10.0,)
    assert spec.tune.lams == (0.01,)
    assert spec.grid.level_list == (vocabulary.Level("rectangular", 4),)
    assert spec.generators == ("resnet10t",)
    assert spec.candidates == "all"


def test_shipped_configs_validate_and_keep_every_value() -> None:
    """Every value a shipped file gives is the specification's value (nothing dropped or
    changed); keys it does not give take the specification's defaults."""
    for name in ("default", "things_paper", "selection"):
        raw = yaml.safe_load((CONF_DIR / f"{name}.yaml").read_text())
        spec = load_spec(name).as_config()
        for section, values in raw.items():
            if not isinstance(values, dict) or section in ("models", "extra_models"):
                continue
            for key, value in values.items():
                given = spec[section][key]
                if key == "levels":
                    given = [{k: v for k, v in lv.items() if v is not None} for lv in given]
                elif isinstance(value, (int, float, str, bool)) and isinstance(given, list):
                    given = given[0] if len(given) == 1 else given
                assert given == value, (name, section, key)


def test_spec_is_frozen_and_flows_as_an_object() -> None:
    spec = load_spec("default")
    assert isinstance(spec, StudySpec)
    with pytest.raises(ValueError):
        spec.grid.n_folds = 5  # frozen
    # the grid's and the tuner's stopping rule default to the probe's
    spec = load_spec("default", ["probe.stopping=converged"])
    raw = yaml.safe_load((CONF_DIR / "default.yaml").read_text())
    assert raw["grid"]["stopping"] == "study" and spec.grid.stopping == "study"  # given
    del raw["grid"]["stopping"], raw["tune"]["stopping"]
    raw["probe"]["stopping"] = "converged"
    spec = validate_spec(raw, "mine")
    assert spec.grid.stopping == spec.tune.stopping == "converged"


def test_the_recover_tests_settings_validate() -> None:
    from test_recover_stage import TINY

    spec = load_spec("default", TINY)
    assert [lv.label for lv in spec.grid.level_list] == ["zero_shot", "full"]
    assert [m["name"] for m in spec.world_models()] == ["timm:resnet10t", "timm:lcnet_100"]


def test_each_name_list_exists_once() -> None:
    """The vocabulary is defined in study/spec.py and imported everywhere else: the
    probe's, the grid's, the executors' and the command line's names are the spec's
    objects, not copies."""
    from modelrecovery.cli import parser
    from modelrecovery.probe import families, reduced
    from modelrecovery.recovery import executors, grid

    assert families.FAMILIES is vocabulary.FAMILIES
    assert families.REGULARISERS is vocabulary.REGULARISERS
    assert reduced.REDUCTIONS is vocabulary.REDUCTIONS
    assert grid.FULL_LAMBDAS is vocabulary.FULL_LAMBDAS
    assert grid.Level is vocabulary.Level
    assert executors.EXECUTORS is vocabulary.EXECUTORS
    assert vocabulary.REDUCTIONS == tuple(get_args(vocabulary.Reduction))
    choices = {
        action.dest: tuple(action.choices)
        for sub in parser.build_parser()._subparsers._group_actions[0].choices.values()
        for action in sub._actions
        if action.choices is not None and not isinstance(action.choices, dict)
    }
    assert choices["family"] == vocabulary.FAMILIES
    assert choices["regulariser"] == vocabulary.REGULARISERS
    assert choices["reduction"] == vocabulary.REDUCTIONS
    source = Path(vocabulary.__file__).parents[1]
    literal = '("zero_shot", "diagonal", "rectangular", "full")'
    copies = [p for p in source.rglob("*.py") if literal in p.read_text(encoding="utf-8")]
    assert copies == [], copies


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.noise_ceiling=file.tsv", "unknown key data.noise_ceiling (known: ["),
        ("probe.family=full", "unknown key probe.family (known: ['calibration', 'ceiling'"),
        ("executor.comment=x", "unknown key executor.comment (known: ['address'"),
        ("notes=free", "unknown key notes (known: ["),
        ("data.triplets=t.csv", "data.triplets = 't.csv': expected no triplets with data.kind"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(override: str, fragment: str) -> None:
    message = _error([override])
    _one_clean_line(message)
    assert fragment in message, message
    assert f"(override {override})" in message
    if "noise_ceiling" in override:  # the data section's own keys, not the file's
        assert "'human_embedding'" in message and "'world_config'" in message


def test_unknown_keys_in_files(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONF_DIR / "default.yaml").read_text())
    raw["grid"]["n_fold"] = 3
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    message = _error([], str(path))
    _one_clean_line(message)
    assert f"config {path}: unknown key grid.n_fold (known: [" in message
    assert "'n_folds'" in message
    del raw["grid"]["n_fold"]
    raw["executor"]["comment"] = "kept?"
    path.write_text(yaml.safe_dump(raw))
    assert "unknown key executor.comment" in _error([], str(path))
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["models"]["ResNet50"]["weights"] = "imagenet"
    path.write_text(yaml.safe_dump(raw))
    message = _error([], str(path))
    assert "unknown key models.ResNet50.weights (known: ['architecture', 'backbone'" in message


def test_files_kind_needs_models_and_triplets(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["models"] = ["clip_rn50"]
    path = tmp_path / "files.yaml"
    path.write_text(yaml.safe_dump(raw))
    message = _error([], str(path))
    _one_clean_line(message)
    assert "models = " in message and "expected a mapping model name -> feature file" in message
    message = _error(["models={a: a.npy}", "data.triplets=null"], "things_paper")
    assert "data.triplets is missing" in message
    models = "models={a: a.npy, b: {file: b.npy, objective: supervised}}"
    entries = load_spec("things_paper", [models]).file_models()
    assert entries["a"].file == "a.npy" and entries["b"].objective == "supervised"


def test_missing_required_keys_and_bad_yaml(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONF_DIR / "default.yaml").read_text())
    del raw["grid"]["sizes"]
    path = tmp_path / "nosizes.yaml"
    path.write_text(yaml.safe_dump(raw))
    message = _error([], str(path))
    _one_clean_line(message)
    assert "grid.sizes is missing: expected a positive integer" in message
    path.write_text("grid: [1,\n")
    message = _error([], str(path))
    _one_clean_line(message)
    assert message.startswith(f"config {path}: line 2: not valid YAML")


def test_validate_spec_directly() -> None:
    raw = yaml.safe_load((CONF_DIR / "default.yaml").read_text())
    raw["grid"]["sizes"] = "4000"
    assert validate_spec(raw, "mine").grid.sizes == (4000,)
    raw["grid"]["sizes"] = None
    with pytest.raises(ValueError, match=r"^config mine: grid.sizes = None: expected"):
        validate_spec(raw, "mine")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{cwd}/optuna.db",
        "MODELRECOVERY_DATA": str(cwd / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_console_recover_with_a_bad_override_exits_2_with_one_line(tmp_path: Path) -> None:
    done = _cli("recover", "--set", "grid.sizes=abc", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "grid.sizes = 'abc': expected a positive integer" in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was built
