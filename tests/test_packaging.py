"""Install and run anywhere: the configs are package data (read with importlib.resources),
``--config`` takes a packaged name or a path, ``modelrecovery config show`` copies one
out, paths inside a config file are relative to that file, a command that fails before
its work starts creates nothing, and the built wheel runs a tiny study from an empty
folder in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from modelrecovery.cli import main
from modelrecovery.config import CONF_DIR, resolve_config_path, resolve_world_config
from modelrecovery.study.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty(tmp_path, monkeypatch) -> Path:
    """An empty working folder, with no tracking variables set."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    return folder


def test_configs_live_in_the_package_and_the_checkout_names_still_work():
    assert CONF_DIR.is_relative_to(ROOT / "src" / "modelrecovery")
    assert (ROOT / "conf").resolve() == CONF_DIR.resolve()  # the checkout's conf/ link
    assert resolve_config_path("default") == CONF_DIR / "default.yaml"
    assert resolve_world_config(None) == CONF_DIR / "world" / "default.yaml"
    assert resolve_world_config("default") == CONF_DIR / "world" / "default.yaml"
    assert resolve_world_config("conf/world/default.yaml").samefile(
        CONF_DIR / "world" / "default.yaml"
    )


def test_config_list_and_show(empty, capsys):
    assert main(["--json", "config", "list"]) == 0
    listed = yaml.safe_load(capsys.readouterr().out)
    assert {"default", "things_paper", "selection", "world/default"} <= set(listed)
    assert main(["config", "show", "default"]) == 0
    text = capsys.readouterr().out
    assert text == (CONF_DIR / "default.yaml").read_text()
    (empty / "my.yaml").write_text(text)
    assert load_spec("my.yaml") == load_spec("default")  # a copy is the same study
    assert main(["config", "show", "world/default"]) == 0
    assert capsys.readouterr().out == (CONF_DIR / "world" / "default.yaml").read_text()
    assert main(["config", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modelrecovery config: error: no packaged config 'nope' (known: ")
    assert "world/default" in err and "\n" not in err
    assert list(empty.iterdir()) == [empty / "my.yaml"]


def test_config_is_a_name_or_any_file(empty):
    text = (CONF_DIR / "default.yaml").read_text()
    (empty / "study.txt").write_text(text)  # any file name: its content is what counts
    assert load_spec("study.txt").study == "default-world"
    with pytest.raises(FileNotFoundError, match=r"config 'nope' not found: no such file, nor a"):
        load_spec("nope")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_spec(str(empty))


def test_paths_in_a_config_file_are_relative_to_it(empty):
    sub = empty / "studies" / "mine"
    sub.mkdir(parents=True)
    (sub / "world.yaml").write_text("n_concepts: 60\n")
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["data"].update(triplets="data/t.csv", features_dir="feats", human_embedding=None)
    raw["store"] = "results"
    (sub / "files.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec("studies/mine/files.yaml", ["data.repeated=r.csv"])
    assert spec.data.triplets == str(sub / "data" / "t.csv")
    assert spec.data.features_dir == str(sub / "feats")
    assert spec.store == str(sub / "results")
    assert spec.data.repeated == "r.csv"  # --set: relative to the current folder
    # a packaged config's paths stay relative to the current folder
    assert load_spec("things_paper").data.triplets.startswith("data/things/")
    raw = yaml.safe_load((CONF_DIR / "default.yaml").read_text())
    raw["data"]["world_config"] = "world.yaml"
    (sub / "world_study.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(str(sub / "world_study.yaml"))
    assert Path(spec.data.world_config) == sub / "world.yaml"
    raw["data"]["world_config"] = "default"  # a packaged world config's name stays a name
    (sub / "world_study.yaml").write_text(yaml.safe_dump(raw))
    assert load_spec(str(sub / "world_study.yaml")).data.world_config == "default"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recover", "--config", "nope"], "config 'nope' not found"),
        (["recover", "--set", "data.world_config=missing.yaml"], "world config 'missing.yaml'"),
        (["recover", "--set", "data.world_overrides={n_concept: 5}"], "n_concept"),
        (["generators", "--set", "grid.sizes=abc"], "grid.sizes = 'abc'"),
        (["simulate", "--config", "things_paper", "--generator", "a", "--n-train", "5",
          "--out", "o"], "data/things/"),
    ],
)
def test_a_command_that_fails_before_its_work_creates_nothing(empty, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert list(empty.iterdir()) == []  # no tracking/, no data/, no run


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


@pytest.mark.slow
def test_the_wheel_runs_a_tiny_study_from_an_empty_folder(tmp_path):
    """Build the wheel, install it (no dependencies) into a fresh venv whose dependencies
    come from the project's environment through a .pth file, and from an empty folder:
    ``config show``, ``world`` and a tiny ``recover --config default`` naming 2 of the
    default set's 10 models (only those 2 are extracted)."""
    # built from a copy of the sources: no build/ left in the checkout, no stale module in it
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("modelrecovery-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    fresh = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # the dependencies: the project's site-packages, after the fresh one (a .pth file adds
    # it at the end of sys.path), without the project's editable finder
    (Path(fresh) / "deps.pth").write_text(_site_packages() + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    console = venv / "bin" / "modelrecovery"
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.pop("PYTHONPATH", None)
    env.pop("MODELRECOVERY_DATA", None)

    def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(console), *argv], cwd=work, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    where = subprocess.run(
        [str(python), "-c", "import modelrecovery; print(modelrecovery.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), where  # the installed wheel, not src/
    assert run("config", "show", "default").stdout == (CONF_DIR / "default.yaml").read_text()
    assert list(work.iterdir()) == []
    tiny_world = ["n_concepts=36", "n_train_triplets=1500", "n_ceiling_triplets=30",
                  "image_size=48"]  # fmt: skip
    world = yaml.safe_load(run("--json", "world", "--set", *tiny_world).stdout)
    assert Path(world["triplets"]).is_relative_to(work / "data" / "worlds")
    overrides = [
        "data.world_overrides={" + ", ".join(s.replace("=", ": ") for s in tiny_world) + "}",
        # 2 of the default set's 10 models: only their features are built (issue 26)
        "generators=[resnet10t]", "candidates=[resnet10t, efficientvit_m0]",
        "include_uninformative=true",
        "tune.lams=[1.0]", "tune.n_folds=2", "grid.sizes=[20]", "grid.seeds=[0]",
        "grid.levels=[{family: zero_shot}]", "executor.kind=inprocess", "report=false",
    ]  # fmt: skip
    done = run("--json", "recover", "--config", "default", "--no-progress", "--set", *overrides,
               timeout=600)  # fmt: skip
    summary = yaml.safe_load(done.stdout)
    assert summary["jobs"] == summary["jobs_run_now"] == 1, summary
    (features,) = (work / "data" / "worlds").glob("*/features")
    built = sorted(p.name for p in features.rglob("*.npy"))
    assert all("resnet10t" in n or "efficientvit_m0" in n for n in built), built
    models = sorted(n.rsplit("-", 1)[0] for n in built if n.startswith("model_"))
    assert models == ["model_efficientvit_m0", "model_resnet10t"], built
    assert (work / "tracking" / "mlflow.db").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["data", "tracking"]
