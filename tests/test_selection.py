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
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.recovery.triplet_design import (
    batch_sizes,
    concentration,
    mean_pairwise_js,
    mutual_information,
    odd_one_out_probabilities,
    one_shot,
    sequential,
)


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
    from modelrecovery.analysis.design_and_crowning import budget_to_reach, selection_table

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
    from modelrecovery.analysis.design_and_crowning import plot_selection

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


HUMAN_COLUMNS = ("human_accuracy", "human_nll", "generator_human_accuracy", "winner_human_accuracy")


def _aligned(store: ResultsStore) -> dict[str, pd.DataFrame]:
    """The store's tables without job ids and timings, in a job-id-free order."""
    out = {}
    for name, frame in store.load().items():
        drop = [c for c in frame.columns if "seconds" in c or c == "job_id"]
        keys = ["generator", "condition_key", "candidate", "lam", "fold"]
        keys = [c for c in keys if c in frame.columns]
        out[name] = frame.drop(columns=drop).sort_values(keys).reset_index(drop=True)
    return out


def test_human_heldout_scores_every_fit_on_human_triplets_and_changes_no_winner(tmp_path):
    from modelrecovery.analysis.design_and_crowning import plot_selection, selection_table

    features = planted_recovery_world()
    rng = np.random.default_rng(6)
    # wider than a fold's 42 training concepts: its fits take the reduced row-space path
    features["wide"] = np.concatenate(
        [features["model0"], 0.3 * rng.normal(size=(90, 48)).astype(np.float32)], 1
    )
    config = _design_config(
        features,
        generators=("model0", "model1"),
        sizes=(60,),
        triplet_selection=("random", "discriminating"),
        selection_criterion="paired",
        eval_fraction=0.5,  # 30 validation and test triplets per fold
    )
    on = dataclasses.replace(config, human_heldout=True)
    # planted "human" test set: fold 0's test triplets with model0's responses, so model0's
    # fold-0 fits must score on it exactly as on their test triplets
    job = next(j for j in jobs_of(config) if j.generator == "model0")
    human = simulate(job, config, features["model0"], 0.3, None)[0].test
    assert len(human) == 30
    inputs = planted_grid_inputs(features, config.levels, temperature=0.3)
    stores = {"off": ResultsStore(tmp_path / "off"), "on": ResultsStore(tmp_path / "on")}
    run_grid(config, dataclasses.replace(inputs, human_test=human), stores["off"], progress=False)
    run_grid(on, dataclasses.replace(inputs, human_test=human), stores["on"], progress=False)
    off, with_human = _aligned(stores["off"]), _aligned(stores["on"])
    for name in ("jobs", "scores", "fits"):
        assert not set(HUMAN_COLUMNS) & set(off[name].columns), name
        pd.testing.assert_frame_equal(
            with_human[name].drop(columns=[c for c in HUMAN_COLUMNS if c in with_human[name]]),
            off[name],
            check_exact=True,
        )
    fits, scores, jobs = with_human["fits"], with_human["scores"], with_human["jobs"]
    assert fits["human_accuracy"].between(0, 1).all() and (fits["human_nll"] > 0).all()
    planted = fits[(fits["generator"] == "model0") & (fits["fold"] == 0)]
    assert set(planted["candidate"]) == set(features)
    np.testing.assert_allclose(planted["human_accuracy"], planted["test_accuracy"], atol=1e-12)
    np.testing.assert_allclose(planted["human_nll"], planted["test_nll"], rtol=1e-9)
    other = fits[fits["fold"] > 0]  # other folds: the same triplets, not their test sets
    assert not np.allclose(other["human_nll"], other["test_nll"])
    # scores: the fits' human columns at each candidate's selected λ, mean over folds;
    # a job is (generator, condition_key) here (one N, one seed)
    job_keys = ["generator", "condition_key", "candidate"]
    at_best = fits.merge(
        scores[[*job_keys, "best_lam"]],
        left_on=[*job_keys, "lam"],
        right_on=[*job_keys, "best_lam"],
    )
    expected = at_best.groupby(job_keys)[["human_accuracy", "human_nll"]].mean()
    got = scores.set_index(job_keys).loc[expected.index]
    np.testing.assert_allclose(got["human_accuracy"], expected["human_accuracy"], rtol=1e-12)
    np.testing.assert_allclose(got["human_nll"], expected["human_nll"], rtol=1e-12)
    assert scores.groupby(job_keys[:2])["human_accuracy"].nunique().gt(1).all()
    human_of = scores.set_index(job_keys)["human_accuracy"]
    for _, row in jobs.iterrows():
        key = (row["generator"], row["condition_key"])
        assert row["generator_human_accuracy"] == human_of[(*key, row["generator"])]
        assert row["winner_human_accuracy"] == human_of[(*key, row["winner"])]
    # the report's table and panel; a store mixing jobs with and without the human set
    raw_on, raw_off = stores["on"].load(), stores["off"].load()
    table = selection_table(raw_on["jobs"], raw_on["scores"])
    by = table.set_index("triplet_selection")
    for selection in ("random", "discriminating"):
        mine = raw_on["jobs"][raw_on["jobs"]["triplet_selection"].fillna("random") == selection]
        assert by.loc[selection, "generator_human_accuracy"] == pytest.approx(
            mine["generator_human_accuracy"].mean()
        )
        assert by.loc[selection, "winner_human_accuracy"] == pytest.approx(
            mine["winner_human_accuracy"].mean()
        )
    assert {"generator_human_accuracy_sem", "winner_human_accuracy_sem"} <= set(table.columns)
    mixed = selection_table(
        pd.concat([raw_on["jobs"], raw_off["jobs"]]),
        pd.concat([raw_on["scores"], raw_off["scores"]]),
    )
    assert (mixed["n_jobs"] == 4).all()
    pd.testing.assert_series_equal(
        mixed["generator_human_accuracy"], table["generator_human_accuracy"]
    )
    figure = plot_selection(table)
    assert "human" in figure.axes[1].get_title() and "human" in figure.axes[1].get_ylabel()
    assert len(figure.axes[1].get_lines()) >= 2
    plain = plot_selection(selection_table(raw_off["jobs"], raw_off["scores"]))
    assert "human" not in plain.axes[1].get_title() and "uniform" in plain.axes[1].get_title()
    assert "generator_human_accuracy" not in selection_table(raw_off["jobs"], raw_off["scores"])


