"""The analyze stage pools recover runs from MLflow like with like: one result per
(condition, generator, N, seed), the latest run winning; conditions and levels apart; two
runs with different seeds give the same analysis as one run holding both."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_recovery_world
from modelrecovery.analysis import pool_tables
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.stages.analyze import analyze, recovery_metrics
from modelrecovery.tracking import setup_experiment, standard_tags

GENERATORS = ("a", "b", "c")


def synthetic_run(
    level: str,
    key: str,
    seeds: tuple[int, ...],
    commit: str,
    *,
    sizes: tuple[int, ...] = (100, 1000),
    tie_rule: str = "random",
    win: float = 0.5,
    human: float = 0.5,
    rng_seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Tables of one recover run in the new schema; ``commit`` makes its job ids its own.

    The generator wins a job with probability ``win``; otherwise the next candidate wins.
    """
    rng = np.random.default_rng(rng_seed)
    family = "rectangular" if level.startswith("rectangular") else level
    cond = {
        "level": level, "family": family, "k": 8 if family == "rectangular" else pd.NA,
        "regulariser": "scalar_shrinkage", "criterion": "accuracy", "tie_rule": tie_rule,
        "stopping": "converged", "warm_start": False, "sampling": "uniform",
        "lams": "0.1,10", "candidate_set": ",".join(GENERATORS), "condition_key": key,
    }  # fmt: skip
    jobs, scores, fits = [], [], []
    for g, n, s in itertools.product(GENERATORS, sizes, seeds):
        job_id = f"{commit}-{key[:4]}-{g}-{n}-{s}"
        order = list(GENERATORS)
        i = order.index(g)
        winner = g if rng.random() < win else order[(i + 1) % 3]
        ranks = {c: (1.0 if c == winner else 2.0 + (c != g)) for c in order}
        base = {"job_id": job_id, "generator": g, "n_train": n, "seed": s, **cond}
        result = {"winner": winner, "recovered": winner == g, "n_candidates": 3,
                  "generator_rank": ranks[g], "n_tied_top": 1, "seconds": 1.0}  # fmt: skip
        jobs.append(base | result)
        for c in order:
            acc = 0.9 - 0.1 * ranks[c]
            scores.append(base | {"candidate": c, "best_lam": 0.1, "val_accuracy": acc,
                                  "val_nll": 1.0, "test_accuracy": acc, "test_nll": 1.0,
                                  "score": acc, "rank": ranks[c]})  # fmt: skip
            for lam, fold in itertools.product((0.1, 10.0), range(2)):
                fits.append({"job_id": job_id, "generator": g, "n_train": n, "seed": s,
                             "family": family, "level": level, "condition_key": key,
                             "candidate": c, "lam": lam, "fold": fold, "train_nll": 1.0,
                             "train_objective": 1.1, "val_accuracy": acc, "val_nll": 1.0,
                             "test_accuracy": acc, "test_nll": 1.0, "iterations": 5,
                             "converged": True, "seconds": 0.1})  # fmt: skip
    models = pd.DataFrame(
        {
            "model": list(GENERATORS),
            "family": family,
            "k": cond["k"],
            "level": level,
            "feature_dim": [8, 9, 10],
            "n_parameters": pd.NA,
            "probe_parameters": 1,
            "human_accuracy": [human - 0.01, human, human + 0.01],
            "human_nll": 1.0,
            "lam": 0.1,
            "temperature": 1.0,
            "generator_run": commit,
        }  # fmt: skip
    )
    return {"jobs": pd.DataFrame(jobs), "scores": pd.DataFrame(scores),
            "fits": pd.DataFrame(fits), "models": models}  # fmt: skip


