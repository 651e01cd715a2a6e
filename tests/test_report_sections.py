"""The report's sections, each alone on small planted tables with hand-computed answers;
the writer's page links every table and figure it wrote; the one recovery curve (and its
MLflow metric names) of the recover and analyze stages."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelrecovery.analysis import (
    ReportConfig,
    Section,
    binomial_ci,
    level_sort_key,
    prepare_inputs,
    recovery_curve,
    recovery_metric_points,
    section_conditions,
    section_confusion,
    section_geometry,
    section_groups,
    section_provenance,
    section_ranks,
    section_recovery,
    section_regression,
    section_selection,
    section_tradeoff,
    write_report,
)
from modelrecovery.analysis.figures import _new_figure

CFG = ReportConfig(n_resamples=200, n_boot=50, dpi=40)
GENS = ("a", "b", "c")
#: winner per (N, seed) and generator. Recovered: N=10 3 of 6, N=20 5 of 6.
WINNERS = {
    (10, 0): {"a": "a", "b": "a", "c": "c"},
    (10, 1): {"a": "b", "b": "b", "c": "a"},
    (20, 0): {"a": "a", "b": "b", "c": "c"},
    (20, 1): {"a": "a", "b": "b", "c": "b"},
}


def planted(level: str = "full", **columns) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Jobs and scores of :data:`WINNERS`: each job ranks its winner first, then the
    generator (when it lost), then the others alphabetically."""
    jobs, scores = [], []
    for (n, seed), winners in WINNERS.items():
        for g, w in winners.items():
            order = [w] + ([g] if g != w else []) + sorted(set(GENS) - {w, g})
            base = {"job_id": f"{level}-{g}-{n}-{seed}", "generator": g, "n_train": n,
                    "seed": seed, "level": level, "family": level, **columns}  # fmt: skip
            jobs.append(base | {"winner": w, "recovered": w == g, "n_candidates": 3,
                                "generator_rank": order.index(g) + 1})  # fmt: skip
            for r, cand in enumerate(order, start=1):
                acc = 0.9 - 0.1 * r
                scores.append(base | {"candidate": cand, "rank": float(r), "score": acc,
                                      "test_accuracy": acc})  # fmt: skip
    return pd.DataFrame(jobs), pd.DataFrame(scores)


def models_table(level: str = "full") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": list(GENS),
            "family": level,
            "level": level,
            "feature_dim": [4, 5, 6],
            "human_accuracy": [0.5, 0.6, 0.7],
        }  # fmt: skip
    )


@pytest.fixture(scope="module")
def data():
    jobs, scores = planted()
    return prepare_inputs(jobs, scores, models_table())


def test_prepare_inputs_drops_duplicates_and_labels_conditions():
    jobs, scores = planted()
    prepared = prepare_inputs(pd.concat([jobs, jobs.iloc[:2]]), scores)
    assert len(prepared.jobs) == 12 and prepared.conditions == ("full",)
    assert prepared.notes == (
        "2 duplicate job rows dropped (same condition, generator, N and seed, or same job_id).",
    )
    assert prepared.levels == ("full",) and prepared.slugs == {"full": "full"}
    assert prepared.by == ["condition", "level", "family", "n_train"]


def test_section_conditions(data):
    sec = section_conditions(data)
    assert isinstance(sec, Section) and not sec.figures
    row = sec.tables["conditions"].iloc[0]
    assert (row["condition"], row["n_jobs"], row["sizes"]) == ("full", 12, "10, 20")
    assert (row["seeds"], row["generators"]) == (2, 3)


def test_section_recovery(data):
    sec = section_recovery(data, CFG)
    assert set(sec.figures) == {"recovery_accuracy"}
    assert set(sec.tables) == {"recovery_accuracy", "ranks_by_n"}  # one condition
    acc = sec.tables["recovery_accuracy"].set_index("n_train")
    assert acc["n_jobs"].tolist() == [6, 6] and acc["n_recovered"].tolist() == [3, 5]
    assert acc["accuracy"].tolist() == pytest.approx([0.5, 5 / 6])
    assert (acc.loc[20, "ci_low"], acc.loc[20, "ci_high"]) == pytest.approx(binomial_ci(5, 6))
    assert acc["chance"].tolist() == pytest.approx([1 / 3, 1 / 3])
    ranks = sec.tables["ranks_by_n"].set_index("n_train")
    # generator ranks: N=10 1,2,1,2,1,2; N=20 1,1,1,1,1,2
    assert ranks["correct_rank"].tolist() == pytest.approx([1.5, 7 / 6])
    assert ranks["mrr"].tolist() == pytest.approx([0.75, 11 / 12])


