"""The study's answer, exactly: the p x p fit under the study's rule against an independent
transcription of the study's loop, the reshuffle's order, the scripts' sampler and seed
reuse, their float32 crowning and argmax evaluation, and the ``rules: study_scripts``
preset."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import planted_grid_config, planted_recovery_world, planted_triplets
from modelrecovery.data.sampling import sample_triplets
from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import LBFGSSettings, build_problem, fit_probe
from modelrecovery.probe.objective import PreparedTriplets, step_order
from modelrecovery.probe.reduced import (
    PathGeometry,
    full_matrix,
    path_parts,
    reduction_applies,
    reduction_mode,
    row_space,
)
from modelrecovery.recovery.grid import GridConfig, Job, Level, jobs_of
from modelrecovery.recovery.job import _Evaluator, run_job, select_and_score, simulate
from modelrecovery.study.spec import STUDY_SCRIPTS
from study_loop import study_loop

ROOT = Path(__file__).resolve().parents[1]


def _p_above_n(seed: int = 0, n: int = 40, p: int = 60, m: int = 600):
    """Features of rank n < p (the study's case: p above the training concepts)."""
    rng = np.random.default_rng(seed)
    embedding = rng.normal(size=(n, 5))
    x = np.concatenate([embedding, 0.3 * rng.normal(size=(n, p - 5))], 1) / 3
    return x, planted_triplets(embedding, m, seed + 1)


def test_reduction_modes_keep_each_rule_exact():
    assert reduction_mode("full", "scalar_shrinkage", "converged") == "optimum"
    assert reduction_mode("full", "scalar_shrinkage", "study") == "path"
    assert reduction_mode("full", "l2", "study", "always") == "optimum"
    assert reduction_mode("full", "l2", "converged", "path") == "path"
    assert reduction_mode("full", "l2", "study", "never") == "none"
    assert reduction_applies("full", "scalar_shrinkage", "study")
    assert reduction_applies("full", "l2", "study", "always")
    assert not reduction_applies("full", "scalar_shrinkage", "converged", "never")
    assert not reduction_applies("full", "l1", "converged", "always")
    assert not reduction_applies("diagonal", "scalar_shrinkage", "converged", "always")
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduction_applies("full", "l2", "study", "sometimes")


@pytest.mark.parametrize("reshuffle", [False, True])
@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_study_rule_follows_the_study_loop_in_p_by_p_and_in_the_row_space(lam, reshuffle):
    """p > n, the study's rule: the default fit (the p x p path computed in the row space),
    the p x p fit and the loop agree (float64, where rounding cannot move the early stop);
    the reduction at the optimum stops elsewhere."""
    x, train = _p_above_n()
    w_loop, losses, _ = study_loop(
        x, train.ids, train.odd, lam, dtype=torch.float64, reshuffle=reshuffle
    )
    fits = {}
    for name, engine, reduce in (
        ("default", "auto", "auto"),
        ("path", "lean", "path"),
        ("pxp", "lean", "never"),
        ("pxp torch", "torch", "auto"),  # torch's L-BFGS: auto is the p x p problem
    ):
        settings = LBFGSSettings.of("study", engine=engine, reshuffle=reshuffle)
        fits[name] = fit_probe(
            x, train, lam=lam, settings=settings, dtype=torch.float64, reduce=reduce
        )
        assert float((fits[name].matrix() - w_loop).abs().max()) < 1e-8, name
        assert len(fits[name].loss_history) == len(losses)
        np.testing.assert_allclose(fits[name].loss_history, losses, rtol=1e-9)
    assert fits["default"].space is not None and fits["default"].offset is not None
    assert fits["pxp"].space is None and fits["pxp torch"].space is None
    assert torch.equal(fits["default"].matrix(), fits["path"].matrix())
    reduced = fit_probe(
        x,
        train,
        lam=lam,
        settings=LBFGSSettings.of("study", reshuffle=reshuffle),
        dtype=torch.float64,
        reduce="always",
    )
    assert reduced.space is not None and reduced.space.rank == 40 and reduced.offset is None
    # another path: measured 0.0048 (λ = 1) and 0.0195 (λ = 1e-3) from the loop's W
    assert float((reduced.matrix() - w_loop).abs().max()) > 1e-3


def test_path_geometry_measures_the_p_by_p_matrix():
    """L1 norm and max |entry| of the p x p matrix a path vector stands for, the bounds,
    and the threshold tests (exact, early-stopping) against the formed matrix."""
    rng = np.random.default_rng(5)
    x = torch.as_tensor(rng.normal(size=(12, 30)))
    space = row_space(x)
    geometry = PathGeometry(space, torch.float64, block=7)
    for _ in range(5):
        u = rng.normal(size=12 * 12 + 1)
        a, c = path_parts(torch.as_tensor(u), space)
        w = full_matrix(a, space, "scalar_shrinkage", c)
        top, total = float(w.abs().max()), float(w.abs().sum())
        assert geometry.abs_max(u) == pytest.approx(top, rel=1e-12)
        assert geometry.abs_sum(u) == pytest.approx(total, rel=1e-12)
        low, high = geometry.abs_max_bounds(u)
        assert low <= top <= high
        assert float(torch.linalg.norm(w)) == pytest.approx(np.linalg.norm(u), rel=1e-12)
        for limit in (top * 0.999, top * 1.001, high * 1.01, low * 0.99):
            for strict in (False, True):
                expected = top < limit if strict else top <= limit
                assert geometry.max_times_below(u, 1.0, limit, strict) == expected
                assert geometry.max_times_below(u, 2.0, 2 * limit, strict) == expected


def test_path_objective_is_the_p_by_p_objective_through_the_map():
    """loss(u) = L(W(u)) for the p x p objective, and its gradient is autograd's through
    W(u) = V A V^T + c (I - V V^T), c = u_last / sqrt(p - r)."""
    x, train = _p_above_n(n=20, p=32, m=300)
    for regulariser in ("scalar_shrinkage", "l2"):
        pxp = build_problem(
            x, train, lam=0.3, dtype=torch.float64, reduce="never", regulariser=regulariser
        )
        path = build_problem(
            x, train, lam=0.3, dtype=torch.float64, reduce="path", regulariser=regulariser
        )
        space = path.space
        rng = np.random.default_rng(1)
        u = torch.tensor(rng.normal(size=space.rank**2 + 1) * 0.2, requires_grad=True)
        a = u[:-1].reshape(space.rank, space.rank)
        c = u[-1] / (space.dim - space.rank) ** 0.5
        v = space.basis.to(torch.float64)
        w = v @ a @ v.T + c * (torch.eye(space.dim, dtype=torch.float64) - v @ v.T)
        loss_w, grad_w = pxp.objective.loss_and_grad(w.detach())
        loss_u, grad_u = path.objective.loss_and_grad(u.detach())
        assert float(loss_u) == pytest.approx(float(loss_w), rel=1e-12)
        (auto,) = torch.autograd.grad((w * grad_w).sum(), u)  # chain rule through W(u)
        torch.testing.assert_close(grad_u, auto, rtol=1e-10, atol=1e-12)


def test_path_stays_within_the_float32_noise_of_p_by_p_fits():
    """float32 (the study's precision): rounding moves the study's early stop, so two p x p
    implementations (torch's L-BFGS, the lean one) already stop at different points; the
    path stays as close to the loop as they do, the reduction at the optimum does not
    (benchmarks/study_path.py measures more cases)."""
    distance: dict[str, list[float]] = {"pxp": [], "torch": [], "path": [], "always": []}
    for seed in range(3):
        x, train = _p_above_n(seed=seed, n=40, p=60, m=900)
        for lam in (1e-4, 1e-2, 1.0):
            w_loop = study_loop(x, train.ids, train.odd, lam, dtype=torch.float32).w
            for name, engine, reduce in (
                ("pxp", "lean", "never"),
                ("torch", "torch", "never"),
                ("path", "lean", "path"),
                ("always", "lean", "always"),
            ):
                settings = LBFGSSettings.of("study", engine=engine, reshuffle=True)
                fitted = fit_probe(
                    x, train, lam=lam, settings=settings, dtype=torch.float32, reduce=reduce
                )
                distance[name].append(float((fitted.matrix() - w_loop).abs().max()))
    median = {name: float(np.median(values)) for name, values in distance.items()}
    noise = max(median["pxp"], median["torch"])
    assert median["path"] <= 2 * noise + 1e-4, median
    assert median["always"] > median["path"], median


def test_jobs_under_the_study_rule_score_the_path_as_the_p_by_p_fits():
    """A recovery job whose candidates have more features than training concepts (float64):
    the default (path) and the p x p fits give the same fits and scores; the evaluator
    reads the fitted c."""
    features = planted_recovery_world(n_concepts=30, n_models=2)
    features = {k: np.concatenate([v, v[:, :8] ** 2], 1) for k, v in features.items()}
    tables = {}
    for reduction in ("auto", "never"):
        config = planted_grid_config(
            features,
            sizes=(100,),
            seeds=(0,),
            stopping="study",
            dtype="float64",
            reduction=reduction,
            generators=("model0",),
        )
        job = jobs_of(config)[0]
        tables[reduction] = run_job(job, config, features["model0"], 0.05, features).fits
    auto, never = tables["auto"], tables["never"]
    for column in ("val_accuracy", "test_accuracy", "iterations"):
        np.testing.assert_array_equal(auto[column].to_numpy(), never[column].to_numpy())
    np.testing.assert_allclose(auto["test_nll"], never["test_nll"], rtol=1e-7)
    np.testing.assert_allclose(auto["train_objective"], never["train_objective"], rtol=1e-8)


def test_converged_rule_keeps_the_exact_reduction():
    x, train = _p_above_n()
    fitted = fit_probe(x, train, lam=1e-2, settings=LBFGSSettings(), dtype=torch.float64)
    full = fit_probe(
        x, train, lam=1e-2, settings=LBFGSSettings(), dtype=torch.float64, reduce="never"
    )
    assert fitted.space is not None and fitted.space.rank == 40
    assert abs(fitted.train_objective - full.train_objective) < 1e-7


def test_reshuffle_sums_in_the_order_of_the_seeded_permutation():
    """Step e's order is torch.manual_seed(e); randperm(m) of the input rows, mapped onto
    the compiled (canonical) rows; the global RNG is left alone."""
    rng = np.random.default_rng(3)
    ids = np.stack([rng.choice(30, 3, replace=False) for _ in range(200)]).astype(np.int32)
    odd = rng.integers(0, 3, 200)
    prep = PreparedTriplets.from_triplets(Triplets(ids, odd, 30))
    concepts = prep.concepts.numpy()
    state = torch.get_rng_state()
    for step in range(4):
        order = step_order(prep, step).numpy()
        torch.manual_seed(step)
        perm = torch.randperm(200).numpy()
        # the compiled rows in that order are the input rows in the permutation's order
        local = prep.pair_rows.numpy(), prep.pair_cols.numpy()
        slots = prep.slot_pair.numpy()[order]
        rows_ab = concepts[local[0][slots[:, 2]]], concepts[local[1][slots[:, 2]]]
        rows_c = concepts[local[1][slots[:, 0]]]
        assert np.array_equal(
            np.stack([rows_ab[0], rows_ab[1], rows_c], 1), np.sort(ids[perm], axis=1)
        )
        assert np.array_equal(prep.source_rows.numpy()[order], perm)
    torch.set_rng_state(state)
    assert torch.equal(step_order(prep, 0), step_order(prep, 0))


def test_reshuffled_float32_losses_follow_the_loop():
    """In float32 the reshuffled loss is the loop's float32 mean over the same order: the
    first step's losses agree to float rounding of the similarities."""
    x, train = _p_above_n(m=900)
    losses = study_loop(x, train.ids, train.odd, 1.0, dtype=torch.float32, max_steps=1).losses
    fitted = fit_probe(
        x,
        train,
        lam=1.0,
        settings=LBFGSSettings.of("study", engine="torch", reshuffle=True),
        dtype=torch.float32,
    )
    assert abs(fitted.loss_history[0] - losses[0]) <= 2e-7 * abs(losses[0])


def test_scripts_sampler_is_biased_and_reuses_one_seed():
    """The scripts' sampler: the first N of 5N sorted draws all contain one of the 10 %
    lowest-id concepts (uniform: 1 - 0.9^3 = 27 %); one seed for every set and fold."""
    concepts = np.arange(100, 200)
    low = set(range(100, 110))
    shares = {}
    for paper in (False, True):
        ids = sample_triplets(
            concepts, 500, seed=1, n_concepts=300, paper_compatible_sampling=paper
        )
        shares[paper] = np.mean([bool(low & set(row)) for row in ids.tolist()])
    assert shares[True] > 0.95
    assert abs(shares[False] - 0.271) < 0.06

    def rank_patterns(paper: bool) -> list[np.ndarray]:
        config = GridConfig(
            generators=("a",),
            candidates=("a",),
            sizes=(60,),
            seeds=(4,),
            paper_compatible_sampling=paper,
        )
        job = Job("a", 60, 4, Level("full"), config.key())
        z = np.random.default_rng(0).normal(size=(90, 3))
        folds = simulate(job, config, z, 1.0, None)
        out = []
        for fd in folds:
            pool = np.unique(fd.test.ids)
            out.append(np.sort(np.searchsorted(pool, fd.test.ids), axis=1))
        return out

    # the three test pools have 30 concepts each: one seed draws the same pattern in each
    same = rank_patterns(True)
    assert all(np.array_equal(same[0], other) for other in same[1:])
    different = rank_patterns(False)
    assert not np.array_equal(different[0], different[1])


def _fold_fits(counts: dict[str, list[int]], m: int) -> pd.DataFrame:
    """One λ per candidate; fold f's validation and test accuracy = counts[f] / m."""
    rows = []
    for candidate, per_fold in counts.items():
        for fold, count in enumerate(per_fold):
            accuracy = count / m
            rows.append(
                {
                    "candidate": candidate,
                    "lam": 1.0,
                    "fold": fold,
                    "val_accuracy": accuracy,
                    "val_nll": 1.0,
                    "test_accuracy": accuracy,
                    "test_nll": 1.0,
                }
            )
    return pd.DataFrame(rows)


def _float32_mean(values: list[float]) -> np.float32:
    total = np.float32(0)
    for v in values:
        total = np.float32(total + np.float32(v))
    return np.float32(total / np.float32(len(values)))


def test_study_crowning_lets_float32_rounding_break_equal_counts():
    """Equal total counts split differently over the folds: the study's float32 means
    differ by rounding and max() takes the larger; equal means go to the first."""
    for m in range(7, 200):  # the first test-set size where rounding separates a split
        total = (3 * m) // 2
        splits = [c for c in itertools.product(range(m + 1), repeat=3) if sum(c) == total][:400]
        means = {c: _float32_mean([k / m for k in c]) for c in splits}
        high = max(splits, key=lambda c: means[c])
        low = min(splits, key=lambda c: means[c])
        if means[high] > means[low]:
            break
    assert means[high] > means[low]  # rounding separates equal counts
    config = planted_grid_config({"a": None, "b": None}, lams=(1.0,))
    study = GridConfig(**{**config.__dict__, "tie_rule": "study"})
    fits = _fold_fits({"a": list(low), "b": list(high)}, m)
    scores = select_and_score(fits, study, ["a", "b"]).set_index("candidate")
    assert scores["winner"].idxmax() == "b" and scores.loc["b", "rank"] == 1.0
    assert scores.loc["b", "score"] == float(means[high])
    first = GridConfig(**{**config.__dict__, "tie_rule": "first"})
    assert select_and_score(fits, first, ["a", "b"]).set_index("candidate")["winner"]["a"]
    # equal float32 means: the first candidate, as max()
    fits = _fold_fits({"a": list(high), "b": list(high)}, m)
    assert select_and_score(fits, study, ["a", "b"]).set_index("candidate")["winner"]["a"]


def test_study_lambda_choice_is_the_first_maximum_of_float64_means_of_float32_values():
    config = planted_grid_config({"a": None}, lams=(1e-2, 1.0))
    study = GridConfig(**{**config.__dict__, "tie_rule": "study"})
    m = 7
    rows = []
    # λ = 1e-2: counts (3, 4, 5), λ = 1: (4, 4, 4): equal totals, unequal rounded means
    for lam, counts in ((1e-2, (3, 4, 5)), (1.0, (4, 4, 4))):
        for fold, count in enumerate(counts):
            rows.append(
                {
                    "candidate": "a",
                    "lam": lam,
                    "fold": fold,
                    "val_accuracy": count / m,
                    "val_nll": 1.0,
                    "test_accuracy": 0.5 + lam / 10,
                    "test_nll": 1.0,
                }
            )
    means = {
        lam: float(np.mean([float(np.float32(c / m)) for c in counts]))
        for lam, counts in ((1e-2, (3, 4, 5)), (1.0, (4, 4, 4)))
    }
    expected = 1e-2 if means[1e-2] >= means[1.0] else 1.0
    chosen = select_and_score(pd.DataFrame(rows), study, ["a"])["best_lam"].iloc[0]
    assert chosen == expected


def test_study_evaluation_takes_the_first_position_on_prediction_ties():
    """Three equal logits: exact evaluation gives a third of the credit, the study's argmax
    the first position."""
    from modelrecovery.probe.families import Family
    from modelrecovery.probe.fit import FittedProbe

    x = torch.ones(3, 2)  # every similarity equal: all three positions tie
    fitted = FittedProbe(Family("full"), "scalar_shrinkage", 0.0, 1.0, torch.eye(2), 2)
    for response, study_credit in ((1, 0.0), (0, 1.0)):
        triplets = Triplets(np.array([[0, 1, 2]]), np.array([response]), 3)
        exact = _Evaluator(x, {"test": triplets}, None).scores(fitted)
        study = _Evaluator(x, {"test": triplets}, None, "study").scores(fitted)
        assert exact["test_accuracy"] == pytest.approx(1 / 3)
        assert study["test_accuracy"] == study_credit


def _things_paper_scripts():
    from modelrecovery.study.spec import load_spec

    return load_spec(str(ROOT / "conf" / "things_paper_scripts.yaml"))


def test_study_scripts_preset_sets_every_piece_and_refuses_conflicting_overrides():
    from modelrecovery.study.spec import load_spec as load_config

    config = _things_paper_scripts()
    assert config.rules == "study_scripts" and config.study == "things-paper-scripts"
    assert config.models == load_config(str(ROOT / "conf" / "things_paper.yaml")).models
    # the preset replaces the files' values (default.yaml: tie_rule random, ...)
    default = load_config("default", ["rules=study_scripts"])
    for loaded in (config, default):
        for section, values in STUDY_SCRIPTS.items():
            for key, value in values.items():
                assert getattr(getattr(loaded, section), key) == value, (section, key)
    grid = GridConfig(
        generators=("a",),
        candidates=("a",),
        sizes=(10,),
        seeds=(0,),
        **{k: v for k, v in default.grid.settings().items() if k in STUDY_SCRIPTS["grid"]},
    )
    assert grid.condition(Level("full"))["reduction"] == "never"
    # ... but a --set override that contradicts it is refused, in one line
    with pytest.raises(ValueError) as err:
        load_config("default", ["rules=study_scripts", "grid.tie_rule=random"])
    message = str(err.value)
    assert "\n" not in message and "override grid.tie_rule = 'random'" in message
    assert message.startswith("config conf/default.yaml:") or "default.yaml" in message


def test_things_paper_keeps_the_corrected_behaviour():
    from modelrecovery.study.spec import load_spec

    config = load_spec(str(ROOT / "conf" / "things_paper.yaml"))
    assert config.rules == "platform"
    grid = config.grid
    assert grid.paper_compatible_sampling is False
    assert grid.tie_rule == "random"
    assert grid.evaluation == "exact"


def test_lightning_module_follows_the_path_and_the_reshuffle():
    """The Lightning module under the study's rule with the reshuffle, on p > n features:
    the same path (row space) and steps as fit_probe."""
    from helpers import fit_with_trainer
    from modelrecovery.probe.lightning_module import ProbeModule

    x, train = _p_above_n(seed=2)
    settings = LBFGSSettings.of("study", reshuffle=True)
    options = dict(family="full", lam=0.01, dtype=torch.float64)
    module = ProbeModule(x, train, settings=settings, **options)
    fitted = fit_with_trainer(module, settings.max_repeats)
    reference = fit_probe(x, train, settings=settings, **options)
    assert fitted.space is not None and fitted.offset is not None
    assert fitted.loss_history == pytest.approx(reference.loss_history, rel=1e-10)
    assert fitted.iterations == reference.iterations
    torch.testing.assert_close(fitted.matrix(), reference.matrix(), rtol=0, atol=1e-10)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A private MLflow store and Optuna storage."""
    import mlflow

    from modelrecovery.study.mlflow_tracker import MLflowTracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    yield MLflowTracker("test-study")
    mlflow.end_run()


@pytest.mark.slow
def test_fit_and_tune_commands_take_the_reduction_and_the_reshuffle(tmp_path, tracking, capsys):
    """`modelrecovery fit` with --stopping study: the path in the row space by default
    (reduced_rank logged), p x p with --reduction never, the reshuffle logged; `tune`'s
    refit follows its settings."""
    import json

    import mlflow

    from helpers import repeated_triplets, write_things2023
    from modelrecovery.cli import main
    from modelrecovery.study.fitting import ProbeSetup
    from modelrecovery.study.inputs import load_human_data
    from modelrecovery.study.spec import TuneSpec
    from modelrecovery.study.tuning import tune_and_fit

    x, train = _p_above_n(n=40, p=60, m=600)
    repeated = repeated_triplets(x[:, :5], 30, 8, seed=3)
    path = write_things2023(tmp_path / "human.tsv", train, repeated)
    np.save(tmp_path / "wide.npy", x.astype(np.float32))
    params = {}
    for extra in ([], ["--reduction", "never", "--reshuffle"]):
        code = main(
            [
                "--json",
                "fit",
                "--features",
                str(tmp_path / "wide.npy"),
                "--triplets",
                str(path),
                "--lam",
                "0.1",
                "--stopping",
                "study",
                "--n-concepts",
                "40",
                "--experiment",
                "test-study",
                *extra,
            ]
        )
        out = capsys.readouterr()
        assert code == 0, out.err
        run = mlflow.get_run(json.loads(out.out)["run_id"])
        params[bool(extra)] = run.data.params
    assert params[False]["reduction"] == "auto" and params[False]["reshuffle"] == "False"
    assert params[False]["reduced_rank"] == "40"
    assert params[True]["reduction"] == "never" and params[True]["reshuffle"] == "True"
    assert params[True]["reduced_rank"] == "None"
    human = load_human_data(path, n_concepts=40)
    outcome = tune_and_fit(
        x,
        human.train,
        tracker=tracking,
        model="wide",
        setup=ProbeSetup(stopping="study", reduction="never"),
        settings=TuneSpec(lams=(0.1, 10.0), n_folds=2, stopping="study", reduction="never"),
        log_model=False,
    )
    refit = mlflow.get_run(outcome.fit.run_id).data.params
    assert refit["reduction"] == "never" and refit["reduced_rank"] == "None"
    assert outcome.fit.fitted.space is None


def test_a_config_base_that_is_missing_circular_or_not_a_name_is_one_line(tmp_path):
    from modelrecovery.study.spec import load_spec as load_config

    cases = {
        "missing.yaml": ("base: nope\nstudy: x\n", "base = 'nope': config 'nope' not found"),
        "self.yaml": ("base: self.yaml\nstudy: x\n", "refers back to itself"),
        "list.yaml": ("base: [1]\n", "base = [1]: expected a config name"),
    }
    for name, (text, fragment) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError) as err:
            load_config(str(tmp_path / name))
        message = str(err.value)
        assert "\n" not in message and name in message and fragment in message
    # a base beside the file, its sections merged key by key
    (tmp_path / "child.yaml").write_text(
        f"base: {ROOT / 'conf' / 'default.yaml'}\nstudy: child\ngrid:\n  seeds: [7]\n"
    )
    child = load_config(str(tmp_path / "child.yaml"))
    assert child.study == "child" and child.grid.seeds == (7,)
    assert child.grid.sizes == load_config("default").grid.sizes


@pytest.mark.parametrize(
    "family,path,m", [("full", "dense", 500), ("diagonal", "dense", 500), ("diagonal", "auto", 12)]
)
def test_reshuffle_changes_only_the_order_the_loss_is_summed_in(family, path, m):
    """float64: the reshuffled loss and gradient equal the exact ones to rounding; float32:
    the loss is torch's float32 mean in the step's order."""
    from modelrecovery.probe.families import Family
    from modelrecovery.probe.objective import TripletObjective

    x, train = _p_above_n(n=30, p=12, m=m)
    prep = PreparedTriplets.from_triplets(train)
    fam = Family(family)
    theta = fam.init(12, dtype=torch.float64, device="cpu") * 0.8
    objective = TripletObjective.from_features(torch.as_tensor(x), prep, fam, lam=0.1, path="dense")
    loss, grad = objective.loss_and_grad(theta)
    objective.reshuffle(3)
    loss3, grad3 = objective.loss_and_grad(theta)
    assert float(loss3) == pytest.approx(float(loss), rel=1e-12)
    torch.testing.assert_close(grad3, grad, rtol=1e-12, atol=1e-14)
    x32 = torch.as_tensor(x, dtype=torch.float32)
    objective = TripletObjective.from_features(x32, prep, fam, path=path)
    objective.reshuffle(3)
    z = fam.transform(x32, theta.float())
    s = z @ z.T
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(3))
    ids = torch.as_tensor(train.ids.astype(np.int64))[perm]
    i, j, k = ids.T
    logits = torch.stack([s[j, k], s[i, k], s[i, j]], 1)
    odd = torch.as_tensor(train.odd.astype(np.int64))[perm]
    expected = torch.nn.functional.cross_entropy(logits, odd)
    assert float(objective.loss_and_grad(theta.float())[0]) == pytest.approx(
        float(expected), rel=3e-7
    )
