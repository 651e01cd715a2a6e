"""A THINGS-shaped study end to end, offline: 1854 concepts, the real SPoSE-49 embedding as
the human model (training triplets sampled from it), the real 2020 noise-ceiling triplets
(mapped to THINGS order) as the repeated test set, five small feature files with the
study's metadata, the four levels with their own generators, two sizes (the full level
with its own seeds, as the study's per-level grids), and the report with the group and
systematic-bias analyses and the shift towards the human reference.

Skips cleanly when ../shared/data/things is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from modelrecovery.config import CONF_DIR
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.study.pipeline import run_study
from modelrecovery.study.spec import load_spec

N = 1854
N_TRAIN_TRIPLETS = 20_000


def _things_2023_file(things, path, rng) -> float:
    """Write a THINGS-2023-format file: SPoSE-49 training triplets (noise_ceiling 0) and
    the real 2020 repeated set as test set 2; returns its noise ceiling."""
    from modelrecovery.data.ceiling import noise_ceiling
    from modelrecovery.data.loaders import load_triplets

    embedding = np.loadtxt(things / "spose_embedding_49d_sorted.txt")
    assert embedding.shape == (N, 49)
    ids = np.stack([rng.choice(N, 3, replace=False) for _ in range(N_TRAIN_TRIPLETS)])
    s = embedding @ embedding.T
    i, j, k = ids.T
    logits = np.stack([s[j, k], s[i, k], s[i, j]], axis=1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    odd = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    repeated = load_triplets(
        things / "triplets_noiseceiling_2020.tsv",
        format="things2020",
        sortindex=things / "sortindex.txt",
        n_concepts=N,
    )
    rows = [
        pd.DataFrame(
            {
                "image1": ids[:, 0] + 1,
                "image2": ids[:, 1] + 1,
                "image3": ids[:, 2] + 1,
                "choice": odd + 1,
                "subject_id": rng.integers(0, 500, len(ids)),
                "noise_ceiling": 0,
            }
        ),
        pd.DataFrame(
            {
                "image1": repeated.ids[:, 0] + 1,
                "image2": repeated.ids[:, 1] + 1,
                "image3": repeated.ids[:, 2] + 1,
                "choice": repeated.odd + 1,
                "subject_id": repeated.subject,
                "noise_ceiling": 2,
            }
        ),
    ]
    pd.concat(rows).to_csv(path, sep="\t", index=False)
    return noise_ceiling(repeated)


def _feature_files(things, folder, rng) -> dict[str, dict]:
    """Five small models around the human embedding, with the study's metadata."""
    folder.mkdir()
    e49 = np.loadtxt(things / "spose_embedding_49d_sorted.txt")
    e66 = np.loadtxt(things / "spose_embedding_66d_sorted.txt")
    rotation = np.linalg.qr(rng.normal(size=(64, 64)))[0][:49]
    features = {
        "SPoSE_noisy": (e49 + 0.3 * rng.normal(size=e49.shape), "supervised", "CNN"),
        "SPoSE_rotated": (
            e49 @ rotation + 0.3 * rng.normal(size=(N, 64)),
            "self-supervised",
            "transformer",
        ),
        "SPoSE_partial": (
            e49[:, :30] + 0.2 * rng.normal(size=(N, 30)),
            "supervised",
            "transformer",
        ),
        "SPoSE66": (e66, "image-text", "CNN"),
        "Random": (rng.normal(size=(N, 40)), "self-supervised", "CNN"),
    }
    entries = {}
    for name, (x, objective, architecture) in features.items():
        np.save(folder / f"{name}.npy", x.astype(np.float32))
        entries[name] = {
            "file": f"{name}.npy",
            "backbone": None,
            "objective": objective,
            "architecture": architecture,
        }
    return entries


@pytest.mark.slow
def test_things_shaped_study(things_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    ceiling = _things_2023_file(things_dir, tmp_path / "triplets.tsv", rng)
    assert 0.6 < ceiling < 0.7  # the real 2020 repeated set (0.644)
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["study"] = "things-shaped"
    raw["data"].update(
        triplets=str(tmp_path / "triplets.tsv"),
        features_dir=str(tmp_path / "features"),
        human_embedding=str(things_dir / "spose_embedding_49d_sorted.txt"),
    )
    raw["models"] = _feature_files(things_dir, tmp_path / "features", rng)
    raw["probe"].update(workers=2, device="cpu")
    raw["tune"].update(lams=[0.01, 1.0], n_folds=2)
    raw["grid"].update(
        sizes=[100, 1000],
        seeds=[0],
        levels=[
            {"family": "zero_shot"},
            {"family": "diagonal"},
            {"family": "rectangular", "k": 5},
            {"family": "full", "seeds": [0, 1]},
        ],
        lams=[0.01, 1.0, 100.0],
        device="cpu",
        threads_per_job=2,
    )
    raw["executor"]["kind"] = "inprocess"
    raw["include_uninformative"] = True  # every generator runs its jobs (the count below)
    raw["store"] = str(tmp_path / "store")
    path = tmp_path / "things_shaped.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(str(path))

    result = run_study(spec, MLflowTracker(spec.study), progress=False)
    summary = result.summary()

    assert summary["jobs"] == 5 * 2 * 3 + 5 * 2 * 2
    assert len(result.jobs) == summary["jobs"] == summary["jobs_run_now"]
    report = tmp_path / "reports" / summary["run_id"]  # beside tmp_path/mlflow.db
    assert (report / "report.html").is_file()
    tables = report / "tables"
    for name in ("within_objective", "within_architecture", "systematic_bias", "human_distance"):
        assert (tables / f"{name}.csv").is_file(), name
    within = pd.read_csv(tables / "within_objective.csv")
    assert set(within["group"]) >= {"supervised", "self-supervised", "all groups"}
    shift = pd.read_csv(tables / "human_distance.csv")
    assert len(shift) == 5 and "shift_towards_human" in shift
    models = pd.read_csv(tables / "tradeoff.csv")
    assert set(models["level"]) == {"zero_shot", "diagonal", "rectangular5", "full"}
    jobs = ResultsStore(tmp_path / "store").load()["jobs"]
    per_level = jobs.groupby("level")["seed"].nunique().to_dict()
    assert per_level == {"zero_shot": 1, "diagonal": 1, "rectangular5": 1, "full": 2}
    html = (report / "report.html").read_text()
    assert "Model groups and systematic bias" in html and "Shift towards the human" in html
