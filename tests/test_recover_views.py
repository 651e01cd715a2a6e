"""What the MLflow views show of a study: recover runs told apart by name and parameters,
the job runs each used (reused or new, linked), job runs timed as the jobs, and the
recovery curves logged for the UI's charts (step = the size's index)."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from modelrecovery.analysis.metrics import recovery_chart_points, size_steps
from modelrecovery.config import split_overrides
from modelrecovery.study.mlflow_tracker import MLflowTracker
from modelrecovery.study.pipeline import run_study
from modelrecovery.study.spec import load_spec
from modelrecovery.study.tracker import NullTracker

#: a study of seconds: 36 concepts, two models, zero-shot only
SMALL = split_overrides(
    [
        "data.world_overrides={n_concepts: 36, n_train_triplets: 1500, n_ceiling_triplets: 30, "
        "image_size: 48}",
        "models=[timm:resnet10t,timm:lcnet_100]",
        "grid.sizes=[20,60] tune.lams=[0.1,10.0] tune.n_folds=2",
        "grid.levels=[{family: zero_shot}]",
        "executor.kind=inprocess",
        "include_uninformative=true",  # the tiny world's generators are near chance
    ]
)


def test_chart_points_step_by_the_size_index_with_exact_intervals():
    curve = pd.DataFrame(
        {
            "level": ["zero_shot", "zero_shot", "full", "full", "full"],
            "n_train": [40, 400, 40, 100, 400],
            "recovery_accuracy": [0.5, 1.0, 0.25, 0.75, 1.0],
            "n_jobs": [4, 4, 4, 4, 4],
        }
    )
    assert size_steps(curve) == [40, 100, 400]
    points = {(name, step): value for name, value, step in recovery_chart_points(curve)}
    assert points[("recovery_by_size_zero_shot", 2)] == 1.0  # N = 400 is the third size
    assert points[("recovery_by_size_full", 1)] == 0.75
    assert ("recovery_by_size_zero_shot", 1) not in points  # zero-shot ran no N = 100
    # Clopper-Pearson for 1 of 4 (brute force from the beta quantiles)
    from scipy.stats import beta

    assert points[("recovery_ci_low_by_size_full", 0)] == pytest.approx(beta.ppf(0.025, 1, 4))
    assert points[("recovery_ci_high_by_size_full", 0)] == pytest.approx(beta.ppf(0.975, 2, 3))
    assert points[("recovery_ci_high_by_size_full", 2)] == 1.0
    assert len(points) == 3 * len(curve)


@pytest.mark.slow
def test_recover_runs_name_their_grid_and_link_the_jobs_they_used(study_home):
    store = f"store={study_home / 'store'}"
    first_spec = load_spec("default", [*SMALL, "grid.seeds=[0]", store, "report=false"])
    first = run_study(first_spec, MLflowTracker(first_spec.study), progress=False)
    # a larger grid on the same store: the seed-0 jobs are reused, the seed-1 jobs new
    second_spec = load_spec("default", [*SMALL, "grid.seeds=[0,1]", store])
    second = run_study(second_spec, MLflowTracker(second_spec.study), progress=False)
    assert first.jobs_run_now == 4 and second.jobs_run_now == 4 and len(second.jobs) == 8
    client = mlflow.tracking.MlflowClient()
    one, two = client.get_run(first.run_id), client.get_run(second.run_id)
    # told apart: names differ by the grid's digest, parameters hold the axes
    name_one, name_two = one.info.run_name, two.info.run_name
    assert name_one.startswith("recover/default-world/") and name_one != name_two
    assert two.data.params["grid_digest"] == name_two.rsplit("/", 1)[1]
    assert one.data.params["seeds"] == "0" and two.data.params["seeds"] == "0,1"
    assert two.data.params["sizes"] == "20,60" and two.data.params["levels"] == "zero_shot"
    assert two.data.params["generators"] == two.data.params["candidates"]
    assert set(two.data.params["generators"].split(",")) == {"resnet10t", "lcnet_100"}
    # which job runs each used
    assert one.data.metrics["jobs_new"] == 4 and one.data.metrics["jobs_reused"] == 0
    assert two.data.metrics["jobs_new"] == 4 and two.data.metrics["jobs_reused"] == 4
    assert two.data.tags["reused_from"] == first.run_id
    assert "reused_from" not in one.data.tags
    path = mlflow.artifacts.download_artifacts(run_id=second.run_id, artifact_path="jobs_used.json")
    with open(path) as f:
        table = json.load(f)
    used = pd.DataFrame(table["data"], columns=table["columns"])
    assert len(used) == 8 and set(used["job_id"]) == set(second.jobs["job_id"])
    jobs = mlflow.search_runs([one.info.experiment_id], "tags.stage = 'job'")
    parent_of = dict(zip(jobs["run_id"], jobs["tags.mlflow.parentRunId"], strict=True))
    job_of = dict(zip(jobs["run_id"], jobs["tags.job_id"], strict=True))
    assert len(jobs) == 8  # no job ran twice
    for row in used.itertuples():
        assert job_of[row.run_id] == row.job_id and parent_of[row.run_id] == row.recover_run
        assert row.reused == (row.seed == 0)
        assert row.recover_run == (first.run_id if row.seed == 0 else second.run_id)
    # job runs last as long as the jobs did (not the logging's few ms)
    for run in client.search_runs([one.info.experiment_id], "tags.stage = 'job'"):
        measured = run.data.metrics["seconds"] * 1000
        assert run.info.end_time - run.info.start_time == pytest.approx(measured, abs=2)
    # the recovery curves for the UI's charts, and the recovery figure beside them
    steps = two.data.params["size_steps"]
    assert steps == "0:N=20 1:N=60"
    for name in ("recovery_by_size_zero_shot", "recovery_ci_low_by_size_zero_shot"):
        assert sorted(m.step for m in client.get_metric_history(second.run_id, name)) == [0, 1]
    history = client.get_metric_history
    by_size = {m.step: m.value for m in history(second.run_id, "recovery_by_size_zero_shot")}
    by_n = {m.step: m.value for m in history(second.run_id, "recovery_accuracy_zero_shot")}
    assert by_size == {0: by_n[20], 1: by_n[60]}
    names = {a.path for a in client.list_artifacts(second.run_id)}
    assert "recovery_accuracy.png" in names and "recovery_accuracy.png" not in {
        a.path
        for a in client.list_artifacts(first.run_id)  # no report, no figure
    }


def test_null_tracker_finds_finished_job_runs_newest_first(tmp_path):
    tracker = NullTracker(tmp_path)
    with tracker.run("recover/a") as parent:
        job = {"stage": "job", "job_id": "x"}
        old = tracker.record(
            "job/x", tags=job, params={}, metrics={}, parent=parent, start_time=100, end_time=105
        )
    new = tracker.record("job/x", tags={"stage": "job", "job_id": "x"}, params={}, metrics={})
    assert tracker.runs[old].end_time - tracker.runs[old].start_time == 5.0
    assert tracker.find_jobs(["x", "y"]) == {"x": (new, None)}


def test_optuna_studies_name_the_experiment_and_the_objective(tmp_path, monkeypatch):
    """Two experiments tuning the same model in one shared Optuna storage keep two
    studies; each names its objective and notes the empty contour and rank plots."""
    import numpy as np
    import optuna
    from optuna_dashboard._note import get_note_from_system_attrs

    from helpers import planted_triplets
    from modelrecovery.data.triplets import Triplets
    from modelrecovery.study.fitting import ProbeSetup
    from modelrecovery.study.spec import TuneSpec
    from modelrecovery.study.tuning import tune_lambda

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.setenv("OPTUNA_STORAGE", storage)
    x = np.random.default_rng(0).normal(size=(30, 6)) / 2
    train = planted_triplets(x, 300, seed=1)
    assert isinstance(train, Triplets)
    settings = TuneSpec(lams=(0.1, 10.0), n_folds=2)
    names = []
    for experiment in ("lab-a", "lab-b"):
        _, _, name = tune_lambda(
            x, train, tracker=MLflowTracker(experiment), model="m",
            setup=ProbeSetup(dtype="float64"), settings=settings,
        )  # fmt: skip
        names.append(name)
    assert names == ["lab-a/tune/m/full", "lab-b/tune/m/full"]
    assert sorted(optuna.get_all_study_names(storage)) == names
    study = optuna.load_study(study_name=names[0], storage=storage)
    assert study.metric_names == ["mean_val_accuracy"] and len(study.trials) == 2
    assert study.user_attrs["experiment"] == "lab-a"
    attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(attrs, None)["body"]
    assert "contour" in note and "rank" in note and "one parameter" in note


def test_every_mlflow_view_link_keeps_the_training_runs_layout(tmp_path, capsys):
    """The links the project prints (the stack's status and profile, recover's summary
    against a server) and the README's all carry ``workflowType=machine_learning``."""
    import re
    from pathlib import Path

    from modelrecovery import stack
    from modelrecovery.store_checks import ML_VIEW, ui_link

    assert ui_link("http://h:5000/") == f"http://h:5000/#/experiments?{ML_VIEW}"
    assert ui_link("http://h:5000", "3", "abc") == (
        f"http://h:5000/#/experiments/3/runs/abc?{ML_VIEW}"
    )
    settings = stack.StackSettings(root=tmp_path / "stack", mlflow_port=5123)
    text = stack.write_profile(settings).read_text()
    assert f"http://127.0.0.1:5123/#/experiments?{ML_VIEW}" in text
    healthy = {name: {"pid": 1, "healthy": True, "address": "-"} for name in stack.SERVICES}
    stack._print_status(healthy, settings)
    assert f"MLflow UI: http://127.0.0.1:5123/#/experiments?{ML_VIEW}" in capsys.readouterr().out
    root = Path(__file__).resolve().parents[1]
    texts = [root / "README.md", *(root / "docs").rglob("*.md"),
             *(root / "src" / "modelrecovery").rglob("*.py")]  # fmt: skip
    for path in texts:
        if path.name == "store_checks.py":  # ui_link builds them (tested above)
            continue
        for link in re.findall(r"#/experiments[^\s`'\")]*", path.read_text(encoding="utf-8")):
            assert ML_VIEW in link or "{" in link, f"{path.name}: {link}"


