"""Stage ``generators``: a data-generating model per network = tune + fit + calibrate on
human data. Each generator is an MLflow run ``generator/<model>/<family>`` (tag
``stage=generator``) holding W, Z = X W, T, λ and provenance; a finished run with the same
inputs (parameters, feature and triplet hashes, code version) is reused, not recomputed."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
from tqdm.auto import tqdm

from modelrecovery.stages.calibrate import calibrate_and_log, check_ceiling
from modelrecovery.stages.common import HumanData, load_model_features
from modelrecovery.stages.tune import TuneSettings, tune_and_fit
from modelrecovery.tracking import find_finished_run, inputs_key, standard_tags


@dataclass
class GeneratorSpec:
    """How generators are built (shared by every model of a study)."""

    family: str = "full"
    k: int | None = None
    regulariser: str = "scalar_shrinkage"
    ceiling: float | None = None  # None: from the repeated human triplets
    dtype: str = "float32"
    device: str = "cpu"


@dataclass
class Generator:
    """A calibrated data-generating model: P(odd) from Z (= X W) at temperature T."""

    model: str
    family: str
    lam: float
    temperature: float
    z: np.ndarray
    run_id: str
    human_test_accuracy: float
    human_test_nll: float
    feature_dim: int
    reused: bool = False


def settings_from_config(config: dict) -> tuple[GeneratorSpec, TuneSettings]:
    """The generator and tuning settings of a study configuration (``probe``, ``tune``)."""
    probe = config["probe"]
    spec = GeneratorSpec(
        family=probe["family"],
        k=probe.get("k"),
        regulariser=probe["regulariser"],
        ceiling=probe.get("ceiling"),
        dtype=probe.get("dtype", "float32"),
    )
    tune = TuneSettings(**{**config["tune"], "lams": tuple(config["tune"]["lams"])})
    return spec, tune


def _generator_params(model: str, spec: GeneratorSpec, tune: TuneSettings) -> dict:
    return {"model": model, **asdict(spec), "tune": asdict(tune)}


def load_generator(run: mlflow.entities.Run, reused: bool = True) -> Generator:
    """A generator from its MLflow run's artifacts."""
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="generator")
    )
    meta = json.loads((local / "generator.json").read_text())
    return Generator(
        model=meta["model"],
        family=meta["family"],
        lam=meta["lam"],
        temperature=meta["temperature"],
        z=np.load(local / "z.npy"),
        run_id=run.info.run_id,
        human_test_accuracy=meta["human_test_accuracy"],
        human_test_nll=meta["human_test_nll"],
        feature_dim=meta["feature_dim"],
        reused=reused,
    )