def test_section_recovery_side_by_side_per_condition():
    one, one_s = planted("zero_shot")
    two, two_s = planted("full")
    data = prepare_inputs(pd.concat([one, two]), pd.concat([one_s, two_s]))
    sec = section_recovery(data, CFG)
    side = sec.tables["recovery_side_by_side"]
    assert "recovery_side_by_side" in sec.indexed
    assert side.columns.tolist() == ["zero_shot", "full"] and side.index.tolist() == [10, 20]
    low, high = binomial_ci(5, 6)
    assert side.loc[20, "full"] == f"{5 / 6:.3f} [{low:.3f}, {high:.3f}] (n=6)"


def test_section_confusion(data):
    sec = section_confusion(data, CFG)
    name = "confusion_full_n20"  # the largest N by default
    assert set(sec.figures) == {name}
    assert set(sec.tables) == {name, f"{name}_counts", f"{name}_normalized"}
    counts = sec.tables[f"{name}_counts"]
    expected = pd.DataFrame([[2, 0, 0], [0, 2, 0], [0, 1, 1]], index=list(GENS), columns=list(GENS))
    np.testing.assert_array_equal(counts.loc[list(GENS), list(GENS)], expected)
    norm = sec.tables[f"{name}_normalized"]
    assert norm.loc["c", "b"] == pytest.approx(0.5) and norm.loc["a", "a"] == pytest.approx(1.0)
    long = sec.tables[name]
    assert long["count"].sum() == 6 and long["share"].sum() == pytest.approx(3.0)
    assert [b.show for b in sec.blocks if b.kind == "table"] == [False, False, True]
    skipped = section_confusion(data, ReportConfig(confusion_n=(999,)))
    assert not skipped.tables and skipped.notes == (
        "full: none of confusion_n=(999,) present; skipped.",
    )


def test_section_ranks(data):
    sec = section_ranks(data, ReportConfig(rank_n=10, n_resamples=200))
    assert set(sec.figures) == set(sec.tables) == {"ranks_full_n10", "wins_full_n10"}
    wins = sec.tables["wins_full_n10"].set_index("candidate")
    # winners at N=10: a, a, c, b, b, a
    assert wins["wins"].to_dict() == {"a": 3, "b": 2, "c": 1}
    assert wins["share"].to_dict() == pytest.approx({"a": 0.5, "b": 1 / 3, "c": 1 / 6})
    assert wins["fair_share"].tolist() == pytest.approx([1 / 3] * 3)
    ranks = sec.tables["ranks_full_n10"]
    assert len(ranks) == 3 and ranks["n_train"].eq(10).all()


def test_section_groups(data):
    groups = {"objective": {"a": "g1", "b": "g1", "c": "g2"}, "same": dict.fromkeys(GENS, "x")}
    sec = section_groups(data, groups, CFG)
    assert not sec.figures
    assert set(sec.tables) == {"systematic_bias", "systematic_bias_full", "within_objective",
                               "group_confusion_objective_full_counts",
                               "group_confusion_objective_full"}  # fmt: skip
    within = sec.tables["within_objective"]
    pooled = within[within["group"] == "all groups"].set_index("n_train")
    # N=10: b (seed 0) loses to a and a (seed 1) to b inside g1; c alone in g2 always wins
    assert pooled["recovered"].tolist() == [4, 6] and pooled["n_jobs"].tolist() == [6, 6]
    g2 = within[within["group"] == "g2"]
    assert g2["recovery_accuracy"].eq(1.0).all() and g2["chance"].eq(1.0).all()
    counts = sec.tables["group_confusion_objective_full_counts"]
    assert counts.loc["g1", "g1"] == 4 and counts.loc["g2", "g1"] == 1
    assert counts.loc["g2", "g2"] == 1 and counts.to_numpy().sum() == 6
    bias = sec.tables["systematic_bias_full"].set_index("model")
    assert bias["n_train"].eq(20).all() and "condition" not in bias.columns
    assert "Grouping 'same': fewer than two groups; skipped." in sec.text


