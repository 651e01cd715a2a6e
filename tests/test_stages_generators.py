"""Fit, tune, calibrate and generators: MLflow runs, the Optuna study, reuse, bad input."""

from __future__ import annotations

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from helpers import planted_triplets, repeated_triplets, write_things2023
from modelrecovery.data import Triplets
from modelrecovery.probe.calibrate import calibrate_temperature, expected_agreement
from modelrecovery.probe.fit import triplet_probabilities
from modelrecovery.study.calibration import calibrate
from modelrecovery.study.fitting import ProbeSetup, fit_probe
from modelrecovery.study.generators import GeneratorSetup, build_generators
from modelrecovery.study.inputs import load_human_data
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.study.spec import Level, TuneSpec
from modelrecovery.study.tracker import NullTracker
from modelrecovery.study.tuning import tune_and_fit


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A tracker on a private MLflow store and Optuna storage (separate SQLite files)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    yield MLflowTracker("test-study")
    mlflow.end_run()


def runs(tracker: MLflowTracker, stage: str | None = None) -> pd.DataFrame:
    query = f"tags.stage = '{stage}'" if stage else ""
    return mlflow.search_runs(experiment_ids=[tracker.experiment_id], filter_string=query)


def setups(tune: TuneSpec, *families: str, ceiling: float | None = None) -> list:
    """Generator setups of the given levels (default: full W)."""
    return [
        GeneratorSetup(ProbeSetup(Level(family)), tune, ceiling) for family in families or ("full",)
    ]


