"""A study extracts and reads only the models it uses (its generators and candidates): a
world study naming 2 of the 10 default models builds the features of those 2, and a files
study does not need (nor `extract --config` write) the feature files of the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelrecovery.cli import main
from modelrecovery.study.inputs import check_study_files, study_inputs, used_models
from modelrecovery.study.spec import load_spec
from test_things_paper import _image_table


def _files_study(tmp_path: Path) -> Path:
    """Three models with backbones: C is neither a generator nor a candidate."""
    rows = ["image1\timage2\timage3\tchoice\tsubject_id\tnoise_ceiling"]  # THINGS 2023
    rows += [f"{i % 5 + 1}\t{(i + 1) % 5 + 1}\t{(i + 2) % 5 + 1}\t1\t0\t0" for i in range(20)]
    rows += ["1\t2\t3\t1\t1\t2", "1\t2\t3\t2\t2\t2"]
    (tmp_path / "triplets.csv").write_text("\n".join(rows) + "\n")
    config = {
        "study": "used",
        "data": {
            "kind": "files",
            "triplets": "triplets.csv",  # relative to this file
            "n_concepts": 5,
            "features_dir": "features",
        },
        "models": {
            name: {"file": f"{name}.npy", "backbone": "timm:resnet10t"} for name in "ABC"
        },
        "generators": ["A"],
        "candidates": ["A", "B"],
        "tune": {"lams": [1.0]},
        "grid": {"sizes": [10], "seeds": [0], "levels": [{"family": "full"}], "lams": [1.0]},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_files_study_needs_only_the_models_it_uses(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # paths in the file are relative to it, not to here
    path = _files_study(tmp_path)
    spec = load_spec(str(path))
    assert used_models(spec) == ["A", "B"]
    with pytest.raises(FileNotFoundError, match=r"A: .*B: "):
        check_study_files(spec)  # A and B are missing; C is not asked for
    argv = ["--json", "extract", "--config", str(path), "--images", str(_image_table(tmp_path))]
    code = main([*argv, "--out", str(tmp_path / "cache"), "--no-progress", "--random-weights"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and sorted(set(result) & {"A", "B", "C"}) == ["A", "B"]
    written = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert written == ["A.npy", "B.npy"]
    check_study_files(spec)  # now complete without C.npy
    inputs = study_inputs(spec, progress=False)
    assert list(inputs.feature_paths) == ["A", "B"] and list(inputs.metadata) == ["A", "B"]


# a world study naming 2 of the 10 default models builds only their features: run from
# the installed wheel in test_packaging.py::test_the_wheel_runs_a_tiny_study_from_an_empty_folder
