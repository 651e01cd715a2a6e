"""``plan``: the recovery curve (planted N_target and asymptotes recovered, profile
intervals against brute force, gradients against finite differences), the adaptive
design's stopping rules, and the command end to end (MLflow run, reuse of finished jobs
both ways)."""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import pandas as pd
import pytest

from modelrecovery.analysis import sample_size as S
from modelrecovery.analysis.sample_size import (
    PROFILE_DROP,
    CurveParams,
    choose_sizes,
    fit_curve,
    plan_step,
    recovery_probability,
    size_ladder,
    target_size,
)
from modelrecovery.cli import main

SIZES = np.array([20, 40, 90, 200, 400, 900, 2000, 4000])


def draw(params: CurveParams, sizes: np.ndarray, per_size: int, seed: int):
    """Planted jobs: ``per_size`` Bernoulli outcomes of the curve at each size."""
    rng = np.random.default_rng(seed)
    n = np.repeat(sizes, per_size).astype(float)
    return n, (rng.random(len(n)) < recovery_probability(n, params)).astype(float)


def test_target_size_inverts_the_curve():
    params = CurveParams(0.93, math.log(300.0), 1.7, 0.1)
    n = target_size(params, 0.8)
    assert recovery_probability(n, params) == pytest.approx(0.8, abs=1e-12)
    assert target_size(CurveParams(0.79, 5.0, 1.0, 0.1), 0.8) == math.inf
    assert target_size(params, 0.05) == 0.0


def test_gradients_match_finite_differences():
    params = CurveParams(0.9, math.log(250.0), 1.3, 0.1)
    x = np.log(SIZES.astype(float))
    _, grad = S._gradients(x, params)
    target_grad = S._target_gradient(params, 0.8)
    theta = np.array([params.asymptote, params.midpoint, math.log(params.slope)])

    def at(v):
        return CurveParams(v[0], v[1], math.exp(v[2]), 0.1)

    for i in range(3):
        step = np.zeros(3)
        step[i] = 1e-6
        numeric = (
            recovery_probability(SIZES, at(theta + step))
            - recovery_probability(SIZES, at(theta - step))
        ) / 2e-6
        np.testing.assert_allclose(grad[:, i], numeric, rtol=1e-5, atol=1e-8)
        numeric_t = (
            math.log(target_size(at(theta + step), 0.8))
            - math.log(target_size(at(theta - step), 0.8))
        ) / 2e-6
        assert target_grad[i] == pytest.approx(numeric_t, rel=1e-5)


@pytest.mark.parametrize(
    "planted",
    [
        CurveParams(1.0, math.log(150.0), 2.0, 0.1),  # reaches 1
        CurveParams(0.9, math.log(150.0), 1.5, 0.1),  # plateaus above the target
    ],
)
def test_fit_recovers_a_planted_n_target(planted):
    truth = target_size(planted, 0.8)
    sizes, outcomes = draw(planted, SIZES, 150, seed=0)
    fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
    assert fit.status == "reached"
    assert fit.n_target_low < truth < fit.n_target_high
    assert fit.n_target == pytest.approx(truth, rel=0.25)
    assert fit.asymptote_low <= planted.asymptote <= fit.asymptote_high
    assert fit.ratio < 2.5


@pytest.mark.slow
def test_intervals_cover_the_planted_value_about_95_percent():
    """Over 20 planted data sets of moderate size the interval holds the truth in most
    (at least 16: for a 95% interval, fewer happens with probability 0.003)."""
    planted = CurveParams(0.95, math.log(300.0), 1.5, 0.1)
    truth = target_size(planted, 0.8)
    covered = 0
    for seed in range(20):
        sizes, outcomes = draw(planted, SIZES, 20, seed=100 + seed)
        fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
        covered += fit.n_target_low <= truth <= fit.n_target_high
    assert covered >= 16


def test_a_plateau_below_the_target_is_unreachable():
    """A curve that plateaus early below the target: unreachable, the asymptote's interval
    below the target and around the truth. One still rising at the largest size: its
    asymptote may lie above the target, but N_target confidently beyond the largest."""
    planted = CurveParams(0.6, math.log(60.0), 3.0, 0.1)
    sizes, outcomes = draw(planted, SIZES, 60, seed=3)
    fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
    assert fit.status == "unreachable"
    assert fit.asymptote_low <= 0.6 <= fit.asymptote_high < 0.8
    assert fit.n_target == math.inf
    late = CurveParams(0.6, math.log(200.0), 2.0, 0.1)
    sizes, outcomes = draw(late, SIZES, 60, seed=3)
    fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
    assert fit.status == "unreachable"
    assert fit.n_target_low > 4000
    assert fit.asymptote_low <= 0.6 <= fit.asymptote_high


