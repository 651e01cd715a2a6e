"""``modelrecovery check``: the study's diagnosis before it runs (zero-shot fits and their
flags, near-duplicates, the noise ceiling, the grid's jobs and time), on a small files
study with planted models; and the uninformative rule at its boundaries."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import planted_triplets, repeated_triplets, write_things2023
from modelrecovery.study.diagnostics import (
    NLL_TOLERANCE,
    SCALE_RANGE,
    diagnose,
    format_diagnosis,
    scale_problem,
    uninformative_reason,
)

N_CONCEPTS = 30
LOG3 = 1.0986122886681098  # log 3


def planted_study(folder: Path) -> Path:
    """A files study of four models: ``human`` (the embedding that generated the human
    triplets), ``copy`` (it plus tiny noise), ``noise`` (unrelated random features) and
    ``scaled`` (another informative read-out of the embedding, times 1e6)."""
    rng = np.random.default_rng(0)
    human = np.abs(rng.normal(size=(N_CONCEPTS, 5)))
    readout = np.tanh(human @ rng.normal(size=(5, 9))) + 0.3 * rng.normal(size=(N_CONCEPTS, 9))
    models = {
        "human": human,
        "copy": human + 1e-3 * rng.normal(size=human.shape),
        "noise": rng.normal(size=(N_CONCEPTS, 8)),
        "scaled": 1e6 * readout,
    }
    features = folder / "features"
    features.mkdir()
    for name, x in models.items():
        np.save(features / f"{name}.npy", x.astype(np.float32))
    write_things2023(
        folder / "human.tsv",
        planted_triplets(human, 600, seed=1, temperature=0.3),
        repeated_triplets(human, 40, 5, seed=2, temperature=0.3),
    )
    config = {
        "study": "check-study",
        "data": {
            "kind": "files",
            "triplets": str(folder / "human.tsv"),
            "n_concepts": N_CONCEPTS,
            "features_dir": str(features),
        },
        "models": {name: f"{name}.npy" for name in models},
        "grid": {
            "sizes": [40, 64],  # the folds hold N = 68 besides the human triplets
            "seeds": [0, 1],
            "levels": [{"family": "zero_shot"}, {"family": "diagonal", "sizes": [40]}],
            "lams": [0.1, 1.0],
            "n_folds": 2,
        },
        "executor": {"kind": "inprocess"},
        "store": str(folder / "store"),
        "report": False,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The planted study's spec, inputs and diagnosis (computed once)."""
    from modelrecovery.study.inputs import study_inputs
    from modelrecovery.study.spec import load_spec

    spec = load_spec(str(planted_study(tmp_path_factory.mktemp("study"))), [])
    inputs = study_inputs(spec, progress=False)
    return spec, inputs, diagnose(spec, inputs)


def test_planted_models_are_flagged(study):
    """The generating model is informative and well scaled; pure noise is uninformative;
    the copy and the generating model are a near-duplicate pair; the model times 1e6 is
    badly scaled (a* far below the range) and still informative."""
    _, inputs, d = study
    by_name = {m.name: m for m in d.models}
    assert sorted(by_name) == ["copy", "human", "noise", "scaled"]
    assert {m: by_name[m].feature_dim for m in by_name} == {
        "human": 5,
        "copy": 5,
        "noise": 8,
        "scaled": 9,
    }
    human = by_name["human"]
    assert human.uninformative is None and human.badly_scaled is None
    assert human.zero_shot_accuracy > 0.5 and human.zero_shot_nll < LOG3 - 0.05
    assert SCALE_RANGE[0] <= human.best_scale <= SCALE_RANGE[1]
    assert d.n_test == len(inputs.human.test) == 200
    assert d.uninformative == ["noise"]
    assert d.badly_scaled == ["scaled"]
    scaled = by_name["scaled"]
    assert scaled.uninformative is None and scaled.zero_shot_accuracy > 0.45
    assert scaled.best_scale < SCALE_RANGE[0] and "too large" in scaled.badly_scaled
    assert [sorted((a, b)) for a, b, _ in d.duplicates] == [["copy", "human"]]
    assert d.duplicates[0][2] > 0.99
    assert d.flags()["uninformative"] == ["noise"] and d.flags()["badly_scaled"] == ["scaled"]
    assert len(d.flags()["near_duplicates"]) == 1


def test_zero_shot_scores_fit_the_scale_on_training_triplets(study):
    """The zero-shot fit is W = a* I with a* the best scale on the training triplets
    (:func:`best_scale` of the raw features), scored on the held-out triplets."""
    from modelrecovery.probe.zero_shot import best_scale, mean_nll, tie_accuracy, triplet_logits

    _, inputs, d = study
    human = inputs.human
    x = np.load(Path(inputs.feature_paths["human"])).astype(np.float64)
    scale = best_scale(triplet_logits(x, human.train.ids), human.train.odd.astype(np.int64))
    logits = scale * triplet_logits(x, human.test.ids)
    odd = human.test.odd.astype(np.int64)
    model = next(m for m in d.models if m.name == "human")
    assert model.best_scale == pytest.approx(scale, rel=1e-6)
    assert model.zero_shot_accuracy == pytest.approx(tie_accuracy(logits, odd))
    assert model.zero_shot_nll == pytest.approx(mean_nll(logits, odd), rel=1e-9)


