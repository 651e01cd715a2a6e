"""Your own models and data, as a new user runs them: `init` writes a study config from a
folder of feature files, a plain-CSV training file and a separate repeated file; `check`
reads everything and flags the models; `recover` answers with a verdict. The example's
dataset is written by examples/own_data/make_data.py (nothing from THINGS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrecovery.cli import main
from modelrecovery.study.own_data import grid_sizes, per_fold_size
from modelrecovery.study.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
MAKE_DATA = ROOT / "examples" / "own_data" / "make_data.py"


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The example's dataset in tmp_path/data, a tracking home in tmp_path/home."""
    done = subprocess.run(
        [sys.executable, str(MAKE_DATA), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/home/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/home/optuna.db")
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _init(lab: Path, *extra: str) -> int:
    data = lab / "data"
    return main(
        [
            "init",
            str(lab / "study"),
            "--features",
            str(data / "features"),
            "--triplets",
            str(data / "train.csv"),
            "--repeated",
            str(data / "repeated.csv"),
            *extra,
        ]
    )


def test_the_largest_size_inverts_the_triplets_to_collect_and_the_sizes() -> None:
    """The grid's largest N is what the user's triplets fill: the largest N whose fold
    needs no more triplets than they have."""
    from modelrecovery.analysis.verdict import triplets_to_collect

    for m, n in ((2400, 48), (25000, 300), (800, 30)):
        largest = per_fold_size(m, n)
        assert triplets_to_collect(largest, n_concepts=n) <= m
        assert triplets_to_collect(largest + 1, n_concepts=n) > m
    assert per_fold_size(5, 30) == 1  # too few triplets for any fold: the smallest size
    assert grid_sizes(8500) == [200, 510, 1300, 3300, 8500]
    assert grid_sizes(150) == [20, 33, 55, 91, 150]
    assert grid_sizes(20) == [20]


def test_init_writes_a_commented_config_that_loads(lab, capsys) -> None:
    assert _init(lab) == 0, capsys.readouterr().err
    path = lab / "study" / "study.yaml"
    text = path.read_text()
    spec = load_spec(str(path))
    assert spec.data.kind == "files" and spec.data.n_concepts == 48
    assert set(spec.file_models()) == {"close", "close_copy", "noise", "partial", "warped"}
    assert spec.data.repeated == str((lab / "data" / "repeated.csv").resolve())
    assert [lv.label for lv in spec.grid.level_list] == [
        "zero_shot",
        "diagonal",
        "rectangular10",
        "full",
    ]
    assert spec.grid.sizes[0] == 200 and spec.grid.sizes[-1] == per_fold_size(8000, 48)
    assert spec.grid.seeds == (0, 1)
    # every key has its one-line comment (the model entries aside)
    in_models = False
    for line in text.splitlines():
        if line.startswith("models:"):
            in_models = True
        elif line and not line.startswith(" "):
            in_models = False
        key_line = line.strip() and not line.strip().startswith(("#", "-"))
        section = line.rstrip().endswith(":") and not line.startswith(" ")
        if key_line and ":" in line and not in_models and not section:
            assert "#" in line, line
    # a second init does not overwrite it; --force does
    assert _init(lab) == 2 and "exists" in capsys.readouterr().err
    assert _init(lab, "--force") == 0


def test_init_takes_the_concepts_file(lab, capsys) -> None:
    names = lab / "concepts.txt"
    names.write_text("\n".join(f"concept{i}" for i in range(48)) + "\n")
    assert _init(lab, "--concepts", str(names)) == 0, capsys.readouterr().err
    assert load_spec(str(lab / "study" / "study.yaml")).data.n_concepts == 48
    names.write_text("\n".join(f"concept{i}" for i in range(47)) + "\n")
    assert _init(lab, "--concepts", str(names), "--force") == 2
    err = capsys.readouterr().err
    assert "features" in err and "47" in err and len(err.strip().splitlines()) == 1


def test_init_errors_are_one_line(lab, capsys) -> None:
    data = lab / "data"
    code = main(
        [
            "init",
            str(lab / "s"),
            "--features",
            str(data / "features"),
            "--triplets",
            str(data / "train.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "give --repeated" in err and len(err.strip().splitlines()) == 1
    code = main(
        [
            "init",
            str(lab / "s"),
            "--features",
            str(lab / "nothing"),
            "--triplets",
            str(data / "train.csv"),
            "--repeated",
            str(data / "repeated.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "nothing" in err and len(err.strip().splitlines()) == 1
    assert not (lab / "s").exists()  # nothing written when init fails


def test_a_plain_csv_without_a_repeated_set_fails_before_any_run(lab, capsys) -> None:
    assert _init(lab) == 0
    capsys.readouterr()
    config = str(lab / "study" / "study.yaml")
    code = main(["recover", "--config", config, "--set", "data.repeated=null"])
    err = capsys.readouterr().err
    assert code == 2 and "data.repeated is missing" in err
    # sizes beyond what 48 concepts hold: one line, before any run
    code = main(["recover", "--config", config, "--set", "grid.sizes=[200,1000]"])
    err = capsys.readouterr().err
    assert code == 2 and "N = 1000 is more than 48 concepts allow" in err, err
    assert len(err.strip().splitlines()) == 1
    assert main(["check", "--config", config, "--set", "grid.sizes=[1000]"]) == 2  # check too
    assert "N = 1000 is more than 48 concepts allow" in capsys.readouterr().err
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 0  # no run was created


@pytest.mark.slow
def test_from_init_to_a_verdict(lab, capsys) -> None:
    """init, check and recover, as the README says; results beside the tracking home."""
    assert _init(lab) == 0
    config = str(lab / "study" / "study.yaml")
    capsys.readouterr()
    assert main(["check", "--config", config]) == 0
    checked = capsys.readouterr().out
    assert "noise" in checked and "uninformative" in checked
    assert not (lab / "home" / "mlflow.db").exists()  # check records nothing
    small = [
        "grid.sizes=[200,443]",
        "grid.seeds=[0]",
        "grid.levels=[{family: zero_shot},{family: full}]",
        "executor.kind=inprocess",
    ]
    store = lab / "my-store"
    code = main(
        ["--json", "recover", "--config", config, "--no-progress", "--store", str(store),
         "--set", *small]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "left out" in out.err  # the noise model is no generator at zero-shot
    verdict = out.err[out.err.index("verdict:") :]  # under --json the tables go to stderr
    assert "zero_shot probes: the generating model is recovered in" in verdict
    assert "full probes: the generating model is recovered in" in verdict
    assert "if your study crowns" in verdict and "the crowned model is the true one in" in verdict
    assert "left out as generators (no jobs): noise" in verdict
    summary = json.loads(out.out)
    assert summary["jobs"] == summary["jobs_run_now"] and summary["jobs"] > 0
    assert summary["store"] == str(store.resolve())
    assert summary["report"].startswith(str(lab / "home" / "reports"))
    html = Path(summary["report"]).read_text()
    assert html.index("verdict") < html.index("Recovery accuracy")  # the verdict first
    home = lab / "home"
    # --store chose the store: every job is there
    assert len([p for p in (store / "jobs").iterdir() if p.is_dir()]) == summary_jobs(out)
    assert not (home / "results").exists() and (home / "reports").is_dir()
    assert not (lab / "tracking").exists()
    env = dict(os.environ)
    assert env["MLFLOW_TRACKING_URI"].endswith("home/mlflow.db")


def summary_jobs(out) -> int:
    return int(json.loads(out.out)["jobs"])


def test_any_label_a_model_gives_is_a_grouping_of_the_report() -> None:
    from modelrecovery.study.pipeline import model_groups

    metadata = {
        "a": {"objective": "contrastive", "training_data": "ImageNet", "backbone": "timm:x"},
        "b": {"objective": "supervised", "training_data": "LAION", "display": "B"},
        "c": {"n_parameters": 5},
    }
    groups = model_groups(metadata)
    assert groups == {
        "objective": {"a": "contrastive", "b": "supervised"},
        "training_data": {"a": "ImageNet", "b": "LAION"},
    }
