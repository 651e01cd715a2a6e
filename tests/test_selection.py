"""Model-discriminating triplet selection and the crowning rules (issue 14)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
from modelrecovery.recovery.executors import run_grid
from modelrecovery.recovery.grid import GridConfig, Level, jobs_of
from modelrecovery.recovery.job import paired_decision, simulate
from modelrecovery.recovery.selection import (
    batch_sizes,
    concentration,
    mean_pairwise_js,
    mutual_information,
    odd_one_out_probabilities,
    one_shot,
    sequential,
)
from modelrecovery.recovery.store import ResultsStore


def _two_models(n=60, d=6, changed=10, seed=0):
    """Two candidates equal on every concept but the first ``changed`` ones."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    other = z.copy()
    other[:changed] = rng.normal(size=(changed, d)) * 1.5
    return z, other, np.arange(changed)


def test_scores_agree_with_their_definitions():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), size=(2, 50))
    # two candidates: the mutual information is their Jensen-Shannon divergence
    np.testing.assert_allclose(mutual_information(p), mean_pairwise_js(p), atol=1e-12)
    same = np.repeat(p[:1], 4, axis=0)
    assert np.allclose(mutual_information(same), 0) and np.allclose(mean_pairwise_js(same), 0)
    many = rng.dirichlet(np.ones(3) * 0.2, size=(7, 200))
    mi = mutual_information(many)
    assert (mi >= 0).all() and (mi <= np.log(3) + 1e-12).all()
    # certain and opposite predictions: one response identifies the model (log 2 nats)
    sure = np.array([[[1.0, 0, 0]], [[0, 1.0, 0]]])
    np.testing.assert_allclose(mutual_information(sure), np.log(2))
    with pytest.raises(ValueError, match="candidates, triplets, 3"):
        mutual_information(np.ones((3, 3)))


def test_probabilities_follow_the_dot_product_model():
    import torch

    from modelrecovery.data.triplets import Triplets
    from modelrecovery.probe import triplet_probabilities

    rng = np.random.default_rng(2)
    z = rng.normal(size=(30, 4))
    ids = np.array([rng.choice(30, 3, replace=False) for _ in range(100)])
    ours = odd_one_out_probabilities(z, ids, 0.7)
    probe = triplet_probabilities(
        torch.as_tensor(z, dtype=torch.float64), Triplets(ids, np.zeros(100), 30), 0.7
    )
    np.testing.assert_allclose(ours, probe, atol=1e-12)


def test_discriminating_design_concentrates_on_the_concepts_where_candidates_differ():
    z, other, changed = _two_models()
    rng = np.random.default_rng(3)
    pool = np.array([rng.choice(60, 3, replace=False) for _ in range(3000)])
    probs = np.stack([odd_one_out_probabilities(m, pool, 1.0) for m in (z, other)])
    chosen = one_shot(probs, 300)
    assert concentration(pool, changed) < 0.5  # about 43% of random triplets touch them
    assert concentration(pool[chosen], changed) == 1.0
    # the same through the recovery job: a fold's designed training triplets
    features = {"a": z.astype(np.float32), "b": other.astype(np.float32)}
    config = GridConfig(
        generators=("a", "b"),
        candidates=("a", "b"),
        sizes=(150,),
        seeds=(0,),
        triplet_selection=("random", "discriminating"),
    )
    jobs = {j.selection: j for j in jobs_of(config) if j.generator == "a"}
    models = {name: (x, 1.0) for name, x in features.items()}
    for selection, lower, upper in (("random", 0.0, 0.7), ("discriminating", 0.95, 1.0)):
        data = simulate(jobs[selection], config, z, 1.0, None, models)
        for fd in data:
            share = concentration(fd.train.ids, changed)
            assert lower <= share <= upper, (selection, share)
            assert len(np.unique(fd.train.sorted_keys())) == len(fd.train) == 150


def _design_config(features, **overrides):
    settings = dict(
        sizes=(90,),
        seeds=(0,),
        triplet_selection=("random", "discriminating", "sequential"),
        selection_batches=3,
    )
    settings.update(overrides)
    return planted_grid_config(features, **settings)


