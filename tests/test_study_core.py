"""The study core: the tracker interface (MLflow and null), the pipeline without MLflow,
the Python API, and reuse keys that hash the science only."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import modelrecovery
from modelrecovery.config import split_overrides
from modelrecovery.study import keys
from modelrecovery.study.spec import load_spec
from modelrecovery.study.tracker import NullTracker, Tracker, reuse_or_run

PACKAGE = Path(modelrecovery.__file__).resolve().parent

#: a study of seconds: 36 concepts, two models, zero-shot only
SMALL = split_overrides(
    [
        "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
        "image_size: 48}",
        "models=[timm:resnet10t,timm:lcnet_100]",
        "grid.sizes=[20,60] grid.seeds=[0] tune.lams=[0.1,10.0] tune.n_folds=2",
        "grid.levels=[{family: zero_shot}]",
        "executor.kind=inprocess report=false",
        "include_uninformative=true",  # the tiny world's generators are near chance
    ]
)

#: where MLflow may be imported: the tracker's MLflow side and the command line's edges
MLFLOW_EDGES = (
    "study/mlflow_tracker.py",
    "study/mlflow_model.py",
    "tracking.py",
    "stack.py",
    "store_checks.py",
)


@pytest.fixture
def home(study_home):
    return study_home


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_edges_import_mlflow() -> None:
    """The science and the pipeline never name MLflow; the stages, the command line and
    the MLflow tracker do."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("stages/", "cli/")) or relative in MLFLOW_EDGES:
            continue
        if any(name == "mlflow" or name.startswith("mlflow.") for name in _imports(path)):
            offenders.append(relative)
    assert offenders == []


def test_both_trackers_implement_the_interface(home) -> None:
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    assert isinstance(NullTracker(), Tracker)
    assert isinstance(MLflowTracker("interface"), Tracker)


def test_reuse_is_written_once_and_finds_finished_runs_only() -> None:
    tracker = NullTracker()
    computed = []

    def compute() -> str:
        with tracker.run("thing", key="k1") as run:
            run.log_metrics({"x": 1.0})
        computed.append(run.id)
        return run.id

    first = reuse_or_run(tracker, "k1", lambda run_id: f"loaded {run_id}", compute)
    again = reuse_or_run(tracker, "k1", lambda run_id: f"loaded {run_id}", compute)
    assert computed == [first] and again == f"loaded {first}"
    with pytest.raises(RuntimeError), tracker.run("broken", key="k2"):
        raise RuntimeError("fails")
    assert tracker.find("k2") is None  # a failed run is never reused
    assert tracker.runs[first].status == "FINISHED"


def test_null_tracker_keeps_parents_params_metrics_and_artifacts(tmp_path) -> None:
    tracker = NullTracker(tmp_path / "runs")
    with tracker.run("parent", params={"a": 1}) as parent:
        run_id = tracker.record(
            "child", tags={"t": "x"}, params={"b": 2}, metrics={"m": 0.5}, parent=parent
        )
        folder = tmp_path / "out"
        folder.mkdir()
        (folder / "f.txt").write_text("hello")
        parent.log_artifacts(folder, "files")
        parent.log_dict({"k": [1, 2]}, "config.yaml")
    child = tracker.runs[run_id]
    assert child.parent == parent.id and child.metric("m") == 0.5 and child.tags["t"] == "x"
    assert (tracker.artifacts(parent.id, "files") / "f.txt").read_text() == "hello"
    assert "k:" in (tracker.artifacts(parent.id, "config.yaml")).read_text()
    assert tracker.named("child") == [child]


def test_science_hash_ignores_the_report_stack_and_cli_but_not_the_objective(tmp_path) -> None:
    copy = tmp_path / "modelrecovery"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = keys.science_hash(copy)
    for edge in ("analysis/report.py", "stack.py", "cli/entry.py", "stages/recover.py"):
        (copy / edge).write_text((copy / edge).read_text() + "\n# an edit\n")
        keys.science_hash.cache_clear()
        assert keys.science_hash(copy) == before, edge
    (copy / "probe/objective.py").write_text((copy / "probe/objective.py").read_text() + "\n#\n")
    keys.science_hash.cache_clear()
    assert keys.science_hash(copy) != before
    names = {p.relative_to(copy).as_posix() for p in keys.science_files(copy)}
    assert "probe/objective.py" in names and "study/spec.py" in names
    assert not any(n.startswith(("analysis/", "stages/", "cli/")) for n in names)
    keys.science_hash.cache_clear()