def test_pool_tables_keeps_one_result_per_key_latest_wins():
    old = synthetic_run("full", "1" * 16, (0, 1, 2), "c0ffee", win=0.0, human=0.5)
    new = synthetic_run("full", "1" * 16, (1, 2, 3), "beef00", win=1.0, human=0.6)
    other = synthetic_run("full", "2" * 16, (0, 1), "c0ffee", tie_rule="first", rng_seed=1)
    pooled = pool_tables([("old", old), ("new", new), ("other", other)])
    jobs = pooled.tables["jobs"]
    keys = ["condition_key", "generator", "n_train", "seed"]
    assert not jobs.duplicated(keys).any()
    same = jobs[jobs["condition_key"] == "1" * 16]
    assert len(same) == 3 * 2 * 4  # seeds 0-3 once each, not 6 seeds' worth
    assert (same["seed"] == 0).sum() == 6 and same["job_id"].str.startswith("c0ffee").sum() == 6
    assert same.loc[same["seed"] > 0, "job_id"].str.startswith("beef00").all()
    assert same.loc[same["seed"] > 0, "recovered"].all()  # the latest run's results
    assert not same.loc[same["seed"] == 0, "recovered"].any()
    assert (jobs["condition_key"] == "2" * 16).sum() == 12  # the other condition stays
    assert pooled.n_duplicates == 12 and pooled.n_job_rows == 18 + 18 + 12
    assert pooled.kept_per_source == {"old": 6, "new": 18, "other": 12}
    for name, per_job in (("scores", 3), ("fits", 12)):
        table = pooled.tables[name]
        assert set(table["job_id"]) == set(jobs["job_id"]), name
        assert len(table) == per_job * len(jobs), name
    # scores follow the kept job: the winner has rank 1 in the kept run's scores
    sc = pooled.tables["scores"].merge(jobs[["job_id", "winner"]], on="job_id")
    assert (sc.loc[sc["candidate"] == sc["winner"], "rank"] == 1.0).all()
    models = pooled.tables["models"]
    assert len(models) == 3 and models["generator_run"].eq("c0ffee").all()  # "other" is last
    # the same pooling when the order of the sources is the other way round: old wins
    back = pool_tables([("new", new), ("old", old)]).tables["jobs"]
    assert not back.loc[back["seed"].isin([1, 2]), "recovered"].any()


def test_pool_tables_derives_keys_for_old_tables():
    """Tables without level and condition_key (older runs) pool by their condition columns."""
    old_cols = ["level", "tie_rule", "stopping", "warm_start", "sampling", "lams",
                "candidate_set", "condition_key", "n_tied_top"]  # fmt: skip
    a = synthetic_run("full", "x" * 16, (0, 1), "aaaa", win=0.0)
    b = synthetic_run("full", "x" * 16, (1, 2), "bbbb", win=1.0)
    c = synthetic_run("diagonal", "y" * 16, (0, 1), "aaaa")
    runs = []
    for name, t in (("a", a), ("b", b), ("c", c)):
        t = {k: v.drop(columns=[x for x in old_cols if x in v.columns]) for k, v in t.items()}
        t["models"] = t["models"].drop(columns=["k", "probe_parameters", "generator_run"])
        runs.append((name, t))
    pooled = pool_tables(runs)
    jobs = pooled.tables["jobs"]
    assert len(jobs) == 3 * 2 * 3 + 3 * 2 * 2 and jobs["condition_key"].nunique() == 2
    assert set(jobs["level"]) == {"full", "diagonal"}
    full = jobs[jobs["level"] == "full"]
    assert full.loc[full["seed"] == 1, "job_id"].str.startswith("bbbb").all()
    assert jobs["condition_key"].str.fullmatch("[0-9a-f]{16}").all()
    assert set(pooled.tables["scores"]["condition_key"]) == set(jobs["condition_key"])
    assert len(pooled.tables["models"]) == 6  # (model, level) with level from family


def test_recovery_metrics_never_mix_levels_or_conditions():
    a = synthetic_run("full", "1" * 16, (0, 1), "c0", win=1.0)["jobs"]
    b = synthetic_run("full", "2" * 16, (0, 1), "c0", win=0.0, tie_rule="first")["jobs"]
    z = synthetic_run("zero_shot", "3" * 16, (0, 1), "c0", win=1.0, sizes=(50, 100))["jobs"]
    d = synthetic_run("diagonal", "4" * 16, (0,), "c0", win=1.0, sizes=(50,))["jobs"]
    d["triplet_selection"] = "discriminating"
    metrics = recovery_metrics(pd.concat([b, z, a, d], ignore_index=True))
    # the recover stage's names; a condition key only where two conditions share a level
    assert metrics == {
        "recovery_accuracy_zero_shot": {50: 1.0, 100: 1.0},
        "recovery_accuracy_diagonal_discriminating": {50: 1.0},
        "recovery_accuracy_full_11111111": {100: 1.0, 1000: 1.0},
        "recovery_accuracy_full_22222222": {100: 0.0, 1000: 0.0},
    }