def build_generator(
    model: str,
    features_path: str | Path,
    human: HumanData,
    *,
    experiment_id: str,
    spec: GeneratorSpec | None = None,
    tune: TuneSettings | None = None,
) -> Generator:
    """Tune, fit and calibrate one model on human data, or reuse the finished run."""
    spec = spec or GeneratorSpec()
    tune = tune or TuneSettings()
    check_ceiling(spec.ceiling)
    if human.test is None:
        raise ValueError(f"{human.path}: generators need a repeated human test set to calibrate T")
    features, feature_hash = load_model_features(features_path, human.train.n_concepts)
    hashes = {"features": feature_hash, "triplets": human.data_hash}
    key = inputs_key("generator", _generator_params(model, spec, tune), hashes)
    previous = find_finished_run(experiment_id, key)
    if previous is not None:
        return load_generator(previous)
    start = time.perf_counter()
    tags = standard_tags("generator", model, spec.family) | {"inputs_key": key}
    nested = mlflow.active_run() is not None  # inside a recover run: a child run
    with mlflow.start_run(
        run_name=f"generator/{model}/{spec.family}", tags=tags, nested=nested
    ) as run:
        mlflow.log_params(
            {
                "model": model,
                "feature_dim": features.shape[1],
                **{k: str(v) for k, v in asdict(spec).items()},
                "features_path": str(features_path),
                "hash_features": feature_hash,
                "hash_triplets": human.data_hash,
            }
        )
        tuned = tune_and_fit(
            features,
            human.train,
            model=model,
            family=spec.family,
            k=spec.k,
            regulariser=spec.regulariser,
            settings=tune,
            test=human.test,
            dtype=spec.dtype,
            device=spec.device,
            data_hashes=hashes,
            nested=True,
        )
        fitted = tuned.fit.fitted
        z = fitted.transform(features).double().cpu().numpy()
        calibration = calibrate_and_log(
            z, human.test, model=model, family=spec.family, ceiling=spec.ceiling
        )
        meta = {
            "model": model,
            "family": spec.family,
            "k": spec.k,
            "regulariser": spec.regulariser,
            "lam": tuned.best_lam,
            "temperature": calibration["temperature"],
            "ceiling": calibration["ceiling"],
            "human_test_accuracy": tuned.fit.metrics.get("test_accuracy", float("nan")),
            "human_test_nll": tuned.fit.metrics.get("test_nll", float("nan")),
            "feature_dim": int(features.shape[1]),
            "tune_run_id": tuned.run_id,
            "fit_run_id": tuned.fit.run_id,
            "optuna_study": tuned.study_name,
        }
        mlflow.log_metrics(
            {
                "lam": tuned.best_lam,
                "temperature": calibration["temperature"],
                "human_test_accuracy": meta["human_test_accuracy"],
                "human_test_nll": meta["human_test_nll"],
                "seconds": time.perf_counter() - start,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "generator"
            folder.mkdir()
            np.save(folder / "z.npy", z.astype(np.float32))
            np.save(folder / "W.npy", fitted.matrix().cpu().numpy())
            (folder / "generator.json").write_text(json.dumps(meta, indent=2))
            mlflow.log_artifacts(str(folder), artifact_path="generator")
    return Generator(
        model=model,
        family=spec.family,
        lam=tuned.best_lam,
        temperature=calibration["temperature"],
        z=z.astype(np.float32),
        run_id=run.info.run_id,
        human_test_accuracy=meta["human_test_accuracy"],
        human_test_nll=meta["human_test_nll"],
        feature_dim=int(features.shape[1]),
        reused=False,
    )


def build_generators(
    feature_paths: dict[str, str | Path],
    human: HumanData,
    *,
    experiment_id: str,
    spec: GeneratorSpec | None = None,
    tune: TuneSettings | None = None,
    progress: bool = True,
) -> dict[str, Generator]:
    """A generator per model (reused where finished), with a progress bar.

    Models run one after another: each fit already uses every core (BLAS and the compiled
    kernel), so running models side by side on one machine does not help; the recovery
    grid is where Dask spreads work.
    """
    if not feature_paths:
        raise ValueError("no models given: the generator list is empty")
    for model, path in feature_paths.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"features of model {model!r} not found: {path}")
    out = {}
    bar = tqdm(feature_paths.items(), desc="generators", disable=not progress, unit="model")
    for model, path in bar:
        bar.set_postfix_str(model)
        out[model] = build_generator(
            model, path, human, experiment_id=experiment_id, spec=spec, tune=tune
        )
    return out


def cmd_generators(args) -> dict:
    """Build (or reuse) the generator of every model of a study's configuration."""
    from modelrecovery.config import load_config, split_overrides
    from modelrecovery.stages.recover import _names, study_inputs
    from modelrecovery.tracking import setup_experiment

    config = load_config(args.config, split_overrides(args.set))
    experiment_id = setup_experiment(config["study"])
    inputs = study_inputs(config, progress=not args.no_progress)
    wanted = _names(config.get("generators"), list(inputs.feature_paths), "generators")
    spec, tune = settings_from_config(config)
    built = build_generators(
        {m: inputs.feature_paths[m] for m in wanted},
        inputs.human,
        experiment_id=experiment_id,
        spec=spec,
        tune=tune,
        progress=not args.no_progress,
    )
    return {
        name: f"run {g.run_id} lam={g.lam:g} T={g.temperature:.4g} "
        f"human_acc={g.human_test_accuracy:.3f}{' (reused)' if g.reused else ''}"
        for name, g in built.items()
    }


def register(sub) -> None:
    p = sub.add_parser("generators", help=cmd_generators.__doc__)
    p.add_argument("--config", default="default", help="conf/<name>.yaml or a path")
    p.add_argument("--set", nargs="*", help="overrides key.sub=value")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_generators)
