"""Calibration ``loo_matched`` (issue 25): the exact expected leave-one-out noise ceiling of a
model against brute-force enumeration and a Monte Carlo simulation of the same repeated
design, its monotonicity in T, the root, the unreachable targets, the ``calibrate``
command on a feature file, the study key and the report's table, and the real THINGS 2020
repeated set."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import THINGS_DIR
from helpers import random_triplet_ids
from modelrecovery.cli import main
from modelrecovery.data import Triplets
from modelrecovery.data.ceiling import (
    count_vectors,
    expected_loo_agreement,
    expected_noise_ceiling,
    noise_ceiling,
)
from modelrecovery.probe import triplet_probabilities
from modelrecovery.probe.calibrate import RepeatedDesign, calibrate_temperature


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    x = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x / x.sum(axis=1, keepdims=True)


def sample_design(z: np.ndarray, n_unique: int, k_range: tuple[int, int], seed: int) -> Triplets:
    """A repeated design: ``n_unique`` triplets, each answered k in ``k_range`` times, each
    response in a random display order, sampled from the dot-product model on ``z``."""
    rng = np.random.default_rng(seed)
    base = random_triplet_ids(z.shape[0], n_unique, rng)
    ks = rng.integers(k_range[0], k_range[1] + 1, size=n_unique)
    ids = np.repeat(base, ks, axis=0)
    ids = np.take_along_axis(ids, rng.permuted(np.tile([0, 1, 2], (len(ids), 1)), axis=1), 1)
    probs = triplet_probabilities(
        torch.as_tensor(z, dtype=torch.float64), Triplets(ids, np.zeros(len(ids)), z.shape[0])
    )
    odd = np.minimum((rng.random(len(ids))[:, None] > np.cumsum(probs, axis=1)).sum(1), 2)
    return Triplets(ids.astype(np.int64), odd, z.shape[0])


# --- the exact expectation ---


def test_count_vectors_are_every_composition_of_k():
    for k in range(6):
        got = {tuple(row) for row in count_vectors(k)}
        want = {c for c in itertools.product(range(k + 1), repeat=3) if sum(c) == k}
        assert got == want and len(count_vectors(k)) == len(want)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_expectation_equals_brute_force_over_every_response_sequence(k):
    """Every one of the 3^k response sequences of one triplet, its probability and the
    human ceiling of those responses as ``noise_ceiling`` computes it (display orders
    shuffled, so the pooling by concept is exercised too)."""
    rng = np.random.default_rng(k)
    rows = [rng.dirichlet(np.ones(3)), np.array([0.5, 0.5, 0.0]), np.array([1.0, 0.0, 0.0])]
    for p in rows:
        brute = 0.0
        for seq in itertools.product(range(3), repeat=k):
            order = np.array([rng.permutation(3) for _ in seq])  # order[r]: displayed concepts
            ids = np.array([[10, 20, 30]])[0][order]
            odd = np.array([int(np.argmax(o == s)) for o, s in zip(order, seq, strict=True)])
            human = noise_ceiling(Triplets(ids, odd, 31))
            brute += np.prod(p[list(seq)]) * human
        exact = expected_loo_agreement(p[None], np.array([k]))[0]
        assert exact == pytest.approx(brute, abs=1e-12)


def test_two_and_three_responses_give_the_collision_probability():
    """k = 2: the left-out response agrees with the other one, P = sum p^2; k = 3 gives the
    same (worked out by hand: 3 of a kind earns 1, 2 + 1 earns 1/3, 1 + 1 + 1 earns 0)."""
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=20)
    for k in (2, 3):
        got = expected_loo_agreement(p, np.full(20, k))
        np.testing.assert_allclose(got, (p**2).sum(axis=1), atol=1e-13)


def test_single_responses_are_left_out_as_in_the_human_ceiling():
    p = np.full((3, 3), 1 / 3)
    got = expected_loo_agreement(p, np.array([1, 2, 7]))
    assert np.isnan(got[0]) and got[1:] == pytest.approx([1 / 3, 1 / 3], abs=1e-12)
    assert expected_noise_ceiling(p, np.array([1, 2, 7])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no triplet has two or more responses"):
        expected_noise_ceiling(p[:1], np.array([1]))


def test_expectation_matches_a_monte_carlo_of_the_same_repeated_design():
    """Many datasets of the same design (same triplets, same numbers of responses, 2-25
    each) simulated from the model, each scored by ``noise_ceiling`` as human data are:
    their mean is the exact expectation within 4 standard errors."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(40, 5))
    design = sample_design(z, 60, (2, 25), seed=1)
    exact = RepeatedDesign(z, design).expected_loo(1.0)
    probs = triplet_probabilities(torch.as_tensor(z, dtype=torch.float64), design)
    cumulative = np.cumsum(probs, axis=1)
    values = []
    for _ in range(400):
        odd = np.minimum((rng.random(len(design))[:, None] > cumulative).sum(1), 2)
        values.append(noise_ceiling(Triplets(design.ids, odd, design.n_concepts)))
    values = np.array(values)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - exact) < 4 * se
    assert se < 0.003  # the check has teeth: the design's ceiling is known to ~0.3 points


