"""The embedded default world: config, rendering, human behaviour, files, cache, generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

import modelrecovery.world.build as world_mod
from modelrecovery.cli import main
from modelrecovery.data import Triplets, load_concept_ids, load_things2023_split, noise_ceiling
from modelrecovery.features import load_features, read_image_table, read_sidecar
from modelrecovery.probe import accuracy_and_nll, triplet_probabilities
from modelrecovery.world import (
    ATTRIBUTES,
    WorldConfig,
    build_world,
    calibrate_temperature,
    concept_names,
    expected_noise_ceiling,
    generated_features,
    human_embedding,
    load_world,
    odd_one_out_probabilities,
    render_image,
    render_world_images,
    visual_attributes,
)

PROJECT = Path(__file__).resolve().parents[1]
SMALL = WorldConfig(n_concepts=40, n_train_triplets=2_000, image_size=32)


@pytest.fixture(scope="module")
def default_world(tmp_path_factory: pytest.TempPathFactory) -> world_mod.World:
    """The default world (about 2 s to build)."""
    return build_world(WorldConfig(), tmp_path_factory.mktemp("worlds"))


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> world_mod.World:
    return build_world(SMALL, tmp_path_factory.mktemp("worlds"))


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# configuration


def test_default_yaml_matches_the_dataclass_defaults() -> None:
    assert WorldConfig.from_yaml(PROJECT / "conf" / "world" / "default.yaml") == WorldConfig()


def test_overrides_parse_and_bad_settings_are_named(tmp_path: Path) -> None:
    cfg = WorldConfig.from_yaml(None, ["n_concepts=60", "target_ceiling=0.7", "seed=3"])
    assert (cfg.n_concepts, cfg.target_ceiling, cfg.seed) == (60, 0.7, 3)
    assert cfg.hash() != WorldConfig().hash()
    assert cfg.folder_name().startswith("world-n60-s3-")
    with pytest.raises(ValueError, match="n_concept"):
        WorldConfig.from_yaml(None, ["n_concept=60"])
    with pytest.raises(ValueError, match="key=value"):
        WorldConfig.from_yaml(None, ["n_concepts"])
    with pytest.raises(ValueError, match="integer"):
        WorldConfig(n_concepts=40.5)
    with pytest.raises(ValueError, match="target_ceiling"):
        WorldConfig(target_ceiling=0.2)
    with pytest.raises(ValueError, match="triplets requested"):
        WorldConfig(n_concepts=10, n_train_triplets=200)
    bad = tmp_path / "w.yaml"
    bad.write_text("world:\n  n_concepts: 50\n  colour: red\n")
    with pytest.raises(ValueError, match=r"w\.yaml.*colour"):
        WorldConfig.from_yaml(bad)


# ----------------------------------------------------------------------------------------------
# concepts, embedding, images


def test_concept_names_distinct_readable_and_seeded() -> None:
    names = concept_names(500, seed=0)
    assert len(set(names)) == 500
    assert all(n.replace("_", "").isalpha() and n.islower() for n in names)
    assert names == concept_names(500, seed=0)
    assert names != concept_names(500, seed=1)


def test_human_embedding_is_sparse_nonnegative_and_seeded() -> None:
    cfg = WorldConfig()
    e = human_embedding(cfg)
    assert e.shape == (cfg.n_concepts, cfg.n_dims)
    assert (e >= 0).all() and (e.sum(axis=1) > 0).all()
    active = (e > 0).sum(axis=1)
    assert 3 <= active.mean() <= 5 and active.max() < cfg.n_dims / 2
    weights = e[e > 0]
    assert np.percentile(weights, 99) > 5 * np.median(weights) / 2  # heavy tail
    assert np.all(np.diff(e.sum(axis=0)) <= 0)  # columns sorted by total weight, like SPoSE
    assert len(np.unique(e, axis=0)) == cfg.n_concepts
    np.testing.assert_array_equal(e, human_embedding(cfg))
    assert not np.array_equal(e, human_embedding(cfg.replace(seed=1)))


def test_rendering_is_deterministic_and_seeded(tmp_path: Path) -> None:
    cfg = SMALL.replace(n_concepts=12, n_exemplars=2, n_train_triplets=100, n_ceiling_triplets=40)
    e = human_embedding(cfg)
    ids = concept_names(cfg.n_concepts, cfg.seed)
    first = render_world_images(cfg, e, ids, tmp_path / "a")
    second = render_world_images(cfg, e, ids, tmp_path / "b")
    assert first == second and len(first) == 24
    assert [c for c, _ in first] == [c for c in ids for _ in range(2)]
    a = [_pixels(tmp_path / "a" / name) for _, name in first]
    for (_, name), pixels in zip(first, a, strict=True):
        np.testing.assert_array_equal(pixels, _pixels(tmp_path / "b" / name))
        assert pixels.shape == (32, 32, 3)
    # a jittered exemplar differs from its reference image but is closer to it than to others
    refs, jittered = a[0::2], a[1::2]
    assert all(not np.array_equal(r, j) for r, j in zip(refs, jittered, strict=True))
    own = np.mean([np.abs(r - j).mean() for r, j in zip(refs, jittered, strict=True)])
    others = np.mean([np.abs(refs[i] - jittered[(i + 1) % 12]).mean() for i in range(12)])
    assert own < others
    # another seed: another embedding and another map to the pictures
    cfg1 = cfg.replace(seed=1)
    render_world_images(cfg1, human_embedding(cfg1), ids, tmp_path / "c")
    assert all(
        not np.array_equal(pixels, _pixels(tmp_path / "c" / name))
        for (_, name), pixels in zip(first, a, strict=True)
    )


def test_render_image_is_pure() -> None:
    attrs = visual_attributes(human_embedding(SMALL), seed=0)
    assert list(attrs.columns) == list(ATTRIBUTES)
    row = attrs.iloc[3].to_dict()
    a, b = render_image(row, 40), render_image(row, 40)
    assert a.size == (40, 40) and a.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_similar_concepts_look_alike(small_world: world_mod.World) -> None:
    """Pixel distances grow with embedding distance; nearest neighbours look closer."""
    images = read_image_table(small_world.image_table_path)
    x = np.stack([_pixels(f[0]).ravel() / 255 for f in images.files])
    e = small_world.human_embedding
    d_img = np.linalg.norm(x[:, None] - x[None], axis=2)
    d_emb = np.linalg.norm(e[:, None] - e[None], axis=2)
    iu = np.triu_indices(len(x), 1)
    assert spearmanr(d_img[iu], d_emb[iu])[0] > 0.15
    np.fill_diagonal(d_emb, np.inf)
    nearest = d_emb.argmin(axis=1)
    np.fill_diagonal(d_emb, -np.inf)
    farthest = d_emb.argmax(axis=1)
    rows = np.arange(len(x))
    assert d_img[rows, nearest].mean() < d_img[rows, farthest].mean()

    def colour_hist(a: np.ndarray) -> np.ndarray:
        q = (a // 64).astype(int)
        return np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64)

    h = np.stack([colour_hist(_pixels(f[0])) / 32**2 for f in images.files])
    d_hist = np.linalg.norm(h[:, None] - h[None], axis=2)
    assert spearmanr(d_hist[iu], np.linalg.norm(e[:, None] - e[None], axis=2)[iu])[0] > 0


# ----------------------------------------------------------------------------------------------
# behaviour and the noise ceiling


def test_probabilities_match_the_probe() -> None:
    e = human_embedding(SMALL)
    rng = np.random.default_rng(0)
    ids = np.stack([rng.choice(SMALL.n_concepts, 3, replace=False) for _ in range(50)])
    ours = odd_one_out_probabilities(e, ids, 0.3)
    probe = triplet_probabilities(
        torch.as_tensor(e), Triplets(ids, np.zeros(50), SMALL.n_concepts), 0.3
    )
    np.testing.assert_allclose(ours, probe, atol=1e-10)


def test_expected_noise_ceiling_limits_and_simulation() -> None:
    assert expected_noise_ceiling(np.full((4, 3), 1 / 3), 7) == pytest.approx(1 / 3)
    assert expected_noise_ceiling(np.eye(3), 5) == pytest.approx(1.0)
    p = np.array([[0.6, 0.3, 0.1], [0.45, 0.45, 0.1], [0.8, 0.1, 0.1], [0.4, 0.35, 0.25]])
    repeats = 6
    exact = expected_noise_ceiling(p, repeats, per_triplet=True)
    rng = np.random.default_rng(0)
    n_sets = 3000
    ids = np.tile(np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]), (repeats, 1))
    probs = np.tile(p, (repeats, 1))
    simulated = []
    for _ in range(n_sets // 100):  # 100 sets at once: shift concept ids per set
        block_ids = np.concatenate([ids + 12 * s for s in range(100)])
        block_p = np.tile(probs, (100, 1))
        odd = (rng.random(len(block_p))[:, None] > np.cumsum(block_p, axis=1)).sum(axis=1)
        simulated.append(noise_ceiling(Triplets(block_ids, np.minimum(odd, 2), 1200)))
    assert np.mean(simulated) == pytest.approx(exact.mean(), abs=0.005)


def test_calibrated_temperature_hits_the_target() -> None:
    e = human_embedding(SMALL)
    ids = np.random.default_rng(1).permuted(np.arange(36).reshape(12, 3), axis=1)
    t, expected = calibrate_temperature(e, ids, 15, 0.7)
    assert expected == pytest.approx(0.7, abs=1e-9)
    probs = odd_one_out_probabilities(e, ids, t)
    assert expected_noise_ceiling(probs, 15) == pytest.approx(0.7, abs=1e-9)
    t_higher, _ = calibrate_temperature(e, ids, 15, 0.6)
    assert t_higher > t  # noisier data: higher temperature


def test_default_world_ceiling_and_files(default_world: world_mod.World) -> None:
    w, cfg = default_world, WorldConfig()
    assert abs(w.realised_ceiling - cfg.target_ceiling) <= 0.01
    assert w.expected_ceiling == pytest.approx(cfg.target_ceiling, abs=1e-6)
    assert noise_ceiling(w.ceiling_set) == pytest.approx(w.realised_ceiling)
    meta = json.loads(w.metadata_path.read_text())
    assert meta["config"] == cfg.to_dict() and meta["config_hash"] == cfg.hash()
    assert meta["temperature"] == pytest.approx(w.temperature) and w.temperature > 0
    assert meta["realised_ceiling"] == pytest.approx(w.realised_ceiling)
    assert len(w.train) == cfg.n_train_triplets
    assert len(w.ceiling_set) == cfg.n_ceiling_triplets * cfg.n_ceiling_repeats
    # the human embedding predicts its own data about as well as the ceiling allows
    acc = accuracy_and_nll(torch.as_tensor(w.human_embedding), w.train)["accuracy"]
    assert 0.6 < acc < 0.85


def test_things_loader_reads_the_world_unchanged(small_world: world_mod.World) -> None:
    w, cfg = small_world, SMALL
    header = w.triplets_path.read_text().splitlines()[0]
    assert header == "image1\timage2\timage3\tchoice\tsubject_id\tnoise_ceiling"
    ids = load_concept_ids(w.concept_ids_path)
    assert ids == w.concept_ids == concept_names(cfg.n_concepts, cfg.seed)
    sets = load_things2023_split(w.triplets_path, n_concepts=cfg.n_concepts, concept_ids=ids)
    assert sorted(sets) == [0, 2]
    train, repeated = sets[0], sets[2]
    assert len(train) == cfg.n_train_triplets
    assert len(repeated) == cfg.n_ceiling_triplets * cfg.n_ceiling_repeats
    assert train == w.train and repeated == w.ceiling_set
    keys = train.sorted_keys()
    assert len(np.unique(keys)) == len(keys)  # unique training triplets
    rep_keys = repeated.sorted_keys()
    assert len(np.unique(rep_keys)) == cfg.n_ceiling_triplets
    assert np.all(np.unique(rep_keys, return_counts=True)[1] == cfg.n_ceiling_repeats)
    assert not np.isin(rep_keys, keys).any()
    assert train.subject.min() >= 1 and train.subject.max() <= cfg.n_subjects
    np.testing.assert_array_equal(np.load(w.embedding_path), w.human_embedding)
    images = read_image_table(w.image_table_path, concept_ids=ids)
    assert images.n_images == cfg.n_concepts


# ----------------------------------------------------------------------------------------------
# the cache


def test_build_world_is_cached_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = world_mod._write_world

    def counting(config: WorldConfig, folder: Path) -> None:
        calls.append(folder)
        real(config, folder)

    monkeypatch.setattr(world_mod, "_write_world", counting)
    cfg = SMALL.replace(n_train_triplets=300, n_ceiling_triplets=60, n_ceiling_repeats=10)
    first = build_world(cfg, tmp_path)
    mtime = first.metadata_path.stat().st_mtime_ns
    second = build_world(cfg, tmp_path)
    assert len(calls) == 1 and second.root == first.root == tmp_path / cfg.folder_name()
    assert second.metadata_path.stat().st_mtime_ns == mtime
    assert second.train == first.train
    assert load_world(first.root).temperature == first.temperature
    build_world(cfg, tmp_path, recompute=True)
    assert len(calls) == 2
    other = build_world(cfg.replace(seed=5), tmp_path)
    assert other.root != first.root and len(calls) == 3
    first.metadata_path.write_text("{not json")  # a damaged world is rebuilt in place
    repaired = build_world(cfg, tmp_path)
    assert len(calls) == 4 and repaired.root == first.root and repaired.train == first.train

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(world_mod, "render_world_images", crash)
    broken = cfg.replace(seed=6)
    with pytest.raises(RuntimeError, match="disk full"):
        build_world(broken, tmp_path)
    assert not (tmp_path / broken.folder_name()).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.root.name, other.root.name])


# ----------------------------------------------------------------------------------------------
# the feature generator


def test_generated_features_shapes_seed_and_spread() -> None:
    e = human_embedding(WorldConfig())
    dims = [512, 1024, 64, 300]
    feats = generated_features(e, dims, seed=0, noise=0.5)
    assert list(feats) == ["gen00_p512", "gen01_p1024", "gen02_p64", "gen03_p300"]
    assert [f.shape for f in feats.values()] == [(240, p) for p in dims]
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in feats.values())
    again = generated_features(e, dims, seed=0, noise=0.5)
    assert all(np.array_equal(feats[k], again[k]) for k in feats)
    other = generated_features(e, dims, seed=1, noise=0.5)
    assert not np.array_equal(feats["gen00_p512"], other["gen00_p512"])
    named = generated_features(e, [16, 16], names=["a", "b"])
    assert list(named) == ["a", "b"] and not np.array_equal(named["a"], named["b"])
    with pytest.raises(ValueError, match="distinct"):
        generated_features(e, [16, 16], names=["a", "a"])

    from modelrecovery.world import human_behaviour

    train = human_behaviour(WorldConfig(n_train_triplets=5_000), e).train
    accs = [
        accuracy_and_nll(torch.as_tensor(f, dtype=torch.float64), train)["accuracy"]
        for f in generated_features(e, [256] * 6, seed=0, noise=0.5).values()
    ]
    assert min(accs) > 0.36 and max(accs) - min(accs) > 0.02
    noiseless = accuracy_and_nll(
        torch.as_tensor(generated_features(e, [256], noise=0.0)["gen00_p256"], dtype=torch.float64),
        train,
    )["accuracy"]
    noisy = accuracy_and_nll(
        torch.as_tensor(generated_features(e, [256], noise=3.0)["gen00_p256"], dtype=torch.float64),
        train,
    )["accuracy"]
    assert noiseless > noisy


# ----------------------------------------------------------------------------------------------
# the command line


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    code = main(["--json", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


TINY = ["n_concepts=12", "n_train_triplets=100", "n_ceiling_triplets=40", "image_size=32"]


def test_world_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _run(capsys, ["world", "--root", str(tmp_path / "w"), "--set", *TINY])
    root = Path(result["root"])
    assert root.parent == tmp_path / "w" and (root / "world.json").is_file()
    assert result["n_concepts"] == 12 and result["n_train_triplets"] == 100
    assert result["n_ceiling_responses"] == 40 * 20 and result["temperature"] > 0
    assert abs(result["realised_ceiling"] - result["target_ceiling"]) <= 0.01
    assert Path(result["triplets"]).is_file() and Path(result["image_table"]).is_file()
    again = _run(capsys, ["world", "--root", str(tmp_path / "w"), "--set", *TINY])
    assert again["root"] == result["root"]
    config = tmp_path / "tiny.yaml"
    config.write_text("".join(f"{s.replace('=', ': ')}\n" for s in TINY))
    same = _run(capsys, ["world", "--config", str(config), "--root", str(tmp_path / "w")])
    assert same["root"] == result["root"]
    code = main(["world", "--root", str(tmp_path / "w"), "--set", "n_concepts=2"])
    assert code == 2 and "n_concepts" in capsys.readouterr().err


@pytest.mark.slow
def test_extract_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _run(capsys, ["world", "--root", str(tmp_path / "w"), "--set", *TINY])
    root = Path(result["root"])

    args = ["extract", "--models", "timm:resnet10t", "--images", str(root)]
    args += ["--out", str(tmp_path / "f"), "--no-progress"]
    out = _run(capsys, args)
    path = Path(out["timm:resnet10t"])
    features = load_features(path, n_concepts=12)
    assert features.shape == (12, 512)
    assert read_sidecar(path)["concept_ids"] == list(concept_names(12, 0))
    mtime = path.stat().st_mtime_ns
    table = _run(capsys, [*args[:4], str(root / "images.csv"), *args[5:]])
    assert table["timm:resnet10t"] == str(path) and path.stat().st_mtime_ns == mtime

    code = main(["extract", "--models", "timm:no_such_net", "--images", str(root), "--out", "x"])
    assert code == 2 and "no_such_net" in capsys.readouterr().err
    code = main(["extract", "--models", "timm:resnet10t", "--images", str(tmp_path), "--out", "x"])
    err = capsys.readouterr().err  # a plain folder is taken as a THINGS image folder
    assert code == 2 and "--things-dir" in err and len(err.strip().splitlines()) == 1
