"""Loaders of triplet files: round trips, the 2020 id mapping, error messages, real THINGS files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelrecovery.data import (
    TripletDataError,
    Triplets,
    detect_format,
    load_concept_ids,
    load_csv,
    load_sortindex,
    load_things2020,
    load_things2023,
    load_things2023_split,
    load_things2023_table,
    load_triplets,
    noise_ceiling,
    save_csv,
)

THINGS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "things"
HEADER_2023 = "image1\timage2\timage3\tchoice\tsubject_id\tnoise_ceiling"


def _random_triplets(rng: np.random.Generator, m: int, n_concepts: int) -> np.ndarray:
    return np.stack([rng.choice(n_concepts, 3, replace=False) for _ in range(m)])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_2023(path: Path, ids1: np.ndarray, choice1: np.ndarray, subj, nc) -> Path:
    lines = [HEADER_2023]
    for row, c, s, n in zip(ids1, choice1, subj, nc, strict=True):
        lines.append("\t".join(str(v) for v in (*row, c, s, n)))
    return _write(path, "\n".join(lines) + "\n")


def _write_2020(path: Path, ids1: np.ndarray, choice1: np.ndarray, subj) -> Path:
    lines = [
        "\t".join(str(v) for v in (*row, c, s))
        for row, c, s in zip(ids1, choice1, subj, strict=True)
    ]
    return _write(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


def test_things2023_round_trip_and_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = _random_triplets(rng, 50, 20)
    odd = rng.integers(0, 3, 50)
    subj = rng.integers(0, 1000, 50)
    nc = rng.integers(0, 4, 50)
    path = _write_2023(tmp_path / "t2023.csv", ids + 1, odd + 1, subj, nc)
    t = load_things2023(path, n_concepts=20)
    np.testing.assert_array_equal(t.ids, ids)
    np.testing.assert_array_equal(t.odd, odd)
    np.testing.assert_array_equal(t.subject, subj)
    assert t.n_concepts == 20
    t2, nc_col = load_things2023_table(path, n_concepts=20)
    assert t2 == t
    np.testing.assert_array_equal(nc_col, nc)
    split = load_things2023_split(path, n_concepts=20)
    assert sorted(split) == sorted(set(nc.tolist()))
    for v, part in split.items():
        np.testing.assert_array_equal(part.ids, ids[nc == v])
        np.testing.assert_array_equal(part.odd, odd[nc == v])
    assert load_triplets(path, n_concepts=20) == t
    assert detect_format(path) == "things2023"


def test_things2023_default_n_concepts_and_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", HEADER_2023 + "\n1\t1854\t3\t2\t7\t0\n")
    t = load_things2023(path)
    assert t.n_concepts == 1854
    np.testing.assert_array_equal(t.ids, [[0, 1853, 2]])
    names = [f"c{i}" for i in range(1854)]
    t = load_triplets(path, concept_ids=names)
    assert t.concept_ids == tuple(names)
    with pytest.raises(TripletDataError, match="3 concept ids given for n_concepts=1854"):
        load_things2023(path, concept_ids=["a", "b", "c"])


def test_things2023_columns_by_name_and_crlf(tmp_path: Path) -> None:
    text = "subject_id\tnoise_ceiling\tchoice\timage3\timage2\timage1\r\n5\t2\t3\t1\t2\t3\r\n"
    t = load_things2023(_write(tmp_path / "t.csv", text), n_concepts=3)
    np.testing.assert_array_equal(t.ids, [[2, 1, 0]])
    np.testing.assert_array_equal(t.odd, [2])
    np.testing.assert_array_equal(t.subject, [5])


def test_things2020_maps_with_argsort_of_sortindex(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 12
    sortindex = rng.permutation(n)  # sortindex[things_index] = original_index
    orig = _random_triplets(rng, 40, n)  # 0-based original ids
    odd = rng.integers(0, 3, 40)
    subj = rng.integers(0, 50, 40)
    path = _write_2020(tmp_path / "t2020.tsv", orig + 1, odd + 1, subj)
    sfile = _write(tmp_path / "sortindex.txt", "\n".join(map(str, sortindex)))
    expected = np.argsort(sortindex)[orig]
    for si in (sortindex, sfile, str(sfile), list(sortindex)):
        t = load_things2020(path, sortindex=si, n_concepts=n)
        np.testing.assert_array_equal(t.ids, expected)
        np.testing.assert_array_equal(t.odd, odd)
        np.testing.assert_array_equal(t.subject, subj)
    # The mapped ids name the same objects: things index t has original index sortindex[t].
    np.testing.assert_array_equal(sortindex[t.ids], orig)
    assert detect_format(path) == "things2020"
    assert load_triplets(path, sortindex=sfile, n_concepts=n) == t


def test_things2020_whitespace_and_comma_separated(tmp_path: Path) -> None:
    sortindex = np.arange(5)
    for name, text in (("ws.txt", "1 2 3 1 9\n"), ("comma.csv", "1,2,3,1,9\n")):
        t = load_things2020(_write(tmp_path / name, text), sortindex=sortindex, n_concepts=5)
        np.testing.assert_array_equal(t.ids, [[0, 1, 2]])


def test_things2020_needs_sortindex(tmp_path: Path) -> None:
    path = _write(tmp_path / "t2020.tsv", "1\t2\t3\t1\t5\n")
    with pytest.raises(TripletDataError, match="--sortindex") as err:
        load_triplets(path)
    assert "t2020.tsv" in str(err.value)


def test_sortindex_must_be_a_permutation(tmp_path: Path) -> None:
    with pytest.raises(TripletDataError, match="not a permutation.*repeated"):
        load_sortindex(np.array([0, 1, 1, 3]))
    with pytest.raises(TripletDataError, match="outside"):
        load_sortindex(np.array([0, 1, 2, 4]))
    with pytest.raises(TripletDataError, match="3 entries, expected one per concept \\(4\\)"):
        load_sortindex(np.array([0, 1, 2]), n_concepts=4)
    bad = _write(tmp_path / "sortindex_bad.txt", "0\n1\nx\n")
    with pytest.raises(TripletDataError, match=r"sortindex_bad\.txt: line 3: 'x'"):
        load_sortindex(bad)
    path = _write(tmp_path / "t2020.tsv", "1\t2\t3\t1\t5\n")
    with pytest.raises(TripletDataError, match="not a permutation"):
        load_things2020(path, sortindex=[0, 0, 2], n_concepts=3)


def test_csv_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ids = _random_triplets(rng, 30, 9)
    odd = rng.integers(0, 3, 30)
    subj = rng.integers(-1, 100, 30)
    for subject in (subj, None):
        t = Triplets(ids=ids, odd=odd, n_concepts=9, subject=subject)
        path = save_csv(t, tmp_path / f"t_{subject is None}.csv")
        back = load_csv(path, n_concepts=9)
        assert back == t
        assert detect_format(path) == "csv"
        assert load_triplets(path, n_concepts=9) == t
    inferred = load_csv(path)
    assert inferred.n_concepts == int(ids.max()) + 1
    np.testing.assert_array_equal(inferred.ids, ids)


def test_npz_and_concept_ids(tmp_path: Path) -> None:
    t = Triplets(ids=[[0, 1, 2], [3, 1, 0]], odd=[1, 2], n_concepts=4, subject=[3, 4])
    path = t.save(tmp_path / "t.npz")
    assert detect_format(path) == "npz"
    assert load_triplets(path) == t
    ids_file = _write(tmp_path / "unique_id.txt", "a\nb\nc\nd\n\n")
    assert load_concept_ids(ids_file) == ("a", "b", "c", "d")
    assert load_triplets(path, concept_ids=ids_file).concept_ids == ("a", "b", "c", "d")
    with pytest.raises(TripletDataError, match=r"dup\.txt: line 3: concept id 'a' repeats line 1"):
        load_concept_ids(_write(tmp_path / "dup.txt", "a\nb\na\n"))


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.txt", "foo bar\n1 2\n")
    with pytest.raises(TripletDataError, match=r"odd\.txt: line 1: cannot tell the format"):
        load_triplets(path)
    with pytest.raises(ValueError, match="unknown triplet format"):
        load_triplets(path, format="xml")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Bad input: the message names the file and the line (counting the header line)
# ----------------------------------------------------------------------------------------------

GOOD = ["1\t2\t3\t1\t7\t0", "4\t5\t6\t2\t7\t0", "7\t8\t9\t3\t7\t2"]

BAD_2023 = [
    # (name, rows replacing GOOD[1] (line 3), expected line, message fragment)
    ("too_many_columns", ["4\t5\t6\t2\t7\t0\t9"], 3, "7 columns, expected 6"),
    ("too_few_columns", ["4\t5\t6\t2\t7"], 3, "5 columns, expected 6"),
    ("empty_cell", ["4\t\t6\t2\t7\t0"], 3, "column 'image2' is empty"),
    ("nan_cell", ["4\tNaN\t6\t2\t7\t0"], 3, "column 'image2' = NaN is not an integer"),
    ("float_value", ["4\t5\t2.5\t2\t7\t0"], 3, "column 'image3' = 2.5 is not an integer"),
    ("text_value", ["4\t5\tabc\t2\t7\t0"], 3, "column 'image3' = 'abc' is not an integer"),
    ("id_too_large", ["4\t5\t11\t2\t7\t0"], 3, "column 'image3' = 11 outside 1-10"),
    ("id_zero", ["0\t5\t6\t2\t7\t0"], 3, "column 'image1' = 0 outside 1-10"),
    ("repeated_id", ["4\t5\t4\t2\t7\t0"], 3, "repeated concept in triplet [4, 5, 4]"),
    ("choice_4", ["4\t5\t6\t4\t7\t0"], 3, "column 'choice' = 4 not in 1-3"),
    ("choice_0", ["4\t5\t6\t0\t7\t0"], 3, "column 'choice' = 0 not in 1-3"),
    ("blank_line", ["", "4\t5\t6\t2\t7\t0"], 3, "empty line inside the table"),
]


@pytest.mark.parametrize(("name", "rows", "line", "fragment"), BAD_2023)
def test_things2023_bad_rows(tmp_path: Path, name: str, rows, line: int, fragment: str) -> None:
    lines = [HEADER_2023, GOOD[0], *rows, GOOD[2]]
    path = _write(tmp_path / f"bad_{name}.csv", "\n".join(lines) + "\n")
    with pytest.raises(TripletDataError) as err:
        load_things2023(path, n_concepts=10)
    msg = str(err.value)
    assert f"bad_{name}.csv" in msg
    assert f"line {line}:" in msg
    assert fragment in msg


def test_bad_value_in_first_data_row_and_last_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "first.csv", "\n".join([HEADER_2023, "1\t2\t3\t1\t7\t0\t5"]) + "\n")
    with pytest.raises(TripletDataError, match=r"first\.csv: line 2: 7 columns, expected 6"):
        load_things2023(path, n_concepts=10)
    path = _write(tmp_path / "last.csv", "\n".join([HEADER_2023, *GOOD, "1\t2\t3\t1\t7"]))
    with pytest.raises(TripletDataError, match=r"last\.csv: line 5: 5 columns, expected 6"):
        load_things2023(path, n_concepts=10)


def test_trailing_blank_lines_are_fine(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "\n".join([HEADER_2023, *GOOD]) + "\n\n\n")
    assert len(load_things2023(path, n_concepts=10)) == 3


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.csv", "")
    with pytest.raises(TripletDataError, match=r"empty\.csv: line 1: empty file"):
        load_things2023(empty)
    with pytest.raises(TripletDataError, match=r"empty\.csv: line 1: empty file"):
        load_triplets(empty)
    header_only = _write(tmp_path / "header_only.csv", HEADER_2023 + "\n")
    with pytest.raises(TripletDataError, match=r"header_only\.csv: line 2: no data rows"):
        load_things2023(header_only)
    csv_header = _write(tmp_path / "csv_header.csv", "i,j,k,odd\n")
    with pytest.raises(TripletDataError, match=r"csv_header\.csv: line 2: no data rows"):
        load_csv(csv_header)


def test_missing_header_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "nohead.csv", "image1\timage2\timage3\tchoice\tsubject_id\n1\t2\t3\t1\t5\n"
    )
    with pytest.raises(TripletDataError) as err:
        load_things2023(path)
    msg = str(err.value)
    assert "nohead.csv: line 1:" in msg and "noise_ceiling" in msg
    path = _write(tmp_path / "csvhead.csv", "i,j,odd\n0,1,2\n")
    with pytest.raises(
        TripletDataError, match=r"csvhead\.csv: line 1: .*lacks column\(s\) \['k'\]"
    ):
        load_csv(path)


BAD_CSV = [
    ("odd_3", "0,1,2,3", "column 'odd' = 3 not in 0-2"),
    ("odd_neg", "0,1,2,-1", "column 'odd' = -1 not in 0-2"),
    ("neg_id", "-1,1,2,0", "column 'i' = -1 outside >= 0"),
    ("repeat", "2,1,2,0", "repeated concept in triplet [2, 1, 2]"),
    ("float", "0,1.5,2,0", "column 'j' = 1.5 is not an integer"),
    ("columns", "0,1,2", "3 columns, expected 4"),
]


@pytest.mark.parametrize(("name", "row", "fragment"), BAD_CSV)
def test_csv_bad_rows(tmp_path: Path, name: str, row: str, fragment: str) -> None:
    path = _write(tmp_path / f"bad_{name}.csv", f"i,j,k,odd\n0,1,2,0\n1,2,3,1\n{row}\n")
    with pytest.raises(TripletDataError) as err:
        load_csv(path)
    msg = str(err.value)
    assert f"bad_{name}.csv: line 4:" in msg
    assert fragment in msg


def test_csv_id_beyond_n_concepts(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.csv", "i,j,k,odd\n0,1,2,0\n0,1,5,0\n")
    with pytest.raises(TripletDataError, match=r"big\.csv: line 3: column 'k' = 5 outside 0-4"):
        load_csv(path, n_concepts=5)


def test_things2020_bad_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad2020.tsv", "1\t2\t3\t1\t5\n1\t2\t3\t4\t5\n")
    with pytest.raises(TripletDataError, match=r"bad2020\.tsv: line 2: column 'odd_position' = 4"):
        load_things2020(path, sortindex=np.arange(5), n_concepts=5)
    path = _write(tmp_path / "range2020.tsv", "1\t2\t3\t1\t5\n1\t2\t6\t1\t5\n")
    with pytest.raises(TripletDataError, match=r"range2020\.tsv: line 2: column 'object3' = 6"):
        load_things2020(path, sortindex=np.arange(5), n_concepts=5)
    path = _write(tmp_path / "short2020.tsv", "1\t2\t3\t1\t5\n1\t2\t3\t1\n")
    with pytest.raises(TripletDataError, match=r"short2020\.tsv: line 2: 4 columns, expected 5"):
        load_things2020(path, sortindex=np.arange(5), n_concepts=5)


def test_many_bad_rows_are_counted(tmp_path: Path) -> None:
    rows = ["1\t2\t3\t1\t5\t0"] + ["1\t2\t3\t9\t5\t0"] * 4
    path = _write(tmp_path / "many.csv", "\n".join([HEADER_2023, *rows]) + "\n")
    with pytest.raises(TripletDataError, match=r"line 3: .*\(4 such rows\)"):
        load_things2023(path, n_concepts=10)


# ----------------------------------------------------------------------------------------------
# Real THINGS files (skipped where ../shared/data/things is absent)
# ----------------------------------------------------------------------------------------------


def _things_file(name: str) -> Path:
    path = THINGS_DIR / name
    if not path.exists():
        pytest.skip(f"real THINGS data not available: {path} is absent (tests only)")
    return path


def test_real_things2020_noise_ceiling_file() -> None:
    path = _things_file("triplets_noiseceiling_2020.tsv")
    sortindex = _things_file("sortindex.txt")
    names = load_concept_ids(_things_file("unique_id.txt"))
    assert len(names) == 1854 and names[0] == "aardvark" and names[-1] == "zucchini"
    assert detect_format(path) == "things2020"
    t = load_triplets(path, sortindex=sortindex, concept_ids=names)
    assert len(t) == 20000
    assert t.n_concepts == 1854
    assert t.ids.min() >= 0 and t.ids.max() <= 1853
    assert set(np.unique(t.odd).tolist()) == {0, 1, 2}
    # sortindex differs from the identity in 21 places; the mapping must use argsort.
    order = load_sortindex(sortindex, n_concepts=1854)
    assert int((order != np.arange(1854)).sum()) == 21
    nc = noise_ceiling(t)
    print(f"noise ceiling of triplets_noiseceiling_2020.tsv: {nc:.4f}")
    assert 0.6 < nc < 0.75
    assert len(np.unique(t.sorted_keys())) == 1000


def test_blank_first_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "blank_first.csv", "\n" + HEADER_2023 + "\n1\t2\t3\t1\t5\t0\n")
    with pytest.raises(TripletDataError, match=r"blank_first\.csv: line 1: empty line"):
        load_triplets(path)


# ----------------------------------------------------------------------------------------------
# Paths that are no readable file; compressed files (modelrecovery.input_files)
# ----------------------------------------------------------------------------------------------


def _assert_one_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message and "Errno" not in message


def test_folder_given_as_triplet_file(tmp_path: Path) -> None:
    folder = tmp_path / "triplets.csv"
    folder.mkdir()
    for call in (load_triplets, detect_format, load_csv, load_things2023, load_concept_ids):
        with pytest.raises(TripletDataError) as info:
            call(folder)
        assert str(info.value) == f"{folder}: is a folder, expected a " + (
            "file" if call is load_concept_ids else "triplet file"
        )
    npz = tmp_path / "t.npz"
    npz.mkdir()
    with pytest.raises(TripletDataError, match=r"t\.npz: is a folder, expected a triplet file"):
        load_triplets(npz)


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything
        pytest.skip("running as root: chmod 000 does not stop reading")
    return path


def test_unreadable_triplet_file(tmp_path: Path) -> None:
    path = _unreadable(_write(tmp_path / "t.csv", "i,j,k,odd\n0,1,2,0\n"))
    with pytest.raises(TripletDataError) as info:
        load_triplets(path)
    assert str(info.value) == f"{path}: not readable (permission denied)"


def test_unreadable_file_as_seen_by_both_loaders(tmp_path: Path, monkeypatch) -> None:
    """Whoever runs the tests (root reads every file): the access check answers no."""
    import modelrecovery.input_files as files
    from modelrecovery.features import FeatureDataError, load_features

    triplets = _write(tmp_path / "t.csv", "i,j,k,odd\n0,1,2,0\n")
    features = tmp_path / "x.npy"
    np.save(features, np.ones((3, 2), dtype=np.float32))
    text_features = _write(tmp_path / "x.txt", "1 2\n3 4\n5 6\n")
    monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    with pytest.raises(TripletDataError, match=r"t\.csv: not readable \(permission denied\)$"):
        load_triplets(triplets)
    for path in (features, text_features):
        with pytest.raises(FeatureDataError) as info:
            load_features(path, n_concepts=3)
        assert str(info.value) == f"{path}: not readable (permission denied)"


def test_feature_loader_names_a_folder_inside_a_thingsvision_folder(tmp_path: Path) -> None:
    from modelrecovery.features import FeatureDataError, load_features

    (tmp_path / "features.npy").mkdir()  # the name thingsvision uses, but a folder
    (tmp_path / "features_1.npy").mkdir()
    with pytest.raises(FeatureDataError) as info:
        load_features(tmp_path)
    _assert_one_line(str(info.value))
    assert "is a folder, expected a feature file" in str(info.value)


def _things2023_text() -> str:
    rng = np.random.default_rng(5)
    ids = _random_triplets(rng, 40, 12) + 1
    lines = [HEADER_2023] + [
        "\t".join(str(v) for v in (*row, rng.integers(1, 4), rng.integers(0, 9), i % 3))
        for i, row in enumerate(ids)
    ]
    return "\n".join(lines) + "\n"


def _compress(plain: Path, how: str, name: str) -> Path:
    import bz2
    import gzip
    import lzma
    import zipfile

    data = plain.read_bytes()
    out = plain.with_name(name)
    if how == "gzip":
        out.write_bytes(gzip.compress(data))
    elif how == "bz2":
        out.write_bytes(bz2.compress(data))
    elif how == "xz":
        out.write_bytes(lzma.compress(data))
    else:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(plain.name, data)
    return out


@pytest.mark.parametrize("how", ["gzip", "bz2", "xz", "zip"])
def test_compressed_triplet_files_read_like_the_plain_ones(tmp_path: Path, how: str) -> None:
    csv = save_csv(
        Triplets(_random_triplets(np.random.default_rng(1), 50, 10), np.arange(50) % 3, 10),
        tmp_path / "t.csv",
    )
    things = _write(tmp_path / "t2023.tsv", _things2023_text())
    rng = np.random.default_rng(3)
    things2020 = _write_2020(
        tmp_path / "t2020.tsv",
        _random_triplets(rng, 30, 12) + 1,
        rng.integers(1, 4, 30),
        rng.integers(0, 5, 30),
    )
    order = rng.permutation(12)
    for plain, fmt in ((csv, "csv"), (things, "things2023"), (things2020, "things2020")):
        # by content, not name: a ".csv" name holding compressed bytes is read too
        for name in (f"{plain.name}.{how}", f"packed_{plain.name}"):
            packed = _compress(plain, how, name)
            assert detect_format(packed) == fmt
            kwargs = {"sortindex": order, "n_concepts": 12} if fmt == "things2020" else {}
            assert load_triplets(packed, **kwargs) == load_triplets(plain, **kwargs)
    split = load_things2023_split(_compress(things, how, "s.gz"), n_concepts=12)
    assert split.keys() == load_things2023_split(things, n_concepts=12).keys()
    ids_file = _compress(_write(tmp_path / "ids.txt", "a\nb\nc\n"), how, "ids.txt.z")
    assert load_concept_ids(ids_file) == ("a", "b", "c")


def test_bad_row_in_a_gzip_file_is_named(tmp_path: Path) -> None:
    plain = _write(tmp_path / "t.csv", "i,j,k,odd\n0,1,2,0\n0,x,2,1\n")
    packed = _compress(plain, "gzip", "t.csv.gz")
    with pytest.raises(TripletDataError) as info:
        load_triplets(packed)
    assert str(info.value) == f"{packed}: line 3: column 'j' = 'x' is not an integer"


def test_damaged_and_unsupported_compressions(tmp_path: Path) -> None:
    plain = save_csv(
        Triplets(_random_triplets(np.random.default_rng(1), 2000, 50), np.zeros(2000), 50),
        tmp_path / "t.csv",
    )
    whole = _compress(plain, "gzip", "whole.csv.gz").read_bytes()
    cut = _write(tmp_path / "cut.csv.gz", "")
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TripletDataError) as info:
        load_triplets(cut)
    message = str(info.value)
    _assert_one_line(message)
    assert message.startswith(f"{cut}: cannot read the gzip-compressed file (")
    zstd = tmp_path / "t.csv.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
    with pytest.raises(TripletDataError) as info:
        load_triplets(zstd)
    assert str(info.value).startswith(f"{zstd}: zstd-compressed, which is not read here;")
    import zipfile

    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", "i,j,k,odd\n")
        zf.writestr("b.csv", "i,j,k,odd\n")
    with pytest.raises(TripletDataError) as info:
        load_triplets(two)
    assert str(info.value) == (
        f"{two}: zip archive holds 2 files (a.csv, b.csv); expected exactly one triplet file"
    )


def test_npz_is_recognised_by_content(tmp_path: Path) -> None:
    t = Triplets(ids=[[0, 1, 2], [3, 1, 0]], odd=[1, 2], n_concepts=4)
    path = t.save(tmp_path / "t.npz")
    renamed = path.rename(tmp_path / "t.bin")
    assert detect_format(renamed) == "npz"
    assert load_triplets(renamed) == t


def test_features_beyond_the_largest_triplet_id_suggest_n_concepts(tmp_path: Path) -> None:
    from modelrecovery.study.inputs import load_human_data, load_model_features

    rng = np.random.default_rng(4)
    ids = _random_triplets(rng, 60, 8)  # ids 0-7 used
    triplets = save_csv(Triplets(ids, np.zeros(60), 8), tmp_path / "t.csv")
    features = tmp_path / "x.npy"
    np.save(features, rng.standard_normal((10, 3)).astype(np.float32))
    human = load_human_data(triplets)
    assert human.train.n_concepts == 8
    with pytest.raises(ValueError) as info:
        load_model_features(features, human.train.n_concepts, human)
    message = str(info.value)
    _assert_one_line(message)
    assert message == (
        f"{triplets}: the triplets' largest concept id is 7 (0-based), so n_concepts was "
        f"inferred as 8, but the features {features} have 10 rows (one per concept); give "
        "--n-concepts 10 if the triplets index those 10 concepts"
    )
    # given explicitly, it is used, and the features are read
    human = load_human_data(triplets, n_concepts=10)
    assert load_model_features(features, 10, human)[0].shape == (10, 3)
    # fewer feature rows than the inferred concepts: the first triplet line naming a
    # concept beyond them, and the features' rows (issue 26: not only the features blamed)
    np.save(features, rng.standard_normal((5, 3)).astype(np.float32))
    human = load_human_data(triplets)
    with pytest.raises(ValueError) as info:
        load_model_features(features, 8, human)
    line = 2 + int(np.flatnonzero((ids >= 5).any(axis=1))[0])  # after the header line
    assert str(info.value).startswith(f"{triplets}: line {line}: column ")
    assert str(info.value).endswith(f"the features {features} have 5 rows (one per concept)")
    # a study config names its setting
    human = load_human_data(triplets, n_concepts_option="data.n_concepts")
    np.save(features, rng.standard_normal((10, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"give data.n_concepts=10 if"):
        load_model_features(features, 8, human)


def test_console_noise_ceiling_on_a_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "triplets"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "modelrecovery.cli", "noise-ceiling", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"modelrecovery noise-ceiling: error: {folder}: is a folder, expected a triplet file"
    ]


def test_console_noise_ceiling_reads_gzip(tmp_path: Path) -> None:
    import subprocess
    import sys

    plain = _write(tmp_path / "t.csv", "i,j,k,odd\n0,1,2,0\n0,1,2,1\n0,1,2,0\n")
    packed = _compress(plain, "gzip", "t.csv.gz")
    outputs = []
    for path in (plain, packed):
        done = subprocess.run(
            [sys.executable, "-m", "modelrecovery.cli", "--json", "noise-ceiling", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