# --- monotone in T, the root, the unreachable targets ---


def test_expected_loo_falls_with_temperature_on_a_grid():
    """Why the root is unique: softmax(s / T) at a larger T is majorised by the one at a
    smaller T (its ordered ratios exp((s_i - s_j) / T) shrink toward 1), and the expected
    LOO agreement of a triplet is a Schur-convex function of p (checked here on random
    similarities, ties and 2-30 responses): it never rises with T, from 1 (T -> 0, no
    ties) to 1/3 (T -> infinity, uniform: the left-out answer is independent of the rest)."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(1000, 3)) * rng.exponential(size=(1000, 1)) * 3
    s[:300, 1] = s[:300, 0]  # tied similarities
    k = rng.integers(2, 31, size=1000)
    previous = None
    for t in np.exp(np.linspace(-6, 6, 80)):
        value = expected_loo_agreement(softmax_rows(s / t), k)
        if previous is not None:
            assert (value <= previous + 1e-12).all()
        previous = value
    untied = np.arange(300, 1000)
    assert expected_loo_agreement(softmax_rows(s / 1e-9), k)[untied] == pytest.approx(1.0)
    assert expected_loo_agreement(softmax_rows(s / 1e9), k) == pytest.approx(1 / 3, abs=1e-7)


def test_loo_matched_root_reproduces_the_target_and_needs_a_lower_t():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 5))
    repeated = sample_design(z, 80, (3, 20), seed=2)
    target = noise_ceiling(repeated)
    t_loo, achieved = calibrate_temperature(z, repeated, target, calibration="loo_matched")
    t_study, _ = calibrate_temperature(z, repeated, target, calibration="study")
    design = RepeatedDesign(z, repeated)
    assert achieved == pytest.approx(target, abs=1e-9)
    assert design.expected_loo(t_loo) == pytest.approx(target, abs=1e-9)
    # the study's rule leaves the model's own ceiling below the humans': noisier data
    assert design.expected_loo(t_study) < target - 0.005
    assert t_loo < t_study
    # the human ceiling measured on the sampled data is near the model at its true T = 1
    assert t_loo == pytest.approx(1.0, rel=0.35)


def test_unreachable_targets_are_one_line_errors():
    """Two clusters of identical concepts: a triplet within a cluster is a three-way tie
    for ever (LOO 1/3), a mixed one becomes certain as T -> 0 (LOO 1), so with half of
    each the model's expected LOO ceiling stays below 2/3 at every T."""
    z = np.repeat(np.array([[2.0, 0.0], [0.0, 2.0]]), 6, axis=0)
    within = np.array([[0, 1, 2], [6, 7, 8]])
    mixed = np.array([[0, 1, 6], [6, 7, 0]])
    ids = np.repeat(np.concatenate([within, mixed]), 5, axis=0)
    repeated = Triplets(ids, np.zeros(len(ids), dtype=np.int64), 12)
    limit = RepeatedDesign(z, repeated).expected_loo(1e-6)
    assert limit == pytest.approx((1 / 3 + 1.0) / 2)
    with pytest.raises(ValueError, match="cannot reach the ceiling") as err:
        calibrate_temperature(z, repeated, 0.8, calibration="loo_matched")
    assert "\n" not in str(err.value) and "expected LOO ceiling" in str(err.value)
    with pytest.raises(ValueError, match=r"ceiling must lie in \(1/3, 1\)"):
        calibrate_temperature(z, repeated, 0.3, calibration="loo_matched")
    with pytest.raises(ValueError, match="calibration must be one of study, loo_matched"):
        calibrate_temperature(z, repeated, 0.5, calibration="loo")


