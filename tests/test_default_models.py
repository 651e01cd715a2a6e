"""The default model set, the resized:<px>:<backbone> wrapper and the model-set report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist

from modelrecovery.features import (
    BackboneWeightsError,
    UnknownBackboneError,
    build_backbone,
    load_features,
    read_sidecar,
)
from modelrecovery.world import (
    WorldConfig,
    build_world,
    generated_features,
    human_behaviour,
    human_embedding,
)
from modelrecovery.world.model_report import model_set_report, rdm, rdm_correlations
from modelrecovery.world.models import (
    DEFAULT_MODELS,
    ModelSpec,
    extract_world_features,
    resolve_models,
)

TINY = WorldConfig(n_concepts=12, n_train_triplets=100, n_ceiling_triplets=40, image_size=32)


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, np.ndarray], object, np.ndarray]:
    e = human_embedding(WorldConfig())
    train = human_behaviour(WorldConfig(n_train_triplets=5_000), e).train
    return generated_features(e, [128, 256, 512, 64], seed=0, noise=0.5), train, e


def test_default_set_is_diverse_and_offline() -> None:
    names = [m.name for m in DEFAULT_MODELS]
    assert len(DEFAULT_MODELS) >= 8 and len(set(names)) == len(names)
    assert len({m.family for m in DEFAULT_MODELS}) == len(DEFAULT_MODELS)
    pretrained = [m.name for m in DEFAULT_MODELS if m.pretrained]
    assert pretrained == ["resized:128:efficientnet_lite0_imagenet"]
    joined = " ".join(names)
    for family in ("resnet", "convnext", "vit_", "open_clip:", "mobilenet", "efficientnet_lite0"):
        assert family in joined
    assert all(n.startswith("resized:128:") for n in names)  # the world's 128 px images


def test_resolve_models() -> None:
    assert resolve_models(None) == list(DEFAULT_MODELS) == resolve_models([])
    specs = resolve_models(["timm:resnet10t", ModelSpec("x", True)], pretrained=True)
    assert specs == [ModelSpec("timm:resnet10t", True), ModelSpec("x", True)]
    mapped = resolve_models({"a": "timm:resnet10t", "b": {"name": "y", "family": "f"}})
    assert mapped == [ModelSpec("timm:resnet10t"), ModelSpec("y", False, "f")]
    with pytest.raises(ValueError, match="repeat"):
        resolve_models(["a", "a"])


def test_rdm_metrics() -> None:
    x = np.random.default_rng(0).normal(size=(9, 5))
    np.testing.assert_allclose(rdm(x, "euclidean"), cdist(x, x), atol=1e-9)
    np.testing.assert_allclose(rdm(x, "correlation"), cdist(x, x, "correlation"), atol=1e-9)
    with pytest.raises(ValueError, match="metric"):
        rdm(x, "cosine")
    corr = rdm_correlations({"a": x, "b": 2 * x + 1, "c": x[::-1]})
    assert corr.loc["a", "b"] == pytest.approx(1.0)
    assert corr.loc["a", "c"] < 0.9


def test_model_set_report_on_generated_features(generated) -> None:
    feats, train, e = generated
    report = model_set_report(feats, train, human_embedding=e)
    expected = {
        "feature_dim",
        "zero_shot_accuracy",
        "zero_shot_nll",
        "zero_shot_accuracy_centred",
        "zero_shot_z",
        "rdm_corr_min",
        "rdm_corr_median",
        "rdm_corr_max",
        "most_similar",
        "near_copy",
        "uninformative",
        "rdm_corr_human",
    }
    assert expected <= set(report.columns)
    assert list(report.index) == list(feats)
    assert report["feature_dim"].tolist() == [128, 256, 512, 64]
    assert report["zero_shot_accuracy"].between(0.36, 1).all()
    assert (report["zero_shot_nll"] < np.log(3)).all()
    assert report[["rdm_corr_min", "rdm_corr_max"]].abs().le(1 + 1e-9).all().all()
    assert (report["rdm_corr_min"] <= report["rdm_corr_median"]).all()
    assert not report["uninformative"].any() and not report["near_copy"].any()
    assert (report["rdm_corr_human"] > 0).all()
    spread = report.attrs["rdm_correlation_spread"]
    assert spread["min"] <= spread["median"] <= spread["max"] < 0.95
    assert report.attrs["rdm_correlations"].shape == (4, 4)


def test_model_set_report_flags_copies_and_noise(generated) -> None:
    feats, train, _ = generated
    rng = np.random.default_rng(1)
    base = feats["gen00_p128"]
    more = {
        **feats,
        "copy": base * 3 + rng.normal(scale=1e-3 * base.std(), size=base.shape),
        "noise": rng.normal(size=(base.shape[0], 50)),
    }
    report = model_set_report(more, train)
    assert report.loc["copy", "near_copy"] and report.loc["gen00_p128", "near_copy"]
    assert report.loc["copy", "most_similar"] == "gen00_p128"
    assert report.loc["noise", "uninformative"]
    assert abs(report.loc["noise", "zero_shot_accuracy"] - 1 / 3) < 0.03
    with pytest.raises(ValueError, match="rows"):
        model_set_report({"short": base[:10]}, train)


def test_resized_wrapper_builds_small_inputs() -> None:
    b = build_backbone("resized:64:timm:resnet10t", pretrained=False, seed=0)
    x = b.transform(Image.new("RGB", (50, 80), (10, 200, 30)))
    assert tuple(x.shape) == (3, 64, 64)
    assert b.feature_dim == 512 and b.description["input_px"] == 64
    assert b.description["wrapper"] == "resized" and "64" in b.description["preprocessing"]
    again = build_backbone("resized:64:timm:resnet10t", pretrained=False, seed=0)
    with torch.inference_mode():
        np.testing.assert_array_equal(b.model(x[None]).numpy(), again.model(x[None]).numpy())
    assert not b.description["rebuilt_for_input_px"]
    with pytest.raises(BackboneWeightsError, match="random weights"):
        build_backbone("resized:64:timm:vit_tiny_patch16_224", pretrained=True)
    for bad in ("resized:abc:timm:resnet10t", "resized:64", "resized:8:timm:resnet10t"):
        with pytest.raises(UnknownBackboneError, match="resized"):
            build_backbone(bad, pretrained=False)
    with pytest.raises(UnknownBackboneError, match="no model"):
        build_backbone("resized:64:timm:no_such_net", pretrained=False)


@pytest.mark.slow
def test_resized_wrapper_rebuilds_fixed_grid_models() -> None:
    vit = build_backbone("resized:64:timm:vit_tiny_patch16_224", pretrained=False, seed=0)
    with torch.inference_mode():
        assert tuple(vit.model(torch.zeros(2, 3, 64, 64)).shape) == (2, 192)
    assert vit.description["rebuilt_for_input_px"] and vit.feature_dim == 192
    clip = build_backbone("resized:64:open_clip:ViT-S-32", pretrained=False, seed=0)
    assert tuple(clip.transform(Image.new("RGB", (64, 64))).shape) == (3, 64, 64)
    assert clip.feature_dim == 384 and clip.description["library"] == "open_clip"
    with pytest.raises(BackboneWeightsError, match="random weights"):
        build_backbone("resized:64:open_clip:ViT-S-32", pretrained=True)


def test_extract_world_features_is_cached(tmp_path: Path) -> None:
    world = build_world(TINY, tmp_path / "worlds")
    models = ["resized:32:timm:resnet10t"]
    paths = extract_world_features(world, models, progress=False)
    path = paths[models[0]]
    assert path.parent == world.root / "features"
    assert load_features(path, concept_ids=world.concept_ids).shape == (12, 512)
    meta = read_sidecar(path)
    assert meta["backbone"]["input_px"] == 32 and meta["model"] == models[0]
    mtime = path.stat().st_mtime_ns
    again = extract_world_features(world.root, models, tmp_path / "other", progress=False)
    assert again[models[0]].parent == tmp_path / "other"
    assert extract_world_features(world, models, progress=False)[models[0]] == path
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_default_set_on_the_default_world(tmp_path: Path) -> None:
    """Every default model extracts; none is a near copy or carries no image information."""
    world = build_world(WorldConfig(), tmp_path / "worlds")
    paths = extract_world_features(world, progress=False)
    assert list(paths) == [m.name for m in DEFAULT_MODELS]
    feats = {name: load_features(p, n_concepts=world.n_concepts) for name, p in paths.items()}
    report = model_set_report(feats, world.train)
    assert not report["near_copy"].any(), report["rdm_corr_max"]
    assert not report["uninformative"].any(), report["zero_shot_accuracy"]
    assert report.loc["resized:128:efficientnet_lite0_imagenet", "feature_dim"] == 1280