def test_ceiling_and_jobs_match_the_library(study):
    """The noise ceiling is :func:`noise_ceiling` of the held-out set (40 triplets, 5
    responses each); the job count is the level grids' (zero-shot: 2 sizes x 2 seeds,
    diagonal: 1 size x 2 seeds, 4 generators), the fits candidates x λ x folds per job."""
    from modelrecovery.data.ceiling import noise_ceiling
    from modelrecovery.recovery.grid import jobs_of
    from modelrecovery.study.pipeline import grid_config, level_grids

    spec, inputs, d = study
    c = d.ceiling
    assert c.ceiling == noise_ceiling(inputs.human.test)
    assert (c.n_responses, c.n_triplets, c.n_repeated) == (200, 40, 40)
    assert (c.responses_min, c.responses_median, c.responses_max) == (5, 5.0, 5)
    grids = level_grids(grid_config(spec, list(inputs.feature_paths)), spec)
    assert d.jobs == sum(len(jobs_of(g)) for g in grids) == 4 * (2 * 2 + 1 * 2)
    # per job: 4 candidates x 2 folds x λ values (zero-shot: 1, diagonal: 2)
    assert d.fits == 16 * 4 * 2 * 1 + 8 * 4 * 2 * 2
    assert d.workers == 1 and 0 < d.estimated_seconds < 600
    assert [t.level for t in d.timings] == ["zero_shot", "diagonal"]
    # the widest unflagged candidate (not "scaled", 9 dimensions), at the level's largest
    # N and half of it
    assert [t.sizes for t in d.timings] == [(32, 64), (20, 40)]
    assert {t.model for t in d.timings} <= {"copy", "human"}
    for t in d.timings:
        assert t.fixed >= 0 and t.per_triplet >= 0 and all(s > 0 for s in t.seconds)
    lines = format_diagnosis(d)
    assert any(line.startswith(f"noise ceiling {c.ceiling:.3f}") for line in lines)
    assert any(f"grid: {d.jobs} jobs" in line and "about" in line for line in lines)
    untimed = diagnose(spec, inputs, timing=False)  # what recover may call: no timed fits
    assert untimed.jobs == d.jobs and math.isnan(untimed.estimated_seconds)
    assert untimed.models == d.models and not untimed.timings


def test_check_command_prints_the_flags_and_tracks_nothing(tmp_path, monkeypatch, capsys):
    """``modelrecovery check`` exits 0, prints the flags in words and its summary, and
    creates no MLflow run, database or tracking folder (only the study's own files)."""
    from modelrecovery.cli import main

    for variable in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELRECOVERY_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    path = planted_study(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    mlflow_loaded = "mlflow" in sys.modules
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "uninformative: noise carries no information about these triplets" in out
    assert "badly scaled: scaled:" in out
    assert "near-duplicates: copy and human" in out
    assert "noise ceiling" in out and "jobs" in out
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    created = [p for p in after if p not in before and p.parts[0] != "data"]
    assert created == [], created
    assert not (tmp_path / "tracking").exists() and not (tmp_path / "mlruns").exists()
    if not mlflow_loaded:  # the command never imports MLflow
        assert "mlflow" not in sys.modules


def test_uninformative_reason_at_its_boundaries():
    """Hand-computed boundaries. Accuracy: n = 200 responses give SE = sqrt((1/3)(2/3) /
    200) = 1/30, so with z = 2 the boundary is 1/3 + 2/30 = 0.4 (within: uninformative);
    n = 900 and z = 1.96: 1/3 + 1.96 sqrt(2) / 90 = 0.3641317620. NLL: flagged from
    log 3 - 1e-3 = 1.0976122887 up, whatever the accuracy."""
    assert uninformative_reason(0.4 - 1e-12, 1.0, 200, z=2.0) is not None
    assert uninformative_reason(0.4 + 1e-12, 1.0, 200, z=2.0) is None
    assert "within 2 standard errors (0.033)" in uninformative_reason(0.39, 1.0, 200, z=2.0)
    assert uninformative_reason(0.3641317620 - 1e-9, 1.0, 900) is not None
    assert uninformative_reason(0.3641317620 + 1e-9, 1.0, 900) is None
    assert NLL_TOLERANCE == 1e-3
    boundary = 1.0976122886681098  # log 3 - 1e-3
    assert uninformative_reason(0.6, boundary, 900) is not None  # exactly at: flagged
    assert "NLL" in uninformative_reason(0.6, boundary + 1e-9, 900)
    assert uninformative_reason(0.6, boundary - 1e-9, 900) is None
    assert uninformative_reason(0.6, math.nan, 900) is None  # no NLL: accuracy decides
    assert uninformative_reason(0.34, math.nan, 900) is not None
    assert uninformative_reason(math.nan, 1.0, 900) is None
    assert uninformative_reason(0.34, 1.0, 0) is None


def test_scale_problem_criterion():
    """Badly scaled: a* outside [1e-4, 1e2] (a small a* only for informative models), or
    squared norms beyond the fit dtype's largest number."""
    assert scale_problem(1.0, 1.0) is None
    assert scale_problem(SCALE_RANGE[1], 0.1) is None
    assert scale_problem(SCALE_RANGE[0], 100.0) is None
    assert "too small" in scale_problem(1e3, 0.03)
    assert "too large" in scale_problem(1e-5, 300.0)
    assert scale_problem(1e-5, 300.0, informative=False) is None
    assert "overflows float32" in scale_problem(1e-40, 1e20)
    assert scale_problem(1e-40, 1e20, dtype="float64", informative=False) is None
    assert scale_problem(0.0, 1.0) is None and scale_problem(math.inf, 1.0) is None