def test_profile_interval_ends_match_a_brute_force_profile():
    """At the interval's ends the profile log-likelihood (here by brute force over a grid
    of asymptotes and slopes) is l_max - chi2_1(0.95) / 2."""
    planted = CurveParams(0.95, math.log(300.0), 1.5, 0.1)
    sizes, outcomes = draw(planted, SIZES, 30, seed=7)
    fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
    x = np.log(sizes)

    def brute_profile(n_t: float) -> float:
        best = -math.inf
        for a in np.linspace(0.8005, 1.0, 200):
            q = (0.8 - 0.1) / (a - 0.1)
            for s in np.exp(np.linspace(math.log(0.05), math.log(40), 300)):
                m = math.log(n_t) - math.log(q / (1 - q)) / s
                p = np.clip(0.1 + (a - 0.1) / (1 + np.exp(-s * (x - m))), 1e-9, 1 - 1e-9)
                ll = float(np.sum(outcomes * np.log(p) + (1 - outcomes) * np.log1p(-p)))
                best = max(best, ll)
        return best

    threshold = fit.loglik - PROFILE_DROP
    for end in (fit.n_target_low, fit.n_target_high):
        assert brute_profile(end) == pytest.approx(threshold, abs=0.05)
    assert brute_profile(fit.n_target) == pytest.approx(fit.loglik, abs=0.05)


def test_design_puts_slots_where_they_shrink_the_variance_most():
    """The first chosen size minimises the delta-method variance of log N_target over the
    ladder (brute force over the ladder with the information of the jobs so far)."""
    planted = CurveParams(0.95, math.log(300.0), 1.5, 0.1)
    sizes, outcomes = draw(planted, np.array([20, 200, 4000]), 10, seed=5)
    fit = fit_curve(sizes, outcomes, floor=0.1, target=0.8, n_max=4000)
    ladder = np.array(size_ladder(20, 4000))
    first = choose_sizes(fit, sizes, ladder, 1, 10)[0]
    p_done, g_done = S._gradients(np.log(sizes), fit.params)
    info = (g_done / np.clip(p_done * (1 - p_done), 0.0099, None)[:, None]).T @ g_done
    direction = S._target_gradient(fit.params, 0.8)
    variances = []
    for n in ladder:
        p, g = S._gradients(np.log([float(n)]), fit.params)
        trial = info + 1e-6 * np.eye(3) + 10 / max(p[0] * (1 - p[0]), 0.0099) * np.outer(g, g)
        variances.append(direction @ np.linalg.solve(trial, direction))
    assert first == ladder[int(np.argmin(variances))]
    assert 0.2 * fit.n_target < first < 5 * fit.n_target  # near N_target, not at the ends


def test_plan_step_stopping_rules():
    ladder = np.array(size_ladder(20, 4000))
    common = dict(ladder=ladder, floor=0.1, target=0.8, max_n=4000, max_ratio=2.0, jobs_per_slot=10)
    # nothing yet: the first batch spreads over the ladder, within the budget
    fit, stop, sizes = plan_step([], [], budget_jobs=240, batch=4, initial=6, **common)
    assert fit is None and stop == "" and len(sizes) == 6
    assert sizes[0] == ladder[0] and sizes[-1] == ladder[-1]
    fit, stop, sizes = plan_step([], [], budget_jobs=40, batch=4, initial=6, **common)
    assert len(sizes) == 4  # the budget holds four slots of ten jobs
    # plenty of data: the interval is narrow enough
    sizes_, outcomes = draw(CurveParams(0.97, math.log(300.0), 2.0, 0.1), SIZES, 200, 2)
    fit, stop, sizes = plan_step(sizes_, outcomes, budget_jobs=10**6, batch=4, initial=6, **common)
    assert stop == "interval" and sizes == [] and fit.ratio <= 2.0
    # a plateau below the target
    sizes_, outcomes = draw(CurveParams(0.55, math.log(300.0), 2.0, 0.1), SIZES, 60, 2)
    fit, stop, _ = plan_step(sizes_, outcomes, budget_jobs=10**6, batch=4, initial=6, **common)
    assert stop == "unreachable"
    # too little data for a narrow interval, and the budget spent
    sizes_, outcomes = draw(CurveParams(0.95, math.log(300.0), 1.5, 0.1), SIZES, 3, 2)
    fit, stop, sizes = plan_step(sizes_, outcomes, budget_jobs=24, batch=4, initial=6, **common)
    assert stop == "budget" and sizes == []
    fit, stop, sizes = plan_step(sizes_, outcomes, budget_jobs=64, batch=4, initial=6, **common)
    assert stop == "" and len(sizes) == 4 and set(sizes) <= set(ladder)


