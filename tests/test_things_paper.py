"""conf/things_paper.yaml: the study's 20 models (and the 10 of its 30-model ablation) with
their timm / open_clip identifiers checked offline, metadata, levels, sizes and seeds, the
ablations as overrides, extraction by study config (missing weights named), PCA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from modelrecovery.cli import main
from modelrecovery.config import CONF_DIR
from modelrecovery.features.pca import pca_feature_file, pca_scores
from modelrecovery.recovery.grid import GridConfig, Level
from modelrecovery.study.inputs import model_names, study_inputs
from modelrecovery.study.pipeline import grid_config, level_grids
from modelrecovery.study.spec import StudySpec, load_spec

# scripts_configurations/shared_args.yaml of brainsandmachines/oddoneout_model_recovery
STUDY_MODELS = [
    "BarlowTwins_RN50", "Beit_V2_Large", "ConvNext_Large", "Clip_RN50", "CORnet_S",
    "Deit3_Huge", "DINOv2_ViT_Large", "DenseNet201", "EfficientNet_B7", "Fair_Clip_ViT_Large",
    "Fair_SLIP_ViT_Large", "Fair_SimCLR_ViT_Large", "Google_ViT_Large", "InceptionRN_V2",
    "Inception_V3", "ResNet50", "SWAV_RN50", "VicReg_RN50", "VGG19", "NASNet_Large",
]  # fmt: skip
STUDY_EXTRA = [
    "OpenCLIP_ConvNext_XL", "ALIGN", "FLAVA_Full", "SigLIP2_Base_P16_224", "AlexNet", "BLIP_2",
    "EVA02_CLIP_Enormous", "PE_Huge", "Image_Bind_Huge", "Clip_ViT_Large",
]  # fmt: skip


@pytest.fixture(scope="module")
def config() -> StudySpec:
    return load_spec("things_paper")


def test_the_twenty_models_and_their_metadata(config):
    assert sorted(config.models) == sorted(STUDY_MODELS)
    assert sorted(config.extra_models) == sorted(STUDY_EXTRA)
    entries = config.file_models()
    assert sorted(entries) == sorted(STUDY_MODELS)  # extra models only when included
    objectives = [e.objective for e in entries.values()]
    architectures = [e.architecture for e in entries.values()]
    # as the study's models_objective and architecture_dict
    assert objectives.count("supervised") == 11
    assert objectives.count("self-supervised") == 6
    assert objectives.count("image-text") == 3
    assert architectures.count("transformer") == 7 and architectures.count("CNN") == 13
    assert entries["Clip_RN50"].backbone == "open_clip:RN50:openai"
    slots = sorted(n for n, e in entries.items() if not e.backbone)
    assert slots == sorted(
        [
            "CORnet_S", "BarlowTwins_RN50", "SWAV_RN50", "VicReg_RN50", "Fair_SimCLR_ViT_Large",
            "Fair_Clip_ViT_Large", "Fair_SLIP_ViT_Large",
        ]
    )  # fmt: skip
    assert all(entries[n].source for n in slots)  # where to get them
    every = load_spec("things_paper", ["include_extra_models=true"])
    assert len(model_names(every)) == 30


def test_every_identifier_is_known_to_timm_or_open_clip(config):
    import open_clip
    import timm

    clip_tags = set(open_clip.list_pretrained())
    entries = {**config.models, **config.extra_models}
    checked = 0
    for name, entry in entries.items():
        backbone = entry.backbone
        if backbone is None:
            continue
        library, _, spec = backbone.partition(":")
        if library == "timm":
            assert "." in spec, f"{name}: give the weights tag ({spec})"
            arch = spec.split(".")[0]
            assert spec in timm.list_pretrained(arch + "*"), f"{name}: {spec} unknown to timm"
        else:
            assert library == "open_clip", name
            arch, _, tag = spec.partition(":")
            assert (arch, tag) in clip_tags, f"{name}: {arch}:{tag} unknown to open_clip"
        checked += 1
    assert checked == 13 + 3


def test_levels_sizes_and_seeds_as_the_study(config):
    levels = config.grid.levels
    assert [(lv.family, lv.k) for lv in levels] == [
        ("zero_shot", None),
        ("diagonal", None),
        ("rectangular", 30),
        ("full", None),
    ]
    grid = grid_config(config, model_names(config))
    parts = level_grids(grid, config)
    assert [[lv.label for lv in p.levels] for p in parts] == [
        ["zero_shot", "diagonal", "rectangular30"],
        ["full"],
    ]
    assert parts[0].sizes == (400, 25600, 204800, 1638400) and parts[0].seeds == tuple(range(10))
    assert len(parts[1].sizes) == 18 and parts[1].sizes[0] == 50 and parts[1].sizes[-1] == 4200000
    assert parts[1].seeds == tuple(range(30))
    assert grid.lams == tuple(10.0**e for e in range(-6, 5))
    assert grid.tie_rule == "random" and grid.stopping == "study"
    # a job's id does not depend on which grid ran it
    one = GridConfig(("a",), ("a", "b"), (400,), (0,), (Level("full"),))
    two = GridConfig(("a",), ("a", "b"), (400, 800), (0, 1), (Level("full"),))
    assert one.key() == two.key()


def test_ablations_are_overrides(config):
    l1 = load_spec("things_paper", ["probe.regulariser=l1", "grid.regulariser=l1"])
    assert l1.probe.regulariser == l1.grid.regulariser == "l1"
    pca = load_spec("things_paper", ["data.pca=500", "study=things-paper-pca500"])
    assert pca.data.pca == 500 and pca.study == "things-paper-pca500"
    with pytest.raises(ValueError, match=r"data.pca = 0"):
        load_spec("things_paper", ["data.pca=0"])


def test_model_labels_are_free_text_and_bad_entries_one_line(tmp_path, config):
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["models"]["ResNet50"]["objective"] = "unsupervised"  # any label
    raw["models"]["ResNet50"]["labels"] = {"training_data": "ImageNet-1k"}
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(raw))
    entry = load_spec(str(path)).file_models()["ResNet50"]
    assert entry.objective == "unsupervised" and entry.labels == {"training_data": "ImageNet-1k"}
    raw["models"]["ResNet50"]["objective"] = ["not", "text"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as caught:
        load_spec(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f"config {path}: models.ResNet50.objective = ['not', 'text']: expected text or null"
    )


def _tiny_study(tmp_path: Path, models: dict) -> Path:
    config = {
        "study": "tiny",
        "data": {
            "kind": "files",
            "triplets": str(tmp_path / "triplets.csv"),
            "n_concepts": 5,
            "features_dir": str(tmp_path / "features"),
            "pca": None,
        },
        "models": models,
        "probe": {"regulariser": "scalar_shrinkage"},
        "tune": {"lams": [1.0]},
        "grid": {"sizes": [10], "seeds": [0], "levels": [{"family": "full"}], "lams": [1.0]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _image_table(tmp_path: Path) -> Path:
    rows = ["concept,image"]
    for i in range(5):
        Image.new("RGB", (8, 8), (40 * i, 255 - 40 * i, 90)).save(tmp_path / f"c{i}.png")
        rows.append(f"c{i},c{i}.png")
    table = tmp_path / "images.csv"
    table.write_text("\n".join(rows) + "\n")
    return table


@pytest.mark.slow
def test_extract_by_study_config_pretrained_lite0_and_slots(tmp_path, capsys):
    """The one pretrained network shipped as a package, through a study config."""
    study = _tiny_study(
        tmp_path,
        {
            "Lite0": {
                "file": "Lite0.npy",
                "backbone": "efficientnet_lite0_imagenet",
                "objective": "supervised",
                "architecture": "CNN",
            },
            "Slot": {"file": "Slot.npy", "backbone": None, "source": "thingsvision"},
        },
    )
    code = main(
        [
            "--json",
            "extract",
            "--config",
            str(study),
            "--images",
            str(_image_table(tmp_path)),
            "--out",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    features = np.load(tmp_path / "features" / "Lite0.npy")
    assert features.shape == (5, 1280)
    assert result["Slot"].startswith("to fill: ") and "thingsvision" in result["Slot"]


def test_missing_weights_name_the_model_and_what_to_do(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    study = _tiny_study(
        tmp_path, {"ResNet18": {"file": "ResNet18.npy", "backbone": "timm:resnet18.a1_in1k"}}
    )
    argv = ["extract", "--config", str(study), "--images", str(_image_table(tmp_path))]
    code = main([*argv, "--out", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "model ResNet18 (timm:resnet18.a1_in1k): no pretrained weights" in err
    assert "HF_HUB_OFFLINE" in err and "fill" in err
    # random weights work (the same model built with pretrained=False)
    code = main([*argv, "--out", str(tmp_path / "cache"), "--no-progress", "--random-weights"])
    assert code == 0 and np.load(tmp_path / "features" / "ResNet18.npy").shape == (5, 512)


def test_missing_feature_files_say_how_to_make_them(tmp_path):
    study = _tiny_study(
        tmp_path,
        {
            "A": {"file": "A.npy", "backbone": "timm:resnet50.tv_in1k"},
            "B": {"file": "B.npy", "source": "thingsvision 'cornet-s'"},
        },
    )
    with pytest.raises(FileNotFoundError) as err:
        study_inputs(load_spec(str(study)), progress=False)
    text = str(err.value)
    assert "2 feature file(s) not found" in text
    assert "A: " in text and "(extract timm:resnet50.tv_in1k)" in text
    assert "(fill from thingsvision 'cornet-s')" in text and "extract --config" in text


def test_pca_as_the_study(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 40)) @ rng.normal(size=(40, 80))  # rank 40, p = 80
    scores, ratio = pca_scores(x, 500)
    assert scores.shape == (60, 40)  # capped by the rank
    assert np.isclose(ratio.sum(), 1.0)
    scores10, _ = pca_scores(x, 10)
    assert np.allclose(scores10, scores[:, :10], atol=1e-4)
    # distances of the full-rank scores equal those of the centred features
    centred = x - x.mean(0)
    assert np.allclose(scores @ scores.T, centred @ centred.T, rtol=1e-3, atol=1e-2)
    np.save(tmp_path / "m.npy", x.astype(np.float32))
    path = pca_feature_file(tmp_path / "m.npy", 10, tmp_path / "pca10", "m")
    assert np.load(path).shape == (60, 10)
    mtime = path.stat().st_mtime_ns
    assert pca_feature_file(tmp_path / "m.npy", 10, tmp_path / "pca10", "m").stat().st_mtime_ns == (
        mtime
    )  # cached


def test_recover_refuses_missing_files_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    code = main(["recover", "--config", "things_paper"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "20 feature file(s) not found" in err and "extract --config" in err
    assert "Clip_RN50: data/things/features/Clip_RN50.npy (extract open_clip:RN50:openai)" in err


def test_pca_study_inputs(tmp_path):
    rng = np.random.default_rng(1)
    study = _tiny_study(tmp_path, {"A": "A.npy", "B": {"file": "B.npy"}})
    (tmp_path / "features").mkdir()
    for name in "AB":
        np.save(tmp_path / "features" / f"{name}.npy", rng.normal(size=(5, 12)).astype("f4"))
    rows = ["image1\timage2\timage3\tchoice\tsubject_id\tnoise_ceiling"]
    rows += [f"{i % 5 + 1}\t{(i + 1) % 5 + 1}\t{(i + 2) % 5 + 1}\t1\t0\t0" for i in range(20)]
    rows += ["1\t2\t3\t1\t1\t2", "1\t2\t3\t2\t2\t2"]
    (tmp_path / "triplets.csv").write_text("\n".join(rows) + "\n")
    config = load_spec(str(study), ["data.pca=3"])
    inputs = study_inputs(config, progress=False)
    assert inputs.feature_paths["A"] == tmp_path / "features" / "pca3" / "A.npy"
    assert np.load(inputs.feature_paths["B"]).shape == (5, 3)
    assert inputs.provenance["pca"] == 3