def test_human_heldout_enters_job_ids_only_when_on_and_needs_human_data(tmp_path):
    from modelrecovery.study.pipeline import grid_config
    from modelrecovery.study.spec import load_spec

    features = {"a": None, "b": None}
    extra = {"generators": {"full": {"a": "g1", "b": "g2"}}}
    before = ["a-N60-s0-full-3bbc87364f", "b-N60-s0-full-9c9ecce713", "a-N60-s1-full-0854a64ca8"]
    off = planted_grid_config(features, extra=extra, human_heldout=False)
    on = planted_grid_config(features, extra=extra, human_heldout=True)
    assert [j.job_id for j in jobs_of(off)][:3] == before and off.key() == "9ddc32b86760e1ae"
    assert on.key() != off.key()
    assert {j.job_id for j in jobs_of(on)}.isdisjoint(j.job_id for j in jobs_of(off))
    # the same condition: the human set changes no result, only adds columns
    assert on.condition(Level("full")) == off.condition(Level("full"))
    assert on.condition_key(Level("full")) == off.condition_key(Level("full"))
    with pytest.raises(ValueError, match="human_heldout"):
        planted_grid_config(features, human_heldout="yes")
    # on without human test triplets: a clear error before any work
    world = planted_recovery_world()
    config = planted_grid_config(world, sizes=(60,), seeds=(0,), human_heldout=True)
    inputs = planted_grid_inputs(world, config.levels)
    store = ResultsStore(tmp_path / "s")
    with pytest.raises(ValueError, match="human_heldout needs the human held-out test"):
        run_grid(config, inputs, store, progress=False)
    assert not store.done()
    # conf/selection.yaml turns it on, through the specification and grid_config
    study = load_spec("selection")
    assert study.grid.human_heldout is True
    assert grid_config(study, ["a", "b"]).human_heldout