def log_recover_run(
    tables: dict[str, pd.DataFrame], groups: dict | None = None, config: dict | None = None
) -> str:
    """A finished run shaped like the recover stage's (results/*.parquet artifacts,
    results/groups.json when ``groups`` is given, config.yaml when ``config`` is)."""
    with mlflow.start_run(run_name="recover/test", tags=standard_tags("recover")) as run:
        if config is not None:
            mlflow.log_dict(config, "config.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            for name, frame in tables.items():
                frame.to_parquet(Path(tmp) / f"{name}.parquet", index=False)
            if groups is not None:
                (Path(tmp) / "groups.json").write_text(json.dumps(groups))
            mlflow.log_artifacts(tmp, artifact_path="results")
    return run.info.run_id


@pytest.mark.slow
def test_two_runs_pool_like_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60, 600), seeds=(0, 1))
    store = ResultsStore(tmp_path / "store")
    inputs = GridInputs(
        {(lv.label, k): (v, 0.2) for lv in config.levels for k, v in features.items()},
        features,
        None,
    )
    run_grid(config, inputs, store, progress=False)
    tables = store.load()
    models = pd.DataFrame(
        {
            "model": list(features),
            "family": "full",
            "feature_dim": [f.shape[1] for f in features.values()],
            "human_accuracy": [0.5, 0.55, 0.6],
            "human_nll": 1.0,
            "lam": 1.0,
            "temperature": 0.2,
        }
    )
    setup_experiment("pool-a")
    by_seed = [
        {name: t[t["seed"] == s] for name, t in tables.items()} | {"models": models} for s in (0, 1)
    ]
    for part in by_seed:
        log_recover_run(part)
    pooled = analyze("pool-a", out_dir=tmp_path / "a")
    setup_experiment("pool-b")
    log_recover_run(tables | {"models": models})
    single = analyze("pool-b", out_dir=tmp_path / "b")
    assert len(pooled["sources"]) == 2 and len(single["sources"]) == 1
    csv_a = sorted((tmp_path / "a" / "tables").glob("*.csv"))
    csv_b = sorted((tmp_path / "b" / "tables").glob("*.csv"))
    assert [p.name for p in csv_a] == [p.name for p in csv_b] and csv_a
    for a, b in zip(csv_a, csv_b, strict=True):
        assert a.read_text() == b.read_text(), a.name
    run = mlflow.get_run(pooled["run_id"])
    assert run.data.tags["stage"] == "analyze"
    assert run.data.params["n_jobs"] == str(len(tables["jobs"]))