def _tradeoff_inputs(paper_x: float):
    """The default study's trade-off at its largest N, and the paper's points (its
    zero-shot point at ``paper_x``)."""
    table = pd.DataFrame(
        {
            "condition": ["zero_shot", "diagonal", "rectangular8", "full"],
            "n_train": [4000] * 4,
            "accuracy": [1.0, 1.0, 0.8, 1.0],
            "ci_low": [0.83, 0.83, 0.56, 0.83],
            "ci_high": [1.0, 1.0, 0.94, 1.0],
            "human_mean": [0.458, 0.522, 0.597, 0.632],
            "human_sem": [0.02, 0.025, 0.012, 0.005],
        }
    )
    paper = pd.DataFrame(
        {
            "label": ["paper: zero_shot", "paper: diagonal", "paper: rectangular", "paper: full"],
            "human_accuracy": [paper_x, 0.47, 0.55, 0.63],
            "recovery": [0.95, 0.85, 0.75, 0.80],
            "upper_bound": [False, False, False, True],
        }
    )
    return table, paper


@pytest.mark.parametrize("paper_x", [0.34, 0.70])  # the leftmost point (the paper's), the rightmost
def test_tradeoff_labels_lie_inside_the_plot(paper_x):
    from matplotlib.text import Text

    from modelrecovery.analysis.figures import plot_tradeoff

    table, paper = _tradeoff_inputs(paper_x)
    fig = plot_tradeoff(table, paper=paper)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    box = ax.get_window_extent(renderer)  # inside the axes: over no tick label, never cut
    labels = [t for t in fig.findobj(Text) if t.get_text().startswith("paper: ")]
    assert len(labels) == 4
    for t in labels:
        extent = t.get_window_extent(renderer)
        inside = extent.x0 >= box.x0 and extent.x1 <= box.x1
        assert inside and extent.y0 >= box.y0 and extent.y1 <= box.y1, t.get_text()
    tight = fig.get_tightbbox(renderer)  # everything drawn, in inches
    width, height = fig.get_size_inches()
    assert tight.x0 >= -0.01 and tight.y0 >= -0.01
    assert tight.x1 <= width + 0.01 and tight.y1 <= height + 0.01