# --- the command, the study key, the report ---


def write_repeated_csv(path, triplets: Triplets) -> None:
    rows = "\n".join(
        f"{i},{j},{k},{o}" for (i, j, k), o in zip(triplets.ids, triplets.odd, strict=True)
    )
    path.write_text("i,j,k,odd\n" + rows + "\n")


def run_json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(["--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_calibrate_command_on_a_feature_file(study_home, capsys):
    """``calibrate --features F.npy --triplets REPEATED.csv`` under both rules: each hits
    its statistic, loo_matched at a lower T, and the plain output's first line is T."""
    rng = np.random.default_rng(11)
    z = rng.normal(size=(30, 6))
    np.save(study_home / "model.npy", z.astype(np.float32))
    repeated = sample_design(z, 50, (10, 20), seed=4)
    write_repeated_csv(study_home / "repeated.csv", repeated)
    base = ["calibrate", "--features", "model.npy", "--triplets", "repeated.csv"]
    study = run_json(capsys, [*base, "--calibration", "study"])
    loo = run_json(capsys, [*base, "--calibration", "loo_matched"])
    human = noise_ceiling(repeated)
    assert study["human_loo_ceiling"] == loo["human_loo_ceiling"] == pytest.approx(human)
    assert study["expected_accuracy"] == pytest.approx(human, abs=1e-6)
    assert loo["expected_loo_ceiling"] == pytest.approx(human, abs=1e-6)
    assert study["expected_loo_ceiling"] < human < loo["expected_accuracy"]
    assert 0 < loo["temperature"] < study["temperature"]
    n_unique = len(np.unique(repeated.sorted_keys()))
    assert (study["n_responses"], study["n_triplets"]) == (len(repeated), n_unique)
    assert main([*base, "--calibration", "loo_matched"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "temperature"
    assert float(first[1]) == pytest.approx(loo["temperature"], rel=1e-5)


def test_calibrate_command_bad_input_is_one_line(study_home, capsys):
    np.save(study_home / "model.npy", np.ones((5, 2), dtype=np.float32))
    (study_home / "single.csv").write_text("i,j,k,odd\n0,1,2,0\n1,2,3,1\n")
    cases = [
        (["--features", "model.npy", "--run-id", "abc"], "give exactly one"),
        ([], "give exactly one"),
        (["--features", "model.npy", "--calibration", "loo"], "invalid choice"),
        (["--features", "model.npy"], "single.csv: no triplet has two or more responses"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        code = main(["calibrate", "--triplets", "single.csv", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_calibration_enters_keys_and_conditions_only_away_from_study():
    from modelrecovery.recovery.grid import GridConfig, jobs_of
    from modelrecovery.study.fitting import ProbeSetup
    from modelrecovery.study.generators import GeneratorSetup
    from modelrecovery.study.spec import Level, ProbeSpec, TuneSpec

    grid = GridConfig(("a", "b"), ("a", "b"), (40,), (0,))
    loo = GridConfig(("a", "b"), ("a", "b"), (40,), (0,), calibration="loo_matched")
    assert "calibration" not in grid.condition(Level("full"))
    assert loo.condition(Level("full"))["calibration"] == "loo_matched"
    assert grid.key() != loo.key()
    assert grid.condition_key(Level("full")) != loo.condition_key(Level("full"))
    ids = {job.job_id for job in jobs_of(grid)} & {job.job_id for job in jobs_of(loo)}
    assert not ids
    with pytest.raises(ValueError, match="calibration must be one of"):
        GridConfig(("a",), ("a",), (40,), (0,), calibration="loo")
    probe = ProbeSetup.of(Level("full"), ProbeSpec(), TuneSpec())
    setup = GeneratorSetup(probe)
    assert "calibration" not in setup.key_params("m")
    other = GeneratorSetup(probe, calibration="loo_matched")
    assert other.key_params("m")["calibration"] == "loo_matched"


def test_spec_takes_probe_calibration_and_refuses_other_values():
    from modelrecovery.study.pipeline import grid_config
    from modelrecovery.study.spec import load_spec

    spec = load_spec("default", ["probe.calibration=loo_matched"])
    assert spec.probe.calibration == "loo_matched"
    assert grid_config(spec, ["a", "b"]).calibration == "loo_matched"
    assert load_spec("default").probe.calibration == "study"
    with pytest.raises(ValueError, match="probe.calibration") as err:
        load_spec("default", ["probe.calibration=loo"])
    assert "\n" not in str(err.value) and "loo_matched" in str(err.value)


def test_report_shows_the_calibration_of_every_generator():
    from modelrecovery.analysis.report import prepare_inputs, section_calibration

    jobs = pd.DataFrame(
        {
            "job_id": ["j1"],
            "generator": ["a"],
            "winner": ["a"],
            "n_train": [40],
            "seed": [0],
            "level": ["full"],
            "family": ["full"],
            "correct": [1.0],
        }
    )
    scores = pd.DataFrame({"job_id": ["j1"], "candidate": ["a"], "score": [0.5]})
    models = pd.DataFrame(
        {
            "model": ["b", "a"],
            "level": ["full", "full"],
            "family": ["full", "full"],
            "temperature": [0.5, 0.7],
            "calibration": ["study", "study"],
            "expected_accuracy": [0.64, 0.64],
            "expected_loo_ceiling": [0.62, 0.63],
            "human_loo_ceiling": [0.64, 0.64],
        }
    )
    section = section_calibration(prepare_inputs(jobs, scores, models))
    table = section.tables["calibration"]
    assert list(table["model"]) == ["a", "b"]
    np.testing.assert_allclose(table["loo_gap"], [-0.01, -0.02])
    old = models.drop(columns=["expected_loo_ceiling"])
    assert section_calibration(prepare_inputs(jobs, scores, old)) is None


# --- the real THINGS 2020 repeated set ---

NOISE_CEILING_2020 = THINGS_DIR / "triplets_noiseceiling_2020.tsv"


@pytest.mark.skipif(
    not NOISE_CEILING_2020.exists(), reason=f"{NOISE_CEILING_2020} not found (public THINGS file)"
)
def test_things_2020_repeated_set_and_spose49_under_both_rules():
    """The human LOO ceiling of the 2020 repeated set (1000 triplets, 14-25 responses) is
    0.6439; SPoSE-49 as a zero-shot model calibrated the study's way has an expected LOO
    ceiling about 1.7 points below it, and loo_matched needs a lower T."""
    from modelrecovery.data.loaders import load_triplets
    from modelrecovery.features.io import load_features

    repeated = load_triplets(
        NOISE_CEILING_2020, format="things2020", sortindex=THINGS_DIR / "sortindex.txt"
    )
    human = noise_ceiling(repeated)
    assert human == pytest.approx(0.6439, abs=5e-5)
    z = load_features(THINGS_DIR / "spose_embedding_49d_sorted.txt", n_concepts=1854)
    design = RepeatedDesign(z, repeated)
    t_study, _ = calibrate_temperature(z, repeated, human, calibration="study")
    t_loo, _ = calibrate_temperature(z, repeated, human, calibration="loo_matched")
    assert design.expected_loo(t_loo) == pytest.approx(human, abs=1e-8)
    assert human - design.expected_loo(t_study) == pytest.approx(0.017, abs=0.002)
    assert t_loo < t_study
