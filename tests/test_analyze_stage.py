"""The analyze stage pools recover runs from MLflow: two runs with different seeds give
the same analysis as one run holding both."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from helpers import planted_grid_config, planted_recovery_world
from modelrecovery.recovery.executors import GridInputs, run_grid
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.stages.analyze import analyze
from modelrecovery.tracking import setup_experiment, standard_tags


def log_recover_run(tables: dict[str, pd.DataFrame]) -> str:
    """A finished run shaped like the recover stage's (results/*.parquet artifacts)."""
    with mlflow.start_run(run_name="recover/test", tags=standard_tags("recover")) as run:
        with tempfile.TemporaryDirectory() as tmp:
            for name, frame in tables.items():
                frame.to_parquet(Path(tmp) / f"{name}.parquet", index=False)
            mlflow.log_artifacts(tmp, artifact_path="results")
    return run.info.run_id


@pytest.mark.slow
def test_two_runs_pool_like_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    features = planted_recovery_world()
    config = planted_grid_config(features, sizes=(60, 600), seeds=(0, 1))
    store = ResultsStore(tmp_path / "store")
    inputs = GridInputs({k: (v, 0.2) for k, v in features.items()}, features, None)
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
