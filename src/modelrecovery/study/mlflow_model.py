"""A fitted probe as an MLflow pyfunc model: ``predict`` takes triplets, returns
odd-one-out probabilities. It stores the transformed features Z = X W (all that the
predictions need) and T, so it loads and serves without the original features."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.fit import triplet_probabilities

INPUT_COLUMNS = ("i", "j", "k")
OUTPUT_COLUMNS = ("p_odd_0", "p_odd_1", "p_odd_2")


class ProbeModel(mlflow.pyfunc.PythonModel):
    """Odd-one-out probabilities from stored Z and T.

    Input: a DataFrame with integer columns ``i, j, k`` (0-based concept indices).
    Output: a DataFrame with ``p_odd_0, p_odd_1, p_odd_2``, the probability that the item
    at each position is the odd one out.
    """

    def load_context(self, context) -> None:
        self.z = torch.from_numpy(np.load(context.artifacts["z"]))
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.temperature = float(meta["temperature"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"input needs columns {INPUT_COLUMNS}; missing {missing}")
        ids = model_input[list(INPUT_COLUMNS)].to_numpy()
        triplets = Triplets(ids, np.zeros(len(ids), dtype=np.int8), int(self.z.shape[0]))
        probs = triplet_probabilities(self.z.to(torch.float64), triplets, self.temperature)
        return pd.DataFrame(probs, columns=list(OUTPUT_COLUMNS), index=model_input.index)


def log_probe_model(z: np.ndarray, temperature: float, workdir: Path, name: str = "probe"):
    """Log Z and T as a pyfunc model in the active MLflow run; returns the model info."""
    workdir.mkdir(parents=True, exist_ok=True)
    z_path = workdir / "z.npy"
    np.save(z_path, np.asarray(z, dtype=np.float32))
    meta_path = workdir / "meta.json"
    meta_path.write_text(json.dumps({"temperature": float(temperature)}))
    example = pd.DataFrame({"i": [0], "j": [1], "k": [2]})
    package = Path(__file__).resolve().parents[1]
    # the schema is declared (inferring it from the example warns about integer columns),
    # and MLflow's notes on pickled models stay out of the console
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ProbeModel(),
            artifacts={"z": str(z_path), "meta": str(meta_path)},
            input_example=example,
            signature=probe_signature(),
            code_paths=[str(package)],
            pip_requirements=["numpy", "pandas", "torch", "mlflow"],
        )
    finally:
        pyfunc_log.setLevel(level)


def probe_signature():
    """Input: ``i, j, k`` (long); output: ``p_odd_0..2`` (double)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("long", name) for name in INPUT_COLUMNS]),
        outputs=Schema([ColSpec("double", name) for name in OUTPUT_COLUMNS]),
    )
