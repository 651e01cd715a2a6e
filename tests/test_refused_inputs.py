"""Bad input refused with one line before any work: repeated names, sizes or seeds, a key
repeated in a YAML mapping, a misspelt top-level key, and grid sizes the folds cannot
hold once the human triplets (which simulations avoid) are left out, checked exactly."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelrecovery.cli import main
from modelrecovery.config import load_yaml
from modelrecovery.data.sampling import sample_triplets
from modelrecovery.data.splits import concept_folds
from modelrecovery.data.triplets import triplet_keys
from modelrecovery.recovery.executors import check_sizes_exactly
from modelrecovery.recovery.grid import derived_seed
from modelrecovery.study.spec import load_spec
from modelrecovery.world.config import WorldConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("generators=[a,a]", "generators = ['a', 'a']: expected distinct names; a repeats"),
        ("candidates=[b,a,b]", "expected distinct names; b repeats"),
        ("grid.sizes=[40,40]", "grid.sizes = [40, 40]: expected distinct sizes; 40 repeats"),
        ("grid.seeds=[0,1,0]", "expected distinct seeds; 0 repeats"),
        ("grid.levels=[{family: full, sizes: [40,40]}]", "expected distinct sizes"),
        ("models=[timm:resnet10t,timm:resnet10t]", "model names repeat"),
        ("models={a: a.npy, a: b.npy}", "key 'a' repeats in one mapping"),
    ],
)
def test_repeats_are_refused(override: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        load_spec("default", [override])


def test_the_command_line_refuses_repeats_with_one_line(study_home, capsys) -> None:
    for override in ("generators=[a,a]", "models={a: a.npy, a: b.npy}"):
        assert main(["recover", "--set", override]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "repeat" in err, err
    assert not (study_home / "mlflow.db").exists()  # nothing recorded


def test_a_key_repeated_in_a_yaml_mapping_is_refused_with_its_line(tmp_path: Path) -> None:
    assert load_yaml("a: 1\nb: {c: 2}") == {"a": 1, "b": {"c": 2}}
    config = tmp_path / "study.yaml"
    config.write_text("base: default\nstudy: one\ngrid:\n  seeds: [0]\n  seeds: [1]\n")
    with pytest.raises(ValueError, match=r"line 5: not valid YAML \(key 'seeds' repeats"):
        load_spec(str(config))
    world = tmp_path / "world.yaml"
    world.write_text("n_concepts: 30\nn_concepts: 40\n")
    with pytest.raises(ValueError, match="line 2: not valid YAML .key 'n_concepts' repeats"):
        WorldConfig.from_yaml(world)


def test_a_misspelt_top_level_key_is_refused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("base: default\nreprot: false\n")
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key reprot" in err and "report" in err and len(err.splitlines()) == 1
    assert main(["check", "--set", "reprot=false"]) == 2
    assert "unknown key reprot" in capsys.readouterr().err


def brute_force_limit(n_concepts, seeds, exclude, n_folds=3, train=0.7, share=1 / 8) -> int:
    """The largest N for which every job's draws succeed, by drawing them (the sampler
    raises when a part holds too few triplets besides the excluded ones)."""

    def draws_succeed(n: int) -> bool:
        for seed in seeds:
            folds = concept_folds(n_concepts, n_folds, derived_seed(seed, "folds"), train)
            for fold in folds:
                for concepts, wanted in (
                    (fold.train, n),
                    (fold.validation, max(1, round(n * share))),
                    (fold.test, max(1, round(n * share))),
                ):
                    try:
                        sample_triplets(
                            concepts, wanted, seed=0, n_concepts=n_concepts, exclude=exclude
                        )
                    except ValueError:
                        return False
        return True

    n = 1
    while draws_succeed(n + 1):
        n += 1
    return n


@pytest.mark.parametrize("seed", [0, 1])
def test_the_exact_size_check_agrees_with_drawing_the_triplets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_concepts, seeds = 24, (0, 1, 2)
    every = np.array(
        [(i, j, k) for i in range(24) for j in range(i + 1, 24) for k in range(j + 1, 24)]
    )
    human = every[rng.choice(len(every), size=900, replace=False)]  # 900 of 2024
    keys = np.unique(triplet_keys(human, n_concepts))
    truth = brute_force_limit(n_concepts, seeds, keys)
    settings = {"n_folds": 3, "train_fraction": 0.7, "eval_fraction": 1 / 8}
    check_sizes_exactly(n_concepts, dict.fromkeys(seeds, truth), exclude_keys=keys, **settings)
    with pytest.raises(ValueError, match=f"use sizes up to {truth}$") as err:
        check_sizes_exactly(
            n_concepts, dict.fromkeys(seeds, truth + 1), exclude_keys=keys, **settings
        )
    assert "besides the" in str(err.value) and "human triplets" in str(err.value)
    # without human triplets the same folds hold more: the check counts them
    assert truth < brute_force_limit(n_concepts, seeds, None)
    assert math.comb(24, 3) > truth


@pytest.fixture
def own_study(tmp_path, monkeypatch) -> Path:
    """The own-data example's study (48 concepts, 8060 human triplets)."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "own_data" / "make_data.py"), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    monkeypatch.chdir(tmp_path)
    argv = ["init", "study", "--features", str(data / "features"), "--triplets"]
    argv += [str(data / "train.csv"), "--repeated", str(data / "repeated.csv")]
    assert main(argv) == 0
    return tmp_path / "study" / "study.yaml"