def test_ladder_holds_the_grid_sizes():
    ladder = size_ladder(20, 4000, extra=(40, 400, 4000, 9000))
    assert ladder[0] == 20 and ladder[-1] == 4000
    assert {40, 400, 4000} <= set(ladder) and 9000 not in ladder
    ratios = np.diff(np.log(ladder))
    assert ratios.max() <= math.log(1.6)


TINY = [
    "--set",
    "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
    "image_size: 48}",
    "models=[timm:resnet10t,timm:lcnet_100]",
    "tune.lams=[0.1,10.0]",
    "tune.n_folds=2",
    "grid.levels=[{family: zero_shot}]",
    "executor.kind=inprocess",
    "include_uninformative=true",
]


@pytest.mark.slow
def test_plan_command_records_a_plan_run_and_reuses_jobs_both_ways(study_home, capsys):
    """``modelrecovery plan`` runs ordinary jobs (child runs), logs n_target_<level> /
    asymptote_<level> and the figure; a second plan reuses every job; a recover grid at
    the plan's sizes reuses the plan's jobs."""
    store = study_home / "store"
    args = ["plan", "--config", "default", *TINY, "--min-n", "10", "--max-n", "150"]
    args += ["--budget-jobs", "24", "--store", str(store), "--no-progress"]
    assert main(["--json", *args]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert summary["jobs_run_now"] == summary["jobs"] > 0
    level = summary["levels"][0]
    assert level["label"] == "zero_shot" and level["jobs"] <= 24 + 2
    run = mlflow.get_run(summary["run_id"])
    assert run.data.tags["stage"] == "plan"
    assert run.data.tags["status_zero_shot"] == level["status"]
    assert "asymptote_zero_shot" in run.data.metrics
    if math.isfinite(level["n_target"]):
        assert run.data.metrics["n_target_zero_shot"] == pytest.approx(level["n_target"])
    jobs = mlflow.search_runs([run.info.experiment_id], "tags.stage = 'job'")
    assert len(jobs) == summary["jobs"]
    assert (jobs["tags.mlflow.parentRunId"] == summary["run_id"]).all()
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"], "plan")}
    assert "plan/report.html" in artifacts
    figures = mlflow.MlflowClient().list_artifacts(summary["run_id"], "plan/figures")
    assert any(f.path.endswith("plan_curves.png") for f in figures)

    # the same plan again: every job reused, the same answer
    assert main(["--json", *args]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["jobs_run_now"] == 0
    assert again["levels"][0]["jobs_reused"] == again["jobs"] == summary["jobs"]
    assert again["levels"][0]["n_target"] == pytest.approx(level["n_target"])

    # a grid at the plan's sizes and seeds reuses the plan's jobs
    plan_jobs = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=summary["run_id"], artifact_path="plan/tables/plan_jobs.csv"
        )
    )
    n = int(plan_jobs["n_train"].mode()[0])
    seeds = sorted(plan_jobs.loc[plan_jobs["n_train"] == n, "seed"].unique().tolist())
    recover = ["recover", "--config", "default", *TINY, f"grid.sizes=[{n}]"]
    recover += [f"grid.seeds={seeds}", "report=false", "--store", str(store)]
    assert main(["--json", *recover, "--no-progress"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert grid["jobs"] == 2 * len(seeds) and grid["jobs_run_now"] == 0


def test_slots_are_the_grids_own_jobs_on_seeds_whose_folds_hold_the_size():
    """A slot is one job per generator at (size, next seed unused there), skipping seeds
    whose folds cannot hold the size; its ids are the grid's ids for that (N, seed)."""
    from modelrecovery.recovery.grid import GridConfig, Level, jobs_of
    from modelrecovery.study.plan import _Track

    level = Level("diagonal")
    part = GridConfig(
        generators=("a", "b"), candidates=("a", "b"), sizes=(40,), seeds=(0,), levels=(level,)
    )
    track = _Track(level, "random", part, ("a", "b"), budget=100)
    track.outcomes["x"] = (40, 0, "a", 1.0, False)  # seed 0 used at N = 40
    jobs = track.jobs([40, 40, 90], first_seed=0, fits=lambda n, seed: seed != 1)
    assert [(j.n_train, j.seed) for j in jobs] == [(40, 2)] * 2 + [(40, 3)] * 2 + [(90, 0)] * 2
    grid = GridConfig(
        generators=("a", "b"), candidates=("a", "b"), sizes=(40,), seeds=(2,), levels=(level,)
    )
    assert {j.job_id for j in jobs[:2]} == {j.job_id for j in jobs_of(grid)}