def test_section_selection():
    jobs, scores = planted()
    assert section_selection(prepare_inputs(jobs, scores), CFG) is None
    jobs["triplet_selection"] = np.where(jobs["seed"] == 0, None, "discriminating")
    sec = section_selection(prepare_inputs(jobs, scores), CFG)
    assert set(sec.figures) == {"selection"}
    assert set(sec.tables) == {"selection", "selection_budget"}
    sel = sec.tables["selection"].set_index(["triplet_selection", "n_train"])
    # seed 0 (random): N=10 a, c recovered; N=20 all; seed 1: N=10 b; N=20 a, b
    expected = {("random", 10): 2 / 3, ("random", 20): 1.0,
                ("discriminating", 10): 1 / 3, ("discriminating", 20): 2 / 3}  # fmt: skip
    for key, value in expected.items():
        assert sel.loc[key, "accuracy"] == pytest.approx(value), key
    budget = sec.tables["selection_budget"].set_index("triplet_selection")
    assert budget.loc["random", "n_measured"] == 20  # 80% first reached at N=20
    assert np.isnan(budget.loc["discriminating", "n_measured"])  # never


def test_section_tradeoff(data):
    sec = section_tradeoff(data, CFG)
    assert set(sec.tables) == {"tradeoff", "tradeoff_by_n"} and set(sec.figures) == {"tradeoff"}
    paper = sec.tables["tradeoff"].iloc[0]
    assert paper["human_mean"] == pytest.approx(0.6) and paper["n_train"] == 20
    assert paper["recovery"] == pytest.approx(5 / 6) and paper["n_jobs"] == 6
    assert len(sec.tables["tradeoff_by_n"]) == 2
    jobs, scores = planted()
    none = section_tradeoff(prepare_inputs(jobs, scores, None), CFG)
    assert not none.tables and none.text == (
        "Skipped: needs the models table with human_accuracy.",
    )


def test_section_geometry_and_regression(data):
    none = section_geometry(data, None, None, None, CFG)
    assert not none.tables and none.notes == ("geometry and regression skipped (no features).",)
    assert section_regression(data, None, CFG).text[0].startswith("Skipped: needs features")
    rng = np.random.default_rng(0)
    feats = {m: rng.normal(size=(12, p)) for m, p in zip(GENS, (4, 5, 6), strict=True)}
    trans = {
        m: np.eye(f.shape[1]) + 0.5 * rng.normal(size=(f.shape[1],) * 2) for m, f in feats.items()
    }
    sec = section_geometry(data, feats, trans, rng.normal(size=(12, 3)), CFG)
    geometry = sec.tables["geometry"]
    assert sorted(geometry["model"]) == list(GENS) and geometry["n_concepts"].eq(12).all()
    shift = sec.tables["human_distance"].set_index("model").loc[list(GENS)]
    distances = geometry.set_index("model").loc[list(GENS)]
    assert shift["human_distance_before"].tolist() == distances["human_distance_before"].tolist()
    assert {"mds", "human_distance"} <= set(sec.figures) and "rdm_similarity" in sec.indexed
    reg = section_regression(data, geometry, CFG)  # 3 models: too few pairs, a note only
    assert not reg.figures and any("regression skipped" in t for t in reg.text)


def test_section_provenance_lists_the_notes(data):
    sec = section_provenance(data, CFG, provenance={"run": "r1"}, notes=["x dropped"])
    page = "".join(b.text for b in sec.blocks if b.kind == "html")
    assert "r1" in page and "<li>x dropped</li>" in page and "n_resamples" in page
    assert not sec.tables and not sec.figures


def test_writer_links_every_table_and_figure(tmp_path, data):
    fig, ax = _new_figure(2, 2)
    ax[0].plot([0, 1])
    extra = Section(
        "extra", "Extra", tables={"hidden": pd.DataFrame({"x": [1]})}, figures={"loose": fig}
    )  # neither is placed by a block: the writer still writes and links them
    sections = [section_recovery(data, CFG), None, section_confusion(data, CFG), extra]
    files = write_report(sections, tmp_path, title="T", dpi=40)
    page = files.html.read_text()
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")}
    links = set(re.findall(r'href="((?:tables|figures)/[^"]+)"', page))
    assert links == on_disk
    assert {p.rsplit(".", 1)[1] for p in on_disk} == {"csv", "png", "svg"}
    assert set(files.tables) == {"recovery_accuracy", "ranks_by_n", "confusion_full_n20",
                                 "confusion_full_n20_counts", "confusion_full_n20_normalized",
                                 "hidden"}  # fmt: skip
    assert set(files.figures) == {"recovery_accuracy", "confusion_full_n20", "loose"}
    assert len(re.findall(r'data-figure="', page)) == 3
    assert re.findall(r'<h2 id="([^"]+)"', page) == ["recovery_accuracy", "confusion_matrices",
                                                      "extra"]  # fmt: skip
    # indexed tables keep their index, the others are written without it
    counts = pd.read_csv(files.tables["confusion_full_n20_counts"], index_col=0)
    assert counts.index.tolist() == list(GENS)
    assert pd.read_csv(files.tables["recovery_accuracy"]).columns[0] == "condition"