def test_sequential_with_one_batch_is_the_one_shot_design():
    features = planted_recovery_world()
    config = _design_config(features, selection_batches=1)
    models = {m: (x, 0.3) for m, x in features.items()}
    by = {(j.selection, j.generator): j for j in jobs_of(config)}
    job = by[("sequential", "model1")]
    one = simulate(by[("discriminating", "model1")], config, features["model1"], 0.3, None, models)
    seq = simulate(job, config, features["model1"], 0.3, None, models, features)
    for a, b in zip(one, seq, strict=True):
        for role in ("train", "validation", "test"):
            np.testing.assert_array_equal(getattr(a, role).ids, getattr(b, role).ids)
            np.testing.assert_array_equal(getattr(a, role).odd, getattr(b, role).odd)
    # the pure design too: one batch asks the one-shot choice
    rng = np.random.default_rng(4)
    prior = rng.dirichlet(np.ones(3), size=(3, 400))
    pool = rng.integers(0, 50, size=(400, 3))
    design = sequential(pool, 40, 1, prior, lambda ids, b: np.zeros(len(ids), np.int8))
    np.testing.assert_array_equal(design.chosen, one_shot(prior, 40))
    assert batch_sizes(10, 3) == [4, 3, 3] and batch_sizes(2, 5) == [1, 1]


def test_designs_see_no_generator_and_are_reproducible():
    features = planted_recovery_world()
    config = _design_config(features)
    models = {m: (x, 0.3) for m, x in features.items()}
    by = {(j.selection, j.generator): j for j in jobs_of(config)}
    runs = {}
    for g in ("model0", "model2"):
        for selection in ("discriminating", "sequential"):
            runs[selection, g] = simulate(
                by[(selection, g)], config, features[g], 0.3, None, models, features
            )
    # one-shot: the same triplets whatever the generator (only its responses differ)
    for a, b in zip(
        runs["discriminating", "model0"], runs["discriminating", "model2"], strict=True
    ):
        np.testing.assert_array_equal(a.train.ids, b.train.ids)
    # sequential: the first batch (a third) is the one-shot design's first third; later
    # batches depend on the responses collected, hence on the generator
    for one, seq in zip(
        runs["discriminating", "model0"], runs["sequential", "model0"], strict=True
    ):
        np.testing.assert_array_equal(one.train.ids[:30], seq.train.ids[:30])
        assert len(np.unique(seq.train.sorted_keys())) == 90
    again = simulate(
        by[("sequential", "model0")], config, features["model0"], 0.3, None, models, features
    )
    for a, b in zip(runs["sequential", "model0"], again, strict=True):
        np.testing.assert_array_equal(a.train.ids, b.train.ids)
        np.testing.assert_array_equal(a.train.odd, b.train.odd)


def test_default_settings_keep_job_ids_keys_and_conditions():
    features = {"a": None, "b": None}
    extra = {"generators": {"full": {"a": "g1", "b": "g2"}}}
    # ids of before the selection axis existed (recorded on commit 49603d6)
    before = ["a-N60-s0-full-3bbc87364f", "b-N60-s0-full-9c9ecce713", "a-N60-s1-full-0854a64ca8"]
    base = planted_grid_config(features, extra=extra)
    assert [j.job_id for j in jobs_of(base)][:3] == before
    assert base.key() == "9ddc32b86760e1ae"
    assert base.condition_key(Level("full")) == "5dabf746079bef8c"
    explicit = planted_grid_config(
        features,
        extra=extra,
        triplet_selection=("random",),
        selection_criterion="accuracy",
        selection_pool=10,
        selection_batches=4,
        undecided_z=1.96,
    )
    assert [j.job_id for j in jobs_of(explicit)] == [j.job_id for j in jobs_of(base)]
    # settings that only designs use leave the random jobs alone, in a mixed grid too
    mixed = planted_grid_config(
        features,
        extra=extra,
        triplet_selection=("random", "discriminating", "sequential"),
        selection_pool=5,
    )
    ids = [j.job_id for j in jobs_of(mixed)]
    random_ids = [j.job_id for j in jobs_of(mixed) if j.selection == "random"]
    assert random_ids == [j.job_id for j in jobs_of(base)]
    assert len(set(ids)) == len(ids) == 3 * len(random_ids)
    assert "triplet_selection" not in base.condition(Level("full"))
    assert mixed.condition(Level("full"), "sequential")["selection_batches"] == 4
    # the designs' settings and the crowning rule change the ids they act on
    pool20 = dataclasses.replace(mixed, selection_pool=20)
    changed = {j.selection for j in jobs_of(pool20)} - {"random"}
    for sel in changed:
        assert {j.job_id for j in jobs_of(pool20) if j.selection == sel}.isdisjoint(
            j.job_id for j in jobs_of(mixed) if j.selection == sel
        )
    paired = planted_grid_config(features, extra=extra, selection_criterion="paired")
    assert {j.job_id for j in jobs_of(paired)}.isdisjoint(j.job_id for j in jobs_of(base))
    with pytest.raises(ValueError, match="triplet_selection"):
        planted_grid_config(features, triplet_selection=("clever",))
    with pytest.raises(ValueError, match="selection_criterion"):
        planted_grid_config(features, selection_criterion="bic")


