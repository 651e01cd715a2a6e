"""The default model set (backbones plus human read-outs), the resized:<px>:<backbone>
wrapper and the model-set report."""

from __future__ import annotations

import subprocess
import sys
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
from modelrecovery.probe import accuracy_and_nll, fit_probe
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
    SIMILARITY_STD,
    SUGGESTED_RECTANGULAR_K,
    ModelSpec,
    Readout,
    extract_world_features,
    model_metadata,
    readout_features,
    resolve_models,
    world_model_features,
    world_model_names,
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
    for family in ("resnet", "vit_", "open_clip:", "efficientnet_lite0", "fastvit", "mobileone"):
        assert family in joined
    assert all(n.startswith("resized:128:") for n in names)  # the world's 128 px images
    readouts = [m.readout for m in DEFAULT_MODELS]
    assert all(r is not None for r in readouts)
    assert len({r.seed for r in readouts}) == len(readouts)  # each its own random stream
    assert len({r.nonlinearity for r in readouts}) >= 4 and len({r.share for r in readouts}) >= 6
    assert world_model_names() == [m.short for m in DEFAULT_MODELS]
    assert world_model_names()[:2] == ["resnet10t", "vit_tiny_patch16_224"]
    assert 1 <= SUGGESTED_RECTANGULAR_K < WorldConfig().n_dims


def test_resolve_models() -> None:
    assert resolve_models(None) == list(DEFAULT_MODELS) == resolve_models([])
    specs = resolve_models(["timm:resnet10t", ModelSpec("x", True)], pretrained=True)
    assert specs == [ModelSpec("timm:resnet10t", True), ModelSpec("x", True)]
    mapped = resolve_models({"a": "timm:resnet10t", "b": {"name": "y", "family": "f"}})
    assert mapped == [ModelSpec("timm:resnet10t"), ModelSpec("y", False, "f")]
    with_readout = resolve_models([{"name": "z", "readout": {"share": 0.2, "seed": 3}}])
    assert with_readout[0].readout == Readout(0.2, seed=3)
    with pytest.raises(ValueError, match="repeat"):
        resolve_models(["a", "a"])
    with pytest.raises(ValueError, match="repeat"):
        world_model_names(["timm:resnet10t", "resized:64:timm:resnet10t"])
    for bad in (
        {"share": 1.0},
        {"share": 0.2, "nonlinearity": "cube"},
        {"share": 0.2, "noise": -1},
    ):
        with pytest.raises(ValueError, match="Readout"):
            Readout(**bad)


def test_readout_features_follow_the_recipe(generated) -> None:
    """Deterministic, seeded, partial; the read-out's share sets the zero-shot accuracy."""
    _, train, e = generated
    backbone = np.random.default_rng(0).lognormal(size=(e.shape[0], 300)).astype(np.float32)
    recipe = Readout(0.3, n_missing=3, gain_sd=0.5, nonlinearity="sqrt", noise=0.2, max_dim=200)
    x, details = readout_features(backbone, e, recipe, world_seed=0)
    again, _ = readout_features(backbone, e, recipe, world_seed=0)
    np.testing.assert_array_equal(x, again)
    other, _ = readout_features(backbone, e, recipe, world_seed=1)
    assert not np.allclose(x, other)
    assert x.shape == (e.shape[0], 200) and x.dtype == np.float32
    assert details["projected_from"] == 300 and len(details["missing_dims"]) == 3
    assert min(details["missing_dims"]) >= e.shape[1] // 4  # only less prevalent dims go
    gram = x.astype(np.float64) @ x.T
    assert gram[np.triu_indices(len(x), 1)].std() == pytest.approx(SIMILARITY_STD, rel=1e-3)

    def zero_shot(share: float) -> float:
        feats, _ = readout_features(backbone, e, Readout(share, seed=1), world_seed=0)
        return accuracy_and_nll(torch.as_tensor(feats, dtype=torch.float64), train)["accuracy"]

    accs = [zero_shot(s) for s in (0.02, 0.3, 0.9)]
    assert accs[0] < 0.4 < accs[1] < accs[2]
    with pytest.raises(ValueError, match="fewer"):
        readout_features(backbone[:, :10], e, Readout(0.5), world_seed=0)


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


