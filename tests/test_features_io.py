"""Feature files (load / save / validation) and image lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modelrecovery.features import (
    FeatureDataError,
    ImageListError,
    MissingImageError,
    load_features,
    load_image_list,
    read_concept_ids,
    read_image_table,
    read_things_image_list,
    save_features,
    things_concept_id,
)

IDS = ["aardvark", "abacus", "accordion", "acorn", "air_conditioner"]


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------------------------
# formats


def test_formats_load_to_the_same_array(tmp_path: Path, x: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", x)
    torch.save(torch.from_numpy(x), tmp_path / "b.pt")
    torch.save({"features": torch.from_numpy(x), "note": 1}, tmp_path / "c.pth")
    torch.save({"anything": torch.from_numpy(x)}, tmp_path / "d.pt")
    np.savetxt(tmp_path / "e.txt", x)  # %.18e: exact for float32
    np.savetxt(tmp_path / "f.tsv", x, delimiter="\t")
    np.savetxt(tmp_path / "g.csv", x, delimiter=",")
    tv = tmp_path / "thingsvision_npy"
    tv.mkdir()
    np.save(tv / "features.npy", x)
    tv_txt = tmp_path / "thingsvision_txt"
    tv_txt.mkdir()
    np.savetxt(tv_txt / "features.txt", x)
    tv_split = tmp_path / "thingsvision_split"
    tv_split.mkdir()
    for i, part in enumerate((x[:2], x[2:4], x[4:]), start=1):
        np.save(tv_split / f"features_{i:02d}.npy", part)
    sources = ["a.npy", "b.pt", "c.pth", "d.pt", "e.txt", "f.tsv", "g.csv"]
    sources += ["thingsvision_npy", "thingsvision_txt", "thingsvision_split"]
    for name in sources:
        got = load_features(tmp_path / name, n_concepts=5)
        assert got.dtype == np.float32 and got.shape == (5, 3), name
        np.testing.assert_array_equal(got, x, err_msg=name)


def test_float64_and_int_inputs_become_float32(tmp_path: Path) -> None:
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))
    np.save(tmp_path / "d.npy", np.ones((3, 2)))
    assert load_features(tmp_path / "i.npy").dtype == np.float32
    assert load_features(tmp_path / "d.npy").dtype == np.float32


def test_text_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("# header comment\n1 2\n\n3 4\n")
    np.testing.assert_array_equal(load_features(tmp_path / "c.txt"), [[1, 2], [3, 4]])


def test_hdf5_needs_h5py_or_loads(tmp_path: Path, x: np.ndarray) -> None:
    try:
        import h5py
    except ImportError:
        (tmp_path / "f.hdf5").write_bytes(b"not really")
        with pytest.raises(FeatureDataError, match="h5py"):
            load_features(tmp_path / "f.hdf5")
        return
    with h5py.File(tmp_path / "f.hdf5", "w") as fh:
        fh.create_dataset("features", data=x)
    np.testing.assert_array_equal(load_features(tmp_path / "f.hdf5"), x)


# --------------------------------------------------------------------------------------------
# rejections


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeatureDataError, match="not found") as e:
        load_features(tmp_path / "nope.npy")
    assert "nope.npy" in _message(e)


def test_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "f.xyz").write_text("1 2\n")
    with pytest.raises(FeatureDataError, match=r"unknown feature file suffix '\.xyz'") as e:
        load_features(tmp_path / "f.xyz")
    assert ".npy" in _message(e)  # lists what is supported


def test_one_d_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones(10, dtype=np.float32))
    with pytest.raises(FeatureDataError, match=r"1-D with shape \(10,\); expected a 2-D") as e:
        load_features(tmp_path / "v.npy")
    assert "v.npy" in _message(e)


def test_three_d_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.ones((2, 3, 4), dtype=np.float32))
    with pytest.raises(FeatureDataError, match="3-D"):
        load_features(tmp_path / "t.npy")


def test_wrong_row_count(tmp_path: Path, x: np.ndarray) -> None:
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(FeatureDataError, match=r"has 5 rows, expected n_concepts=1854") as e:
        load_features(tmp_path / "f.npy", n_concepts=1854)
    assert "f.npy" in _message(e)


def test_nan_row_named(tmp_path: Path, x: np.ndarray) -> None:
    x = x.copy()
    x[3, 1] = np.nan
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(FeatureDataError, match=r"row 3 contains NaN"):
        load_features(tmp_path / "f.npy")
    with pytest.raises(FeatureDataError, match=r"row 3 \(concept 'acorn'\) contains NaN"):
        load_features(tmp_path / "f.npy", concept_ids=IDS)


def test_inf_row_named(tmp_path: Path, x: np.ndarray) -> None:
    x = x.copy()
    x[1, 0] = -np.inf
    torch.save(torch.from_numpy(x), tmp_path / "f.pt")
    with pytest.raises(FeatureDataError, match=r"row 1 contains infinite values"):
        load_features(tmp_path / "f.pt")


def test_empty_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(FeatureDataError, match="empty"):
        load_features(tmp_path / "e.npy")
    (tmp_path / "e.txt").write_text("\n# nothing\n")
    with pytest.raises(FeatureDataError, match="empty"):
        load_features(tmp_path / "e.txt")


def test_bad_text_line_named(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("1 2 3\n4 5 6\n7 oops 9\n")
    with pytest.raises(FeatureDataError, match=r"line 3 is not numeric \('7 oops 9'\)") as e:
        load_features(tmp_path / "f.txt")
    assert "f.txt" in _message(e)


def test_ragged_text_line_named(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(FeatureDataError, match=r"line 2 has 2 values, expected 3"):
        load_features(tmp_path / "f.txt")


def test_pt_dict_ambiguous(tmp_path: Path) -> None:
    torch.save({"a": torch.ones(2, 2), "b": torch.ones(2, 2)}, tmp_path / "f.pt")
    with pytest.raises(FeatureDataError, match="'features' or exactly one tensor"):
        load_features(tmp_path / "f.pt")


def test_folder_without_features(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "file_names.txt").write_text("a.jpg\n")
    with pytest.raises(FeatureDataError, match="no thingsvision features"):
        load_features(tmp_path / "out")


def test_id_mismatch(tmp_path: Path, x: np.ndarray) -> None:
    save_features(tmp_path / "f.npy", x, concept_ids=IDS)
    np.testing.assert_array_equal(load_features(tmp_path / "f.npy", concept_ids=IDS), x)
    swapped = [IDS[1], IDS[0], *IDS[2:]]
    with pytest.raises(FeatureDataError, match="same concepts in a different order") as e:
        load_features(tmp_path / "f.npy", concept_ids=swapped)
    assert "row 0: file has 'aardvark', expected 'abacus'" in _message(e)
    other = [*IDS[:4], "zucchini"]
    with pytest.raises(FeatureDataError, match="different concepts"):
        load_features(tmp_path / "f.npy", concept_ids=other)
    with pytest.raises(FeatureDataError, match="has 5 concept ids, expected 4"):
        load_features(tmp_path / "f.npy", concept_ids=IDS[:4])


def test_ids_txt_sidecar(tmp_path: Path, x: np.ndarray) -> None:
    np.savetxt(tmp_path / "emb.txt", x)
    (tmp_path / "emb_ids.txt").write_text("\n".join(IDS) + "\n")
    assert read_concept_ids(tmp_path / "emb.txt") == tuple(IDS)
    load_features(tmp_path / "emb.txt", concept_ids=IDS)
    with pytest.raises(FeatureDataError, match="do not match"):
        load_features(tmp_path / "emb.txt", concept_ids=IDS[::-1])


def test_concept_ids_without_sidecar_check_rows(tmp_path: Path, x: np.ndarray) -> None:
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(FeatureDataError, match="has 5 rows but 4 concept ids"):
        load_features(tmp_path / "f.npy", concept_ids=IDS[:4])


# --------------------------------------------------------------------------------------------
# saving


def test_save_writes_npy_and_sidecar(tmp_path: Path, x: np.ndarray) -> None:
    meta = {
        "model": "timm:resnet10t",
        "weights": {"kind": "random", "seed": 0},
        "preprocessing": "Compose(...)",
        "image_list_hash": "abc",
    }
    path = save_features(
        tmp_path / "sub" / "f.npy", x.astype(np.float64), concept_ids=IDS, metadata=meta
    )
    assert path == tmp_path / "sub" / "f.npy"
    assert np.load(path).dtype == np.float32
    side = json.loads((tmp_path / "sub" / "f.json").read_text())
    for key in ("model", "weights", "preprocessing", "image_list_hash", "created", "sha256"):
        assert key in side, key
    assert side["shape"] == [5, 3] and side["concept_ids"] == IDS and side["dtype"] == "float32"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.json", "f.npy"]  # no temp


def test_save_rejects_bad_input(tmp_path: Path, x: np.ndarray) -> None:
    bad = x.copy()
    bad[2, 2] = np.nan
    with pytest.raises(FeatureDataError, match="row 2"):
        save_features(tmp_path / "f.npy", bad)
    with pytest.raises(ValueError, match=r"\.npy"):
        save_features(tmp_path / "f.txt", x)
    with pytest.raises(FeatureDataError, match="5 rows but 2 concept ids"):
        save_features(tmp_path / "f.npy", x, concept_ids=IDS[:2])
    with pytest.raises(ValueError, match="reserved"):
        save_features(tmp_path / "f.npy", x, metadata={"shape": [1]})
    assert not any(tmp_path.iterdir())


def test_sidecar_shape_checked(tmp_path: Path, x: np.ndarray) -> None:
    save_features(tmp_path / "f.npy", x)
    np.save(tmp_path / "f.npy", x[:4])  # file replaced behind the sidecar's back
    with pytest.raises(FeatureDataError, match=r"records shape \(5, 3\)"):
        load_features(tmp_path / "f.npy")


# --------------------------------------------------------------------------------------------
# image lists


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_things_concept_id() -> None:
    assert things_concept_id("aardvark_01b.jpg") == "aardvark"
    assert things_concept_id("camera_lens_01b.jpg") == "camera_lens"
    assert things_concept_id("hot-air_balloon_02s.jpg") == "hot-air_balloon"


def test_things_list_nested_flat_and_reordered(tmp_path: Path) -> None:
    names = ["abacus_01b.jpg", "aardvark_01b.jpg", "air_conditioner_01b.jpg"]
    (tmp_path / "names.csv").write_text("image_name\n" + "\n".join(names) + "\n")
    _touch(tmp_path / "img" / "abacus" / "abacus_01b.jpg")
    _touch(tmp_path / "img" / "aardvark_01b.jpg")  # flat
    _touch(tmp_path / "img" / "air_conditioner" / "air_conditioner_01b.jpg")
    il = read_things_image_list(tmp_path / "names.csv", tmp_path / "img")
    assert il.concept_ids == ("abacus", "aardvark", "air_conditioner")
    assert il.files[1] == (tmp_path / "img" / "aardvark_01b.jpg",)
    wanted = ["aardvark", "abacus", "air_conditioner"]
    il = load_image_list(tmp_path / "names.csv", tmp_path / "img", concept_ids=wanted)
    assert il.concept_ids == tuple(wanted)
    assert il.files[0][0].name == "aardvark_01b.jpg"
    with pytest.raises(ImageListError, match=r"no image for 1 concept\(s\), e.g. \['acorn'\]"):
        read_things_image_list(
            tmp_path / "names.csv", tmp_path / "img", concept_ids=[*wanted, "acorn"]
        )


def test_missing_image_names_concept_and_path(tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_text("image_name\naardvark_01b.jpg\nabacus_01b.jpg\n")
    _touch(tmp_path / "img" / "aardvark" / "aardvark_01b.jpg")
    with pytest.raises(MissingImageError) as e:
        read_things_image_list(tmp_path / "names.csv", tmp_path / "img")
    msg = _message(e)
    assert "concept 'abacus'" in msg and str(tmp_path / "img" / "abacus" / "abacus_01b.jpg") in msg
    assert isinstance(e.value, FileNotFoundError)


def test_generic_table_exemplars_and_hash(tmp_path: Path) -> None:
    for name in ("a1.png", "a2.png", "b1.png"):
        _touch(tmp_path / "imgs" / name)
    (tmp_path / "list.csv").write_text(
        "concept,image\ncat,imgs/a1.png\ndog,imgs/b1.png\ncat,imgs/a2.png\n"
    )
    il = load_image_list(tmp_path / "list.csv")
    assert il.concept_ids == ("cat", "dog") and len(il) == 2 and il.n_images == 3
    assert [f.name for f in il.files[0]] == ["a1.png", "a2.png"]
    h1 = il.fingerprint()
    assert h1 == il.fingerprint() and len(h1) == 64
    c1 = il.fingerprint("content")
    (tmp_path / "imgs" / "b1.png").write_bytes(b"changed!")
    assert il.fingerprint() != h1 and il.fingerprint("content") != c1
    (tmp_path / "bad.csv").write_text("concept,image\ncat,imgs/none.png\n")
    with pytest.raises(MissingImageError, match="concept 'cat'.*none.png"):
        read_image_table(tmp_path / "bad.csv")
    (tmp_path / "wrong.csv").write_text("name,file\ncat,imgs/a1.png\n")
    with pytest.raises(ImageListError, match="expected columns 'concept' and 'image'"):
        read_image_table(tmp_path / "wrong.csv")


def test_real_things_names_are_not_in_things_order(tmp_path: Path, things_dir: Path) -> None:
    """The published image-name list uses the 2020 object order; concept_ids fixes it."""
    names = (things_dir / "things1854_image_names.csv").read_text().split()[1:]
    ids = (things_dir / "unique_id.txt").read_text().split()
    for name in names:
        _touch(tmp_path / things_concept_id(name) / name)
    raw = read_things_image_list(things_dir / "things1854_image_names.csv", tmp_path)
    assert len(raw) == 1854 and sorted(raw.concept_ids) == sorted(ids)
    assert sum(a != b for a, b in zip(raw.concept_ids, ids, strict=True)) == 21
    il = read_things_image_list(
        things_dir / "things1854_image_names.csv", tmp_path, concept_ids=ids
    )
    assert il.concept_ids == tuple(ids)
    i = ids.index("camera_lens")
    assert il.files[i] == (tmp_path / "camera_lens" / "camera_lens_01b.jpg",)