@pytest.fixture
def zero_shot_world(tmp_path):
    """Human data simulated from the features themselves (W = I): strong shrinkage wins."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 24)) / 2
    train = planted_triplets(x, 600, seed=1)
    repeated = repeated_triplets(x, 60, 10, seed=2)
    path = write_things2023(tmp_path / "human.tsv", train, repeated)
    np.save(tmp_path / "zs.npy", x.astype(np.float32))
    return x, load_human_data(path, n_concepts=40), tmp_path


@pytest.mark.slow
def test_tune_finds_planted_lambda_and_logs_study_and_runs(zero_shot_world, tracking):
    x, human, _ = zero_shot_world
    settings = TuneSpec(lams=(1e-2, 1.0, 100.0), n_folds=3)
    outcome = tune_and_fit(
        x,
        human.train,
        tracker=tracking,
        model="zs",
        setup=ProbeSetup(dtype="float64"),
        settings=settings,
        test=human.test,
    )
    assert outcome.best_lam == 100.0
    study = optuna.load_study(
        study_name=outcome.study_name,
        storage=optuna.storages.RDBStorage(__import__("os").environ["OPTUNA_STORAGE"]),
    )
    assert len(study.trials) == 3
    assert {t.params["lam"] for t in study.trials} == set(settings.lams)
    trials = runs(tracking, "tune_trial")
    assert len(trials) == 3
    assert trials["metrics.val_accuracy"].notna().all()
    assert set(trials["tags.mlflow.runName"].str.rsplit("/", n=1).str[0]) == {"trial/zs/full"}
    tune_run = runs(tracking, "tune")
    assert list(tune_run["tags.mlflow.runName"]) == ["tune/zs/full"]
    fit_run = runs(tracking, "fit")
    assert list(fit_run["tags.mlflow.runName"]) == ["fit/zs/full"]
    assert float(fit_run["params.lam"].iloc[0]) == 100.0
    for metric in ("train_accuracy", "test_accuracy", "test_nll", "iterations", "converged"):
        assert f"metrics.{metric}" in fit_run.columns
    # children of the tune run
    assert (trials["tags.mlflow.parentRunId"] == outcome.run_id).all()


def test_calibration_hits_target_and_moves_the_right_way():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 4))
    triplets = planted_triplets(z, 800, seed=3)
    t_low, achieved_low = calibrate_temperature(z, triplets, 0.6)
    t_high, achieved_high = calibrate_temperature(z, triplets, 0.75)
    assert abs(achieved_low - 0.6) < 1e-4 and abs(achieved_high - 0.75) < 1e-4
    assert t_high < t_low  # a less noisy target needs a lower temperature
    probs = triplet_probabilities(torch.tensor(z), triplets, t_low)
    assert probs.max(1).mean() == pytest.approx(0.6, abs=1e-4)  # independent check
    logits = np.log(triplet_probabilities(torch.tensor(z), triplets, 1.0))
    assert expected_agreement(logits, t_low) == pytest.approx(0.6, abs=1e-4)
    with pytest.raises(ValueError, match="ceiling must lie in"):
        calibrate_temperature(z, triplets, 0.3)


@pytest.mark.slow
def test_logged_probe_loads_back_and_predicts_the_same(zero_shot_world, tracking):
    x, human, _ = zero_shot_world
    setup = ProbeSetup(dtype="float64")
    outcome = fit_probe(
        x, human.train, tracker=tracking, model="zs", setup=setup, lam=0.1, test=human.test
    )
    loaded = mlflow.pyfunc.load_model(f"runs:/{outcome.run_id}/probe")
    query = pd.DataFrame(human.test.ids[:50], columns=["i", "j", "k"])
    predicted = loaded.predict(query).to_numpy()
    expected = outcome.fitted.probabilities(x, human.test.subset(np.arange(50)))
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    artifacts = mlflow.artifacts.list_artifacts(run_id=outcome.run_id)
    assert {"W.npy", "loss_curve.png"} <= {a.path for a in artifacts}


@pytest.mark.slow
def test_generators_are_reused_on_a_second_identical_call(zero_shot_world, tracking):
    x, human, tmp = zero_shot_world
    rng = np.random.default_rng(5)
    np.save(tmp / "other.npy", np.tanh(x @ rng.normal(size=(24, 9))).astype(np.float32))
    paths = {"zs": tmp / "zs.npy", "other": tmp / "other.npy"}
    tune = TuneSpec(lams=(1e-2, 1.0), n_folds=2)
    first = build_generators(paths, human, tracker=tracking, setups=setups(tune), progress=False)
    n_fit = len(runs(tracking, "fit"))
    assert n_fit == 2 and not any(g.reused for g in first.values())
    second = build_generators(paths, human, tracker=tracking, setups=setups(tune), progress=False)
    assert len(runs(tracking, "fit")) == n_fit  # nothing refitted
    assert all(g.reused for g in second.values())
    for name in paths:
        key = ("full", name)
        assert second[key].temperature == pytest.approx(first[key].temperature, rel=1e-6)
        np.testing.assert_allclose(second[key].z, first[key].z, rtol=1e-6)
    gen_runs = runs(tracking, "generator")
    assert sorted(gen_runs["tags.mlflow.runName"]) == ["generator/other/full", "generator/zs/full"]
    # the calibrated generator reproduces the human ceiling on the repeated set
    from modelrecovery.data.ceiling import noise_ceiling

    ceiling = noise_ceiling(human.test)
    g = second[("full", "zs")]
    probs = triplet_probabilities(torch.tensor(g.z, dtype=torch.float64), human.test, g.temperature)
    assert probs.max(1).mean() == pytest.approx(ceiling, abs=1e-3)


def test_bad_input_fails_before_any_fitting(zero_shot_world, tracking, tmp_path):
    x, human, tmp = zero_shot_world
    tune = TuneSpec(lams=(1.0,), n_folds=2)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        build_generators({"m": tmp / "missing.npy"}, human, tracker=tracking, setups=setups(tune))
    with pytest.raises(ValueError, match="ceiling must lie in"):
        build_generators(
            {"zs": tmp / "zs.npy"}, human, tracker=tracking, setups=setups(tune, ceiling=1.2)
        )
    np.save(tmp / "short.npy", x[:30].astype(np.float32))
    with pytest.raises(ValueError, match="short.npy"):
        build_generators({"short": tmp / "short.npy"}, human, tracker=tracking, setups=setups(tune))
    with pytest.raises(ValueError, match="greater than 0"):
        TuneSpec(lams=(0.0, 1.0))
    with pytest.raises(ValueError, match="lam must be > 0"):
        fit_probe(x, human.train, tracker=tracking, model="zs", setup=ProbeSetup(), lam=0.0)
    with pytest.raises(ValueError, match="no models given"):
        build_generators({}, human, tracker=tracking, setups=setups(tune))
    assert len(runs(tracking)) == 0  # nothing was started


def test_cli_fit_logs_a_run(zero_shot_world, tracking, capsys):
    import json

    from modelrecovery.cli import main

    _, human, tmp = zero_shot_world
    code = main(
        [
            "--json",
            "fit",
            "--features",
            str(tmp / "zs.npy"),
            "--triplets",
            str(human.path),
            "--lam",
            "0.5",
            "--experiment",
            "test-study",
            "--n-concepts",
            "40",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    run = mlflow.get_run(result["run_id"])
    assert run.data.tags["stage"] == "fit" and run.data.params["lam"] == "0.5"
    assert 0.33 < result["test_accuracy"] <= 1.0
    _ = Triplets


def test_lambda_selection_ties_go_to_the_smallest_lambda():
    from modelrecovery.probe.crossval import select_lambda

    assert select_lambda([100.0, 1e-2, 1.0], [0.5, 0.5, 0.4]) == 1e-2
    assert select_lambda([1.0, 10.0], [0.1 + 0.2, 0.3]) == 1.0  # equal up to rounding
    assert select_lambda([1.0, 10.0], [0.3, 0.31]) == 10.0
    with pytest.raises(ValueError, match="one score per"):
        select_lambda([1.0], [])


def test_calibration_weighs_triplets_by_their_responses(tracking):
    from modelrecovery.data import Triplets

    rng = np.random.default_rng(3)
    z = rng.normal(size=(30, 5))
    ids = np.array([rng.choice(30, 3, replace=False) for _ in range(40)])
    counts = np.where(np.arange(40) < 10, 12, 2)  # 10 triplets answered 12 times, 30 twice
    rows = np.repeat(ids, counts, axis=0)
    repeated = Triplets(rows, rng.integers(0, 3, len(rows)), 30)
    tracker = NullTracker()
    result = calibrate(z, repeated, tracker=tracker, model="m", level="full", ceiling=0.6)
    (run,) = tracker.named("calibrate/m/full")
    assert run.metric("temperature") == result["temperature"]
    assert run.params["n_responses"] == len(repeated)
    probs = triplet_probabilities(torch.tensor(z), repeated, result["temperature"])
    assert probs.max(1).mean() == pytest.approx(0.6, abs=1e-6)  # over responses
    unique = Triplets(ids, np.zeros(40), 30)
    per_triplet = triplet_probabilities(torch.tensor(z), unique, result["temperature"]).max(1)
    assert abs(per_triplet.mean() - 0.6) > 1e-3  # not over unique triplets


def test_every_human_set_is_excluded_from_simulations(tmp_path):
    from helpers import write_things2023
    from modelrecovery.data import Triplets
    from modelrecovery.data.triplets import triplet_keys
    from modelrecovery.study.inputs import human_exclusion_keys, load_human_data

    rng = np.random.default_rng(0)

    def some(m):
        return Triplets(
            np.array([rng.choice(20, 3, replace=False) for _ in range(m)]), np.zeros(m), 20
        )

    train, set2, set1 = some(30), some(5), some(5)
    path = write_things2023(tmp_path / "t.tsv", train, set2)
    extra = pd.DataFrame(set1.ids + 1, columns=["image1", "image2", "image3"])
    extra = extra.assign(choice=1, subject_id=1, noise_ceiling=1)
    extra.to_csv(path, sep="\t", index=False, header=False, mode="a")
    human = load_human_data(path, n_concepts=20)
    keys = human_exclusion_keys(human)
    for t in (train, set2, set1):
        assert np.isin(triplet_keys(t.ids, 20), keys).all()


@pytest.mark.slow
def test_generators_built_side_by_side_are_children_of_the_run_and_match(
    zero_shot_world, tracking, tmp_path, monkeypatch
):
    x, human, tmp = zero_shot_world
    rng = np.random.default_rng(5)
    np.save(tmp / "other.npy", np.tanh(x @ rng.normal(size=(24, 9))).astype(np.float32))
    paths = {"zs": tmp / "zs.npy", "other": tmp / "other.npy"}
    tune = TuneSpec(lams=(1e-2, 1.0), n_folds=2)
    specs = setups(tune, "diagonal", "full")
    threads = torch.get_num_threads()
    with tracking.run("parent") as parent:
        side = build_generators(
            paths,
            human,
            tracker=tracking,
            setups=specs,
            parent=parent,
            progress=False,
            workers=2,
        )
    assert torch.get_num_threads() == threads  # restored
    gen_runs = runs(tracking, "generator")
    assert len(gen_runs) == 4
    assert set(gen_runs["tags.mlflow.parentRunId"]) == {parent.id}
    assert set(gen_runs["status"]) == {"FINISHED"}
    # the same generators one after another, in a fresh store: equal to rounding
    other = tmp_path / "second"
    other.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{other}/optuna.db")
    serial = build_generators(
        paths, human, tracker=MLflowTracker("test-study-serial"), setups=specs, progress=False
    )
    assert set(side) == set(serial)
    for key in side:
        assert side[key].lam == serial[key].lam
        np.testing.assert_allclose(side[key].z, serial[key].z, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="probe.workers"):
        build_generators(paths, human, tracker=tracking, setups=specs, workers=0)