def test_sizes_the_folds_hold_only_with_the_human_triplets_are_refused_before_any_run(
    own_study, capsys
) -> None:
    """N = 500 passed the old check (the 48 concepts hold N = 960 without the human
    triplets) and failed mid-grid; now check and recover refuse it up front."""
    capsys.readouterr()
    for command in ("check", "recover"):
        code = main([command, "--config", str(own_study), "--set", "grid.sizes=[500]"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert "N = 500 needs 62 distinct validation triplets" in lines[-1], err
        assert "besides the 8060 human triplets" in lines[-1] and "use sizes up to" in lines[-1]
        assert "Traceback" not in err
    assert main(["recover", "--config", str(own_study), "--set", "grid.sizes=[100000]"]) == 2
    assert "N = 100000 is more than 48 concepts allow" in capsys.readouterr().err
    import mlflow

    assert len(mlflow.search_runs(search_all_experiments=True)) == 0  # no run was created


def test_a_diverging_fit_exits_2_and_ends_its_run_failed(study_home, capsys) -> None:
    """Features scaled by 1e30 in float64 (as test_numeric_edges plants it): the loss
    ends far above log 3. ``fit`` says so in one error line, exits 2 and its run ends
    FAILED with the reason as a tag; the same features scaled to norm 1 fit and exit 0."""
    import mlflow

    from helpers import planted_triplets, repeated_triplets, write_things2023

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    write_things2023(
        study_home / "human.tsv",
        planted_triplets(x, 1500, seed=1),
        repeated_triplets(x, 20, 5, seed=2),
    )
    np.save(study_home / "big.npy", x * 1e30)
    np.save(study_home / "fine.npy", x / np.abs(x).max())
    argv = ["--triplets", "human.tsv", "--n-concepts", "30", "--dtype", "float64", "--lam", "0.1"]
    assert main(["fit", "--features", "big.npy", *argv]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "above log 3" in last and "ended FAILED" in last and "Traceback" not in err, err
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED" and "above log 3" in run.data.tags["failure"]
    assert run.data.tags["converged"] == "false"
    assert main(["fit", "--features", "fine.npy", *argv]) == 0
    statuses = sorted(
        r.info.status for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
    )
    assert statuses == ["FAILED", "FINISHED"]
