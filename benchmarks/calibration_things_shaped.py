"""The offline THINGS-shaped study (tests/test_things_e2e.py's design: SPoSE-49 as the
human model with 20,000 training triplets sampled from it, the real 2020 repeated set, five
small feature files; here 2 seeds at every level) run once per calibration rule given, same
files and jobs otherwise, each in OUT/store-<calibration> (issue 25). Compare them with
benchmarks/calibration_effect.py OUT/store-study OUT/store-loo_matched.

Usage: MLFLOW_TRACKING_URI=sqlite:///OUT/mlflow.db python benchmarks/calibration_things_shaped.py
OUT study loo_matched   (needs ../shared/data/things)
"""

import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from modelrecovery.config import CONF_DIR  # noqa: E402
from modelrecovery.study.mlflow_tracker import MLflowTracker  # noqa: E402
from modelrecovery.study.pipeline import run_study  # noqa: E402
from modelrecovery.study.spec import load_spec  # noqa: E402
from test_things_e2e import _feature_files, _things_2023_file  # noqa: E402

things = Path(__file__).resolve().parents[2] / "shared" / "data" / "things"
root = Path(sys.argv[1])
root.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
if not (root / "triplets.tsv").exists():
    print("ceiling", _things_2023_file(things, root / "triplets.tsv", rng))
    entries = _feature_files(things, root / "features", rng)
    (root / "models.yaml").write_text(yaml.safe_dump(entries))
entries = yaml.safe_load((root / "models.yaml").read_text())
for calibration in sys.argv[2:]:
    raw = yaml.safe_load((CONF_DIR / "things_paper.yaml").read_text())
    raw["study"] = f"things-shaped-{calibration}"
    raw["data"].update(
        triplets=str(root / "triplets.tsv"),
        features_dir=str(root / "features"),
        human_embedding=str(things / "spose_embedding_49d_sorted.txt"),
    )
    raw["models"] = entries
    raw["probe"].update(workers=2, device="cpu", calibration=calibration)
    raw["tune"].update(lams=[0.01, 1.0], n_folds=2)
    raw["grid"].update(
        sizes=[100, 1000],
        seeds=[0, 1],
        levels=[
            {"family": "zero_shot"},
            {"family": "diagonal"},
            {"family": "rectangular", "k": 5},
            {"family": "full"},
        ],
        lams=[0.01, 1.0, 100.0],
        device="cpu",
        threads_per_job=1,
    )
    raw["executor"]["kind"] = "inprocess"
    raw["include_uninformative"] = True
    raw["store"] = str(root / f"store-{calibration}")
    path = root / f"things_shaped_{calibration}.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(str(path))
    result = run_study(spec, MLflowTracker(spec.study), progress=False)
    print(calibration, result.summary(), flush=True)
