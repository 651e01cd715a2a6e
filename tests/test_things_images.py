"""``modelrecovery extract`` on a THINGS image folder: every concept must have its image (a
clear list of what is missing), rows in THINGS order with the reference image read through
the sort index. A generated folder of tiny images stands in for THINGS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelrecovery.cli import main
from modelrecovery.data.loaders import load_concept_ids, load_sortindex
from modelrecovery.features.images import MissingConceptsError, read_things_folder
from modelrecovery.stages.extract import things_image_list

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "things"
FILES = ("unique_id.txt", "sortindex.txt", "things1854_image_names.csv")


@pytest.fixture(scope="module")
def things_files(tmp_path_factory) -> Path:
    if not all((SHARED / f).is_file() for f in FILES):
        pytest.skip(f"shared THINGS files not found in {SHARED}")
    folder = tmp_path_factory.mktemp("things")
    for name in FILES:  # a temporary copy for the test only, never in the repository
        shutil.copy(SHARED / name, folder / name)
    return folder


def _names(things: Path) -> list[str]:
    lines = (things / "things1854_image_names.csv").read_text().split()
    return lines[1:]


@pytest.fixture(scope="module")
def image_folder(things_files: Path, tmp_path_factory) -> Path:
    """<root>/<concept>/<reference image>: a 4 x 4 image whose colour encodes the 2020 row
    of its name, plus a second exemplar per concept."""
    root = tmp_path_factory.mktemp("images")
    for row, name in enumerate(_names(things_files)):
        concept = name.rsplit("_", 1)[0]
        (root / concept).mkdir(exist_ok=True)
        colour = (row % 256, row // 256, 7)
        Image.new("RGB", (4, 4), colour).save(root / concept / name.replace(".jpg", ".png"))
        # the list names .jpg files: save a real jpg too (tiny)
        Image.new("RGB", (4, 4), colour).save(root / concept / name, quality=100)
        Image.new("RGB", (4, 4), (0, 0, 0)).save(root / concept / "zz_other.png")
    return root


def test_reference_images_in_things_order(things_files, image_folder):
    images = things_image_list(image_folder, things_files)
    ids = load_concept_ids(things_files / "unique_id.txt")
    sortindex = load_sortindex(things_files / "sortindex.txt")
    names = _names(things_files)
    assert len(images) == 1854 and images.concept_ids == ids
    moved = np.flatnonzero(sortindex != np.arange(1854))
    assert len(moved) == 21  # the 21 concepts whose 2020 position differs
    for t in moved:
        (path,) = images.files[t]
        assert path.name == names[sortindex[t]]
        assert path.parent.name == ids[t]
    # all exemplars of a concept
    every = things_image_list(image_folder, things_files, exemplars="all")
    assert every.n_images == 3 * 1854 and every.concept_ids == ids


def test_missing_concepts_are_listed(things_files, image_folder, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(image_folder, root)
    for concept in ("aardvark", "zucchini", "camera_lens"):
        shutil.rmtree(root / concept)
    report = tmp_path / "out" / "missing_concepts.txt"
    with pytest.raises(MissingConceptsError) as err:
        things_image_list(root, things_files, missing_report=report)
    text = str(err.value)
    assert "3 of 1854 THINGS concepts have no image" in text
    assert "aardvark, camera_lens, zucchini" in text and str(report) in text
    assert report.read_text().split() == ["aardvark", "camera_lens", "zucchini"]
    # the console: exit 2, one line, the list written beside the features
    code = main(
        [
            "extract",
            "--models",
            "timm:resnet18",
            "--images",
            str(root),
            "--things-dir",
            str(things_files),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2


def test_mismatched_files_are_refused(things_files, image_folder):
    ids = load_concept_ids(things_files / "unique_id.txt")
    with pytest.raises(ValueError, match="do not belong together"):
        read_things_folder(
            image_folder,
            ids,
            image_names=_names(things_files),
            sortindex=np.arange(1854),  # the identity instead of the sort index
        )


def test_missing_things_files_say_what_to_run(image_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="modelrecovery data things"):
        things_image_list(image_folder, tmp_path)


@pytest.mark.slow
def test_extract_command_on_a_things_folder(things_files, image_folder, tmp_path, capsys):
    """Features of the 1854 tiny images through a seeded random network (the order itself
    is checked on the image list above)."""
    out = tmp_path / "features"
    code = main(
        [
            "--json",
            "extract",
            "--models",
            "resized:32:timm:resnet18",
            "--images",
            str(image_folder),
            "--things-dir",
            str(things_files),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "128",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_concepts"] == 1854
    features = np.load(result["resized:32:timm:resnet18"])
    assert features.shape[0] == 1854
    assert np.isfinite(features).all()
