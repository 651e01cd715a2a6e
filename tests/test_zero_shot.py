"""The NumPy zero-shot scores (the command line's evaluate, without torch) equal the torch
probe's: accuracy with shared tie credit, NLL, and the best temperature of a zero-shot fit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import planted_triplets
from modelrecovery.data import Triplets
from modelrecovery.probe import accuracy_and_nll, fit_probe
from modelrecovery.probe.zero_shot import (
    best_scale,
    mean_nll,
    tie_accuracy,
    triplet_logits,
    zero_shot_scores,
)


def test_accuracy_and_nll_equal_the_torch_probe_with_and_without_ties():
    rng = np.random.default_rng(0)
    for x in (rng.normal(size=(30, 5)), rng.integers(0, 2, size=(30, 2)).astype(float)):
        ids = np.array([rng.choice(30, 3, replace=False) for _ in range(500)])
        triplets = Triplets(ids, rng.integers(0, 3, 500), 30)
        logits = triplet_logits(x, triplets.ids)
        expected = accuracy_and_nll(torch.tensor(x, dtype=torch.float64), triplets)
        assert tie_accuracy(logits, triplets.odd) == expected["accuracy"]  # bit for bit
        assert mean_nll(logits, triplets.odd) == pytest.approx(expected["nll"], rel=1e-12)


def test_best_temperature_is_the_zero_shot_fit_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5))
    triplets = planted_triplets(x, 2000, seed=2, temperature=0.7)
    scores = zero_shot_scores(x, triplets.ids, triplets.odd)
    fitted = fit_probe(x, triplets, family="zero_shot", dtype=torch.float64)
    t_fit = float(torch.exp(-fitted.theta[0]))
    assert scores["best_temperature"] == pytest.approx(t_fit, rel=1e-4)
    nll_fit = fitted.evaluate(x, triplets)["nll"]
    assert scores["zero_shot_nll_at_best_temperature"] <= nll_fit + 1e-12
    # brute force: no scale on a fine grid does better
    logits = triplet_logits(x, triplets.ids)
    a = best_scale(logits, triplets.odd)
    grid = a * np.linspace(0.9, 1.1, 201)
    assert (
        min(mean_nll(g * logits, triplets.odd) for g in grid)
        >= mean_nll(a * logits, triplets.odd) - 1e-12
    )


def test_degenerate_and_anti_predictive_features_are_named():
    rng = np.random.default_rng(3)
    ids = np.array([rng.choice(12, 3, replace=False) for _ in range(200)])
    zero = zero_shot_scores(np.zeros((12, 4)), ids, rng.integers(0, 3, 200), name="z.npy")
    assert zero["zero_shot_accuracy"] == 1 / 3 and zero["best_temperature"] == 1.0
    assert zero["warning"].startswith("z.npy: degenerate features")
    x = rng.normal(size=(12, 4))
    worst = (-triplet_logits(x, ids)).argmax(1)  # always the least likely odd one
    anti = zero_shot_scores(x, ids, worst, name="a.npy")
    assert anti["best_temperature"] == np.inf and "no better than chance" in anti["warning"]


def test_evaluate_imports_no_torch(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "x.npy", rng.normal(size=(20, 3)))
    lines = ["i,j,k,odd"] + [
        ",".join(map(str, [*rng.choice(20, 3, replace=False), rng.integers(0, 3)]))
        for _ in range(100)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    probe = (
        "import sys\n"
        "from modelrecovery.cli import main\n"
        "code = main(['evaluate', '--features', 'x.npy', '--triplets', 't.csv'])\n"
        "print(code, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 False", proc.stderr