def test_paired_decision_says_undecided_when_the_gap_is_within_its_error():
    rng = np.random.default_rng(5)
    scores = pd.DataFrame(
        {"candidate": ["a", "b", "c"], "best_lam": [1.0, 1.0, 1.0], "rank": [1.0, 2.0, 3.0]}
    )
    base = {(c, 1.0, f): rng.random(200) for c in "abc" for f in range(3)}
    clear = dict(base) | {("b", 1.0, f): base[("a", 1.0, f)] + 0.5 for f in range(3)}
    out = paired_decision(scores, clear, 1.96)
    assert out["decided"] and out["loglik_gap"] == pytest.approx(0.5)
    noisy = dict(base) | {
        ("b", 1.0, f): base[("a", 1.0, f)] + rng.normal(0, 1, 200) for f in range(3)
    }
    out = paired_decision(scores, noisy, 1.96)
    assert abs(out["loglik_gap"]) < 1.96 * out["loglik_gap_se"] and not out["decided"]


def _tables(store: ResultsStore) -> dict[str, pd.DataFrame]:
    out = {}
    for name, frame in store.load().items():
        keys = [c for c in ("job_id", "candidate", "lam", "fold") if c in frame.columns]
        drop = [c for c in frame.columns if "seconds" in c]
        out[name] = frame.drop(columns=drop).sort_values(keys).reset_index(drop=True)
    return out


def test_selection_grid_runs_counts_undecided_and_reproduces(tmp_path):
    from modelrecovery.analysis.selection import budget_to_reach, selection_table

    features = planted_recovery_world()
    config = _design_config(features, sizes=(60,), selection_criterion="paired")
    inputs = planted_grid_inputs(features, config.levels, temperature=0.3)
    first = ResultsStore(tmp_path / "a")
    run_grid(config, inputs, first, progress=False)
    tables = _tables(first)
    jobs = tables["jobs"]
    assert len(jobs) == 9 and set(jobs["triplet_selection"].fillna("random")) == {
        "random",
        "discriminating",
        "sequential",
    }
    assert (jobs["recovered"] == (jobs["decided"] & (jobs["winner"] == jobs["generator"]))).all()
    assert {"accuracy_winner", "loglik_gap", "loglik_gap_se"} <= set(jobs.columns)
    raw = first.load()["jobs"]
    designed = raw[raw["triplet_selection"].notna()]
    assert (designed["select_seconds"] > 0).all() and designed["pool_size"].eq(3 * 600).all()
    assert (raw.loc[raw["triplet_selection"] == "sequential", "refit_seconds"] > 0).all()
    table = selection_table(raw, first.load()["scores"])
    assert set(table["triplet_selection"]) == {"random", "discriminating", "sequential"}
    assert (table["n_jobs"] == 3).all() and "undecided_share" in table
    assert (table["accuracy"] <= table["accuracy_decided"].fillna(1) + 1e-12).all()
    assert len(budget_to_reach(table)) == 3
    from modelrecovery.analysis.selection import plot_selection

    figure = plot_selection(table)
    assert len(figure.axes) == 2 and len(figure.axes[0].get_lines()) >= 3
    second = ResultsStore(tmp_path / "b")
    run_grid(config, inputs, second, progress=False)
    for name, frame in _tables(second).items():
        pd.testing.assert_frame_equal(frame, tables[name])


def test_designs_need_every_candidates_probe(tmp_path):
    features = planted_recovery_world()
    config = _design_config(features, generators=("model0",))
    inputs = planted_grid_inputs({"model0": features["model0"]}, config.levels)
    inputs = dataclasses.replace(inputs, candidate_features=features)
    with pytest.raises(ValueError, match="every candidate's human-fitted probe"):
        run_grid(config, inputs, ResultsStore(tmp_path / "s"), progress=False)


@pytest.mark.slow
@pytest.mark.service
def test_selection_grid_identical_across_executors(tmp_path):
    features = planted_recovery_world()
    config = _design_config(features, sizes=(60,), selection_criterion="paired")
    inputs = planted_grid_inputs(features, config.levels, temperature=0.3)
    local, dask = ResultsStore(tmp_path / "local"), ResultsStore(tmp_path / "dask")
    run_grid(config, inputs, local, progress=False)
    run_grid(config, inputs, dask, executor="dask", n_workers=2, progress=False)
    a, b = _tables(local), _tables(dask)
    for name in ("jobs", "scores", "fits"):
        pd.testing.assert_frame_equal(a[name], b[name])