# ----------------------------------------------------------------------------- recovery curve
def curve_jobs() -> pd.DataFrame:
    rows = [
        # level, selection, n, recovered
        ("full", None, 10, True), ("full", None, 10, False), ("full", "random", 10, True),
        ("full", "discriminating", 10, True), ("full", None, 20, True),
        ("zero_shot", None, 10, False), ("zero_shot", None, 10, True),
        ("rectangular8", None, 10, True), ("rectangular8", None, 10, True),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["level", "triplet_selection", "n_train", "recovered"])


EXPECTED_CURVE = pd.DataFrame(
    {
        "level": ["zero_shot", "rectangular8", "full", "full", "full"],
        "triplet_selection": ["random", "random", "discriminating", "random", "random"],
        "n_train": [10, 10, 10, 10, 20],
        "recovery_accuracy": [0.5, 1.0, 1.0, 2 / 3, 1.0],
        "n_jobs": [2, 2, 1, 3, 1],
    }
)


def test_recovery_curve_by_hand():
    curve = recovery_curve(curve_jobs())
    pd.testing.assert_frame_equal(curve, EXPECTED_CURVE, check_dtype=False)
    assert curve["n_jobs"].dtype.kind == "i"
    plain = recovery_curve(curve_jobs().drop(columns="triplet_selection"))
    assert plain.columns.tolist() == ["level", "n_train", "recovery_accuracy", "n_jobs"]
    assert plain["recovery_accuracy"].tolist() == pytest.approx([0.5, 1.0, 0.75, 1.0])
    assert recovery_metric_points(curve) == [
        ("recovery_accuracy_zero_shot", 0.5, 10),
        ("recovery_accuracy_rectangular8", 1.0, 10),
        ("recovery_accuracy_full_discriminating", 1.0, 10),
        ("recovery_accuracy_full", pytest.approx(2 / 3), 10),
        ("recovery_accuracy_full", 1.0, 20),
    ]


def test_recovery_curve_splits_conditions_only_where_they_share_a_level():
    jobs = curve_jobs().assign(condition_key="1" * 16)
    jobs.loc[1, "condition_key"] = "2" * 16  # a second full/random condition
    jobs.loc[3, "condition_key"] = "3" * 16  # full/discriminating: alone in its curve
    curve = recovery_curve(jobs, split_conditions=True)
    assert curve.columns.tolist() == ["level", "triplet_selection", "condition_key",
                                      "n_train", "recovery_accuracy", "n_jobs"]  # fmt: skip
    names = {(name, step): value for name, value, step in recovery_metric_points(curve)}
    assert names == {
        ("recovery_accuracy_zero_shot", 10): 0.5,
        ("recovery_accuracy_rectangular8", 10): 1.0,
        ("recovery_accuracy_full_discriminating", 10): 1.0,
        ("recovery_accuracy_full_11111111", 10): 1.0,
        ("recovery_accuracy_full_11111111", 20): 1.0,
        ("recovery_accuracy_full_22222222", 10): 0.0,
    }


def test_the_recover_stage_logs_this_curve():
    """The recover stage (its pipeline) imports this curve, or defines one that gives the
    same frames (read from its source: importing the stage would take seconds)."""
    import ast

    import modelrecovery

    root = Path(modelrecovery.__file__).parent
    checked = 0
    for path in (root / "study" / "pipeline.py", root / "stages" / "recover.py"):
        if not path.exists():
            continue
        source = path.read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.ImportFrom) and node.module == "modelrecovery.analysis.metrics":
                checked += any(alias.name == "recovery_curve" for alias in node.names)
            elif isinstance(node, ast.FunctionDef) and node.name == "recovery_curve":
                namespace = {"pd": pd, "level_sort_key": level_sort_key}
                exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
                for jobs in (curve_jobs(), curve_jobs().drop(columns="triplet_selection")):
                    pd.testing.assert_frame_equal(
                        namespace["recovery_curve"](jobs), recovery_curve(jobs)
                    )
                checked += 1
    if not checked:
        pytest.skip("no recover stage module with a recovery curve found")