@pytest.mark.slow
def test_a_report_edit_reuses_every_job_and_an_objective_edit_recomputes_them(
    home, tmp_path, monkeypatch
) -> None:
    """End to end: the same study three times through one tracker and store, with the
    science's hash taken from a copy of the package that is edited in between."""
    from modelrecovery.study import pipeline

    copy = tmp_path / "copy" / "modelrecovery"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))

    original = keys.science_hash

    def hash_of_copy() -> str:
        original.cache_clear()
        return original(copy)

    spec = load_spec("default", [*SMALL, f"store={tmp_path / 'store'}"])
    tracker = NullTracker(tmp_path / "runs")
    results = []
    for edit in (None, "analysis/report.py", "probe/objective.py"):
        if edit is not None:
            (copy / edit).write_text((copy / edit).read_text() + "\n# an edit\n")
        code = hash_of_copy()
        monkeypatch.setattr(keys, "science_hash", lambda root=None, code=code: code)
        monkeypatch.setattr(pipeline, "science_hash", lambda root=None, code=code: code)
        results.append(pipeline.run_study(spec, tracker, progress=False))
    first, report_edit, objective_edit = results
    assert first.jobs_run_now == len(first.jobs) == 4
    assert report_edit.jobs_run_now == 0
    assert all(g.reused for g in report_edit.generators.values())
    assert objective_edit.jobs_run_now == 4
    assert not any(g.reused for g in objective_edit.generators.values())
    columns = ["generator", "n_train", "seed", "level", "winner", "recovered"]
    pd.testing.assert_frame_equal(first.jobs[columns], objective_edit.jobs[columns])
    original.cache_clear()


@pytest.mark.slow
def test_the_python_api_runs_a_study_without_mlflow(home) -> None:
    """`run_study(name, tracker=NullTracker())` in a fresh interpreter: the tables come
    back as pandas and MLflow is never imported."""
    script = f"""
import json, sys
from modelrecovery.study import NullTracker, run_study
result = run_study("default", NullTracker(), overrides={SMALL!r}, progress=False)
print(json.dumps({{
    "mlflow": "mlflow" in sys.modules,
    "jobs": len(result.jobs),
    "curve": result.curve.to_dict(orient="records"),
    "models": sorted(result.models["model"]),
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=home
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mlflow"] is False
    assert out["jobs"] == 4 and out["models"] == ["lcnet_100", "resnet10t"]
    assert {row["n_train"] for row in out["curve"]} == {20, 60}
    assert all(0 <= row["recovery_accuracy"] <= 1 for row in out["curve"])


@pytest.mark.slow
def test_null_and_mlflow_trackers_give_the_same_tables(home, tmp_path) -> None:
    """The tracker records; it changes no number: the jobs, scores and models tables of
    one study through MLflow and through the null tracker are equal (ids and timings
    aside)."""
    import mlflow

    from modelrecovery.study.mlflow_tracker import MLflowTracker
    from modelrecovery.study.pipeline import run_study

    spec = load_spec("default", SMALL)
    null = run_study(spec, NullTracker(tmp_path / "null"), progress=False)
    tracked = run_study(spec, MLflowTracker(spec.study), progress=False)

    def science(frame: pd.DataFrame) -> pd.DataFrame:
        drop = [c for c in frame.columns if "seconds" in c or c.endswith(("_id", "_run"))]
        return frame.drop(columns=drop).reset_index(drop=True)

    for name in ("jobs", "scores", "models"):
        pd.testing.assert_frame_equal(
            science(getattr(null, name)), science(getattr(tracked, name)), obj=name
        )
    run = mlflow.get_run(tracked.run_id)
    assert run.data.tags["stage"] == "recover" and run.info.status == "FINISHED"
    children = mlflow.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{tracked.run_id}'"
    )
    assert set(children["tags.stage"]) == {"generator", "job"}


@pytest.mark.slow
def test_one_job_through_the_api_is_the_grids_job(home, tmp_path) -> None:
    """`run_job` gives the same job (id, winner, scores) as the study's grid."""
    from modelrecovery.study.pipeline import run_job, run_study

    spec = load_spec("default", SMALL)
    tracker = NullTracker(tmp_path / "runs")
    study = run_study(spec, tracker, progress=False)
    one = run_job(spec, "lcnet_100", n_train=60, seed=0, level="zero_shot", tracker=tracker)
    row = one.job.iloc[0]
    match = study.jobs[study.jobs["job_id"] == row["job_id"]]
    assert len(match) == 1
    for column in ("generator", "n_train", "winner", "recovered", "generator_rank"):
        assert match.iloc[0][column] == row[column], column
    scores = study.scores[study.scores["job_id"] == row["job_id"]].set_index("candidate")
    for _, s in one.scores.iterrows():
        assert scores.loc[s["candidate"], "score"] == s["score"]
    with pytest.raises(ValueError, match="is not a level of the grid"):
        run_job(spec, "lcnet_100", n_train=60, level="full", tracker=tracker)


def test_results_go_beside_the_tracking_home(tmp_path) -> None:
    from modelrecovery.study.mlflow_tracker import local_home

    assert local_home(f"sqlite:///{tmp_path}/lab/mlflow.db") == tmp_path / "lab"
    assert local_home("http://127.0.0.1:5000") == Path("tracking")
    assert local_home("postgresql://u@127.0.0.1/mlflow") == Path("tracking")