def test_model_set_report_scores_like_the_probe(generated) -> None:
    """The report's NumPy zero-shot accuracies are the probe's (torch) ones, exactly: on the
    Gram-matrix path (many features) and the triplet-by-triplet one (few), with exact ties
    (duplicated concepts; small integers, their column means exactly 0)."""
    feats, train, _ = generated
    n = train.n_concepts
    rng = np.random.default_rng(3)
    dup = feats["gen00_p128"][:, :4].copy()
    dup[1::2] = dup[0::2]
    half = rng.integers(-2, 3, size=(n // 2, 16)).astype(np.float64)
    ints = np.concatenate([half, -half])
    more = {
        "gram": feats["gen00_p128"],
        "rows": feats["gen00_p128"][:, :4],
        "dup": dup,
        "ints_gram": ints,
        "ints_rows": ints[:, :6],
    }
    report = model_set_report(more, train)
    for name, x in more.items():
        centred = x - x.mean(axis=0)
        assert (
            report.loc[name, "zero_shot_accuracy"]
            == accuracy_and_nll(torch.as_tensor(x), train)["accuracy"]
        )
        assert (
            report.loc[name, "zero_shot_accuracy_centred"]
            == accuracy_and_nll(torch.as_tensor(centred), train)["accuracy"]
        )


def test_model_set_report_imports_neither_torch_nor_the_probe() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from modelrecovery.data.triplets import Triplets\n"
        "from modelrecovery.world.model_report import model_set_report\n"
        "rng = np.random.default_rng(0)\n"
        "ids = np.array([rng.choice(10, 3, replace=False) for _ in range(30)])\n"
        "t = Triplets(ids=ids, odd=rng.integers(0, 3, 30), n_concepts=10)\n"
        "model_set_report({'a': rng.normal(size=(10, 4)), 'b': rng.normal(size=(10, 3))}, t)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'modelrecovery.probe'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


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


def test_world_model_features_cache_the_read_out(tmp_path: Path) -> None:
    world = build_world(TINY, tmp_path / "worlds")
    spec = ModelSpec("resized:32:timm:resnet10t", readout=Readout(0.3, 1, max_dim=64, seed=1))
    paths = world_model_features(world, [spec], progress=False)
    assert list(paths) == ["resnet10t"]
    path = paths["resnet10t"]
    assert path.parent == world.root / "features" and path.name.startswith("model_resnet10t-")
    assert load_features(path, concept_ids=world.concept_ids).shape == (12, 64)
    meta = read_sidecar(path)
    assert meta["readout"]["share"] == 0.3 and meta["projected_from"] == 512
    assert meta["n_parameters"] > 4e6 and "human dimensions" in meta["description"]
    assert (
        meta["backbone_name"] == spec.name and (path.parent / meta["backbone_features"]).is_file()
    )
    mtime = path.stat().st_mtime_ns
    assert world_model_features(world, [spec], progress=False)["resnet10t"] == path
    assert path.stat().st_mtime_ns == mtime
    changed = ModelSpec(spec.name, readout=Readout(0.3, 1, max_dim=64, seed=2))
    assert world_model_features(world, [changed], progress=False)["resnet10t"] != path
    plain = world_model_features(world, ["resized:32:timm:resnet10t"], progress=False)
    assert read_sidecar(plain["resnet10t"])["model"] == "resized:32:timm:resnet10t"
    meta = model_metadata(["resized:32:timm:resnet10t"])["resnet10t"]
    assert meta["n_parameters"] == read_sidecar(path)["n_parameters"] and meta["readout"] is None


@pytest.mark.slow
def test_default_set_on_the_default_world(tmp_path: Path) -> None:
    """The default set in the paper's regime: zero-shot spread above chance, full probes near
    the noise ceiling, no near copies, features a deterministic function of the world."""
    world = build_world(WorldConfig(), tmp_path / "worlds")
    paths = world_model_features(world, progress=False)
    assert list(paths) == world_model_names()
    feats = {name: load_features(p, n_concepts=world.n_concepts) for name, p in paths.items()}
    test = world.ceiling_set
    report = model_set_report(feats, test)
    zero_shot = report["zero_shot_accuracy"]
    assert zero_shot.min() > 0.35 and zero_shot.max() < 0.6 and np.ptp(zero_shot) > 0.12
    assert report["rdm_corr_max"].max() < 0.8, report["rdm_corr_max"]
    assert report["feature_dim"].between(64, 768).all()
    for name in ("resnet10t", "vit_tiny_patch16_224"):  # the weakest and a strong zero-shot
        probe = fit_probe(feats[name], world.train, family="full", lam=1e-2)
        assert probe.evaluate(feats[name], test)["accuracy"] > 0.9 * world.realised_ceiling
    again = extract_world_features(world, DEFAULT_MODELS[:1], tmp_path / "again", progress=False)
    np.testing.assert_array_equal(load_features(next(iter(again.values()))), feats["resnet10t"])
    meta = model_metadata(n_dims=world.config.n_dims)
    assert list(meta) == list(paths) and all(m["n_parameters"] > 5e5 for m in meta.values())
