"""The command line: noise-ceiling and evaluate on real and written files, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import planted_triplets
from modelrecovery.cli import main
from modelrecovery.data.ceiling import noise_ceiling
from modelrecovery.data.loaders import save_csv
from modelrecovery.probe import accuracy_and_nll


def run_json(capsys, argv):
    code = main(["--json", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_noise_ceiling_on_real_things_2020_file(capsys, things_dir):
    result = run_json(
        capsys,
        [
            "noise-ceiling",
            str(things_dir / "triplets_noiseceiling_2020.tsv"),
            "--format",
            "things2020",
            "--sortindex",
            str(things_dir / "sortindex.txt"),
        ],
    )
    assert result["n_responses"] == 20_000
    assert result["n_repeated_triplets"] == 1_000
    assert 0.6 < result["noise_ceiling"] < 0.75


def test_noise_ceiling_matches_library_on_written_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = rng.choice(12, size=(30, 3), replace=True)
    base = np.array([rng.choice(12, 3, replace=False) for _ in range(30)])
    ids = np.repeat(base, 5, axis=0)
    for row in ids:
        rng.shuffle(row)
    from modelrecovery.data import Triplets

    triplets = Triplets(ids, rng.integers(0, 3, len(ids)), 12)
    path = save_csv(triplets, tmp_path / "t.csv")
    result = run_json(capsys, ["noise-ceiling", str(path)])
    assert result["noise_ceiling"] == pytest.approx(noise_ceiling(triplets))


def test_evaluate_prints_zero_shot_scores(tmp_path, capsys):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 5))
    triplets = planted_triplets(features, 2_000, seed=2)
    np.save(tmp_path / "f.npy", features.astype(np.float32))
    path = save_csv(triplets, tmp_path / "t.csv")
    result = run_json(
        capsys, ["evaluate", "--features", str(tmp_path / "f.npy"), "--triplets", str(path)]
    )
    expected = accuracy_and_nll(
        torch.tensor(features.astype(np.float32), dtype=torch.float64), triplets
    )
    assert result["n_triplets"] == 2_000 and result["feature_dim"] == 5
    assert result["zero_shot_accuracy"] == pytest.approx(expected["accuracy"])
    assert result["zero_shot_nll"] == pytest.approx(expected["nll"], rel=1e-6)
    # data were generated at T = 1, so the best temperature is close to 1
    assert 0.7 < result["best_temperature"] < 1.4
    assert result["zero_shot_nll_at_best_temperature"] <= result["zero_shot_nll"] + 1e-9


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("i,j,k,odd\n0,1,2,0\n0,0,2,1\n")
    assert main(["noise-ceiling", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 3" in err and "Traceback" not in err
    np.save(tmp_path / "f.npy", np.zeros((3, 2), dtype=np.float32))
    good = tmp_path / "good.csv"
    good.write_text("i,j,k,odd\n0,1,2,0\n0,3,2,1\n")
    assert main(["evaluate", "--features", str(tmp_path / "f.npy"), "--triplets", str(good)]) == 2
    err = capsys.readouterr().err  # the triplet line naming concept 3, and the features' rows
    assert "good.csv: line 3: column 'j' = 3" in err and "f.npy have 3 rows" in err