def test_analyze_pools_like_with_like(tmp_path, monkeypatch):
    """Reruns count once (latest wins), conditions and levels stay apart, side by side."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    setup_experiment("like")
    full_old = synthetic_run("full", "1" * 16, (0, 1, 2), "c0ffee", win=0.0, human=0.6)
    zero = synthetic_run("zero_shot", "3" * 16, (0, 1, 2), "c0ffee", win=1.0, human=0.35)
    both = {name: pd.concat([full_old[name], zero[name]], ignore_index=True) for name in zero}
    log_recover_run(both)
    log_recover_run(synthetic_run("full", "1" * 16, (2, 3), "beef00", win=1.0, human=0.6))
    log_recover_run(synthetic_run("full", "2" * 16, (0, 1), "beef00", tie_rule="first"))
    out = analyze("like", out_dir=tmp_path / "rep")
    run = mlflow.get_run(out["run_id"])
    assert run.data.params["n_jobs"] == str(3 * 2 * (4 + 3 + 2))
    assert run.data.params["n_duplicate_jobs"] == str(3 * 2)
    client = mlflow.tracking.MlflowClient()
    names = {k for k in run.data.metrics if k.startswith("recovery_accuracy")}
    assert names == {"recovery_accuracy_zero_shot", "recovery_accuracy_full_11111111",
                     "recovery_accuracy_full_22222222"}  # fmt: skip
    hist = client.get_metric_history(out["run_id"], "recovery_accuracy_full_11111111")
    # seeds 0, 1 from the first run (lost), 2 and 3 from the rerun (won): 2 of 4 per N
    assert sorted((m.step, m.value) for m in hist) == [(100, 0.5), (1000, 0.5)]
    paper = pd.read_csv(out["paper_table"])
    assert paper["level"].tolist() == ["zero_shot", "full", "full"]
    # models are one row per (model, level), the latest run's: both full conditions get
    # the third run's full generators (0.5), the zero-shot level its own (never full's)
    assert paper["human_mean"].tolist() == pytest.approx([0.35, 0.5, 0.5])
    side = pd.read_csv(tmp_path / "rep" / "tables" / "recovery_side_by_side.csv", index_col=0)
    assert side.shape[1] == 3 and side.columns[0].startswith("zero_shot")


def test_analyze_reports_model_groups_of_the_runs(tmp_path, monkeypatch):
    """The recover runs' model groups (results/groups.json) reach the pooled report:
    recovery within groups and the confusion between them."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    setup_experiment("groups")
    groups = {"objective": {"a": "supervised", "b": "supervised", "c": "self-supervised"}}
    log_recover_run(synthetic_run("full", "1" * 16, (0, 1, 2), "c0ffee", win=0.5), groups)
    out = analyze("groups", out_dir=tmp_path / "rep")
    names = {p.stem for p in (tmp_path / "rep" / "tables").glob("*.csv")}
    assert any(n.startswith("group_confusion_objective_") for n in names), names
    confusion = next(
        p for p in (tmp_path / "rep" / "tables").glob("group_confusion_objective_*_counts.csv")
    )
    counts = pd.read_csv(confusion, index_col=0)
    assert set(counts.index) == {"supervised", "self-supervised"}
    assert int(counts.to_numpy().sum()) == 3 * 3  # 3 generators x 3 seeds at the largest N
    assert out["run_id"]


def test_analyze_gives_the_report_features_transforms_and_human_embedding(
    tmp_path, monkeypatch, capsys
):
    """As the recover run's report: the top level's W (generator runs' artifacts), the
    features (their logged features_path; a file gone since is skipped with a warning)
    and the study's human embedding (config.yaml); metrics named as the recover run's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    setup_experiment("geometry")
    rng = np.random.default_rng(0)
    runs = {}
    for p, model in enumerate(GENERATORS, start=4):
        np.save(tmp_path / f"{model}.npy", rng.normal(size=(12, p)))
        with mlflow.start_run(run_name=f"generator/{model}/full") as run:
            mlflow.log_param("features_path", str(tmp_path / f"{model}.npy"))
            with tempfile.TemporaryDirectory() as tmp:
                np.save(Path(tmp) / "W.npy", np.eye(p) + 0.3 * rng.normal(size=(p, p)))
                mlflow.log_artifacts(tmp, artifact_path="generator")
        runs[model] = run.info.run_id
    (tmp_path / "c.npy").unlink()
    np.save(tmp_path / "human.npy", rng.normal(size=(12, 3)))
    tables = synthetic_run("full", "1" * 16, (0, 1), "c0ffee")
    tables["models"]["generator_run"] = tables["models"]["model"].map(runs)
    config = {"data": {"kind": "files", "human_embedding": str(tmp_path / "human.npy")}}
    log_recover_run(tables, config=config)
    out = analyze("geometry", out_dir=tmp_path / "rep")
    geometry = pd.read_csv(tmp_path / "rep" / "tables" / "geometry.csv")
    assert sorted(geometry["model"]) == ["a", "b"] and geometry["n_concepts"].eq(12).all()
    assert geometry["human_distance_after"].notna().all()
    assert (tmp_path / "rep" / "figures" / "mds.png").exists()
    err = capsys.readouterr().err
    assert err.count("analyze: geometry: model c (full) skipped") == 1, err
    metrics = mlflow.get_run(out["run_id"]).data.metrics
    assert {k for k in metrics if k.startswith("recovery_accuracy")} == {"recovery_accuracy_full"}