def test_every_report_table_scrolls_sideways(tmp_path):
    from html.parser import HTMLParser

    from modelrecovery.analysis import Section, prepare_inputs, write_report
    from modelrecovery.analysis.report import _CSS, section_provenance
    from test_report_sections import models_table, planted

    wide = pd.DataFrame({f"candidate_{i:02d}_with_a_long_name": [i] for i in range(40)})
    sections = [
        Section("wide", "Wide", tables={"wide": wide}),
        section_provenance(
            prepare_inputs(*planted(), models_table()), provenance={"models": ["m" * 30] * 40}
        ),
    ]
    page = write_report(sections, tmp_path, title="T", dpi=40).html.read_text()

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.unwrapped = self.tables = 0

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables += 1
                self.unwrapped += not any(c in ("scroll", "wide") for c in self.stack)
            if tag not in ("br", "img", "meta", "hr", "input", "link"):
                self.stack.append(dict(attrs).get("class", "") if tag == "div" else "")

        def handle_endtag(self, tag):
            if tag not in ("br", "img", "meta", "hr", "input", "link") and self.stack:
                self.stack.pop()

    parser = Tables()
    parser.feed(page)
    assert parser.tables >= 2 and parser.unwrapped == 0
    assert "overflow-x:auto" in _CSS.split(".wide{", 1)[1].split("}", 1)[0]
    assert "overflow:auto" in _CSS.split(".scroll{", 1)[1].split("}", 1)[0]


@pytest.mark.slow
def test_mlflow_run_launcher_puts_its_run_in_the_tracking_home(tmp_path, monkeypatch):
    """`python -m modelrecovery.cli.mlflow_run -e noise_ceiling ...` with no tracking URI
    set, as a lab user types it: `mlflow run`'s own run lands in tracking/mlflow.db (the
    home), in the entry point's experiment; no ./mlflow.db, nothing in Default."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from helpers import repeated_triplets
    from modelrecovery.data.loaders import save_csv

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    project.mkdir()
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(root / name, project / name)
    path = save_csv(repeated_triplets(np.eye(12), 20, 4, seed=0), project / "t.csv")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MLFLOW_")}
    # as in CI: the environment is not activated (its bin folder is not on PATH)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = ":".join(d for d in env.get("PATH", "").split(":") if d != bin_dir)
    done = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli.mlflow_run", "-e", "noise_ceiling",
         "-P", f"triplets={path}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()
    home = project / "tracking" / "mlflow.db"
    client = mlflow.tracking.MlflowClient(f"sqlite:///{home}")
    experiment = client.get_experiment_by_name("default")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["mlflow.project.entryPoint"] == "noise_ceiling"
    assert experiment.artifact_location.startswith((project / "tracking" / "artifacts").as_uri())
    assert not client.search_runs(["0"])  # nothing in Default
