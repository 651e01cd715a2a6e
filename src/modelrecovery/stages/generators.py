"""Stage ``generators``: a data-generating model per network AND flexibility level = tune
+ fit + calibrate on human data, each level on its own (the study fits a generator of the
matching level for every level of its grid). Each generator is an MLflow run
``generator/<model>/<level>`` (tag ``stage=generator``) holding W, Z = X W, T, λ and
provenance; a finished run with the same inputs (parameters, feature and triplet hashes,
source code) is reused, not recomputed."""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import torch
from tqdm.auto import tqdm

from modelrecovery.devices import check_device, require_device
from modelrecovery.probe.families import Family
from modelrecovery.recovery.grid import Level
from modelrecovery.stages.calibrate import calibrate_and_log, check_ceiling
from modelrecovery.stages.common import HumanData, load_model_features
from modelrecovery.stages.tune import TuneSettings, tune_and_fit
from modelrecovery.tracking import find_finished_run, inputs_key, optuna_storage, standard_tags


@dataclass
class GeneratorSpec:
    """How the generators of one level are built (shared by every model of a study)."""

    family: str = "full"
    k: int | None = None
    regulariser: str = "scalar_shrinkage"
    ceiling: float | None = None  # None: from the repeated human triplets
    dtype: str = "float32"
    device: str = "cpu"  # where tune, fit and calibrate run; enters no reuse key

    def __post_init__(self) -> None:
        Family(self.family, self.k)  # a clear error for a bad level
        self.device = check_device(self.device, "probe.device")

    @property
    def level(self) -> str:
        """The level's label (``full``, ``rectangular8``, ...)."""
        return Level(self.family, self.k).label


def probe_parameters(family: str, k: int | None, p: int) -> int:
    """Free parameters of a probe: 1 (zero-shot scale), p, p * k or p * p."""
    return {"zero_shot": 1, "diagonal": p, "rectangular": p * (k or 0), "full": p * p}[family]


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
    k: int | None = None

    @property
    def level(self) -> str:
        """The level's label."""
        return Level(self.family, self.k).label


def settings_from_config(config: dict) -> tuple[list[GeneratorSpec], TuneSettings]:
    """One generator spec per level of ``grid.levels`` (regulariser, ceiling, dtype and
    device from ``probe``) and the tuning settings (``tune``; ``stopping`` from ``probe``)."""
    probe = config["probe"]
    stale = [key for key in ("family", "k") if probe.get(key) is not None]
    if stale:
        raise ValueError(
            f"probe.{stale[0]} is no longer read: generators are built for every entry of "
            "grid.levels (remove it from the configuration)"
        )
    specs = [
        GeneratorSpec(
            family=level["family"],
            k=level.get("k"),
            regulariser=probe["regulariser"],
            ceiling=probe.get("ceiling"),
            dtype=probe.get("dtype", "float32"),
            device=probe.get("device", "cpu"),
        )
        for level in config["grid"]["levels"]
    ]
    workers = probe.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"probe.workers must be an integer >= 1, got {workers!r}")
    tune_config = {**config["tune"], "lams": tuple(config["tune"]["lams"])}
    for key, default in (("stopping", "converged"), ("reduction", "auto"), ("reshuffle", False)):
        tune_config.setdefault(key, probe.get(key, default))
    return specs, TuneSettings(**tune_config)


def _generator_params(model: str, spec: GeneratorSpec, tune: TuneSettings) -> dict:
    """What a generator's reuse key hashes: everything but the device (a generator fitted
    on a GPU serves a CPU study and the reverse)."""
    params = {"model": model, **asdict(spec), "tune": asdict(tune)}
    params.pop("device")
    # settings added later enter the key only away from their defaults (keys stay)
    for key, default in (("reduction", "auto"), ("reshuffle", False)):
        if params["tune"][key] == default:
            params["tune"].pop(key)
    return params


def load_generator(run: mlflow.entities.Run, reused: bool = True) -> Generator:
    """A generator from its MLflow run's artifacts."""
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="generator")
    )
    meta = json.loads((local / "generator.json").read_text())
    return Generator(
        model=meta["model"],
        family=meta["family"],
        k=meta.get("k"),
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
    parent_run_id: str | None = None,
) -> Generator:
    """Tune, fit and calibrate one model on human data (on ``spec.device``), or reuse the
    finished run (wherever it was computed). The run is a child of ``parent_run_id`` (for
    another thread than the parent's), else of the active run if any."""
    spec = spec or GeneratorSpec()
    tune = tune or TuneSettings()
    check_ceiling(spec.ceiling)
    device = require_device(spec.device, "probe.device")
    if human.test is None:
        raise ValueError(f"{human.path}: generators need a repeated human test set to calibrate T")
    features, feature_hash = load_model_features(features_path, human.train.n_concepts, human)
    hashes = {"features": feature_hash, "triplets": human.data_hash}
    key = inputs_key("generator", _generator_params(model, spec, tune), hashes)
    previous = find_finished_run(experiment_id, key)
    if previous is not None:
        return load_generator(previous)
    start = time.perf_counter()
    tags = standard_tags("generator", model, spec.family) | {
        "inputs_key": key,
        "level": spec.level,
    }
    nested = mlflow.active_run() is not None  # inside a recover run: a child run
    with mlflow.start_run(
        run_name=f"generator/{model}/{spec.level}",
        tags=tags,
        nested=nested,
        parent_run_id=parent_run_id,
        experiment_id=experiment_id,
    ) as run:
        mlflow.log_params(
            {
                "model": model,
                "level": spec.level,
                "feature_dim": features.shape[1],
                "probe_parameters": probe_parameters(spec.family, spec.k, features.shape[1]),
                "stopping": tune.stopping,
                "reduction": tune.reduction,
                "reshuffle": tune.reshuffle,
                **{k: str(v) for k, v in asdict(spec).items()},
                "device": device,
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
            device=device,
            data_hashes=hashes,
            nested=True,
            log_model=False,  # the generator run holds W and Z
        )
        fitted = tuned.fit.fitted
        z = fitted.transform(features).double().cpu().numpy()
        calibration = calibrate_and_log(
            z, human.test, model=model, family=spec.level, ceiling=spec.ceiling, device=device
        )
        meta = {
            "model": model,
            "family": spec.family,
            "k": spec.k,
            "level": spec.level,
            "regulariser": spec.regulariser,
            "stopping": tune.stopping,
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
        k=spec.k,
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
    specs: list[GeneratorSpec] | None = None,
    tune: TuneSettings | None = None,
    progress: bool = True,
    workers: int = 1,
) -> dict[tuple[str, str], Generator]:
    """A generator per (level, model), keyed by (level label, model); reused where
    finished, with a progress bar.

    ``workers`` > 1 builds that many generators side by side on threads (CPU), each
    single-threaded (torch and the compiled kernel release the GIL in their heavy work;
    MLflow runs stay children of the active run). Runs are reproducible for a given
    ``workers``; against ``workers=1`` (whose fits use every core) results can differ in
    the last float bits, as BLAS sums in another order with another thread count.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"probe.workers must be an integer >= 1, got {workers!r}")
    if not feature_paths:
        raise ValueError("no models given: the generator list is empty")
    specs = specs or [GeneratorSpec()]
    labels = [spec.level for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"generator levels repeat: {labels}")
    for spec in specs:
        require_device(spec.device, "probe.device")  # before any run starts
    for model, path in feature_paths.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"features of model {model!r} not found: {path}")
    todo = [(spec, model, path) for spec in specs for model, path in feature_paths.items()]
    parent = mlflow.active_run()
    parent_id = parent.info.run_id if parent is not None else None

    def build(item) -> Generator:
        spec, model, path = item
        return build_generator(
            model,
            path,
            human,
            experiment_id=experiment_id,
            spec=spec,
            tune=tune,
            parent_run_id=parent_id,
        )

    bar = tqdm(total=len(todo), desc="generators", disable=not progress, unit="generator")
    built: list[Generator] = []
    on_cpu = all(require_device(spec.device, "probe.device") == "cpu" for spec in specs)
    try:
        if workers > 1 and on_cpu:
            # create the Optuna schema once: threads creating it at the same time collide
            optuna.storages.get_storage(optuna_storage())
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                pool = ThreadPoolExecutor(max_workers=workers)
                try:
                    for generator in pool.map(build, todo):  # in todo order
                        built.append(generator)
                        bar.update(1)
                except BaseException:  # interrupted: running fits stop, queued ones never start
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                pool.shutdown()
            finally:
                torch.set_num_threads(previous)
        else:
            for item in todo:
                bar.set_postfix_str(f"{item[1]}/{item[0].level}")
                built.append(build(item))
                bar.update(1)
    finally:
        bar.close()
    return {(spec.level, model): g for (spec, model, _), g in zip(todo, built, strict=True)}


def cmd_generators(args) -> dict:
    """Build (or reuse) the generator of every model and level of a study's configuration."""
    from modelrecovery.config import load_config, split_overrides
    from modelrecovery.stages.inputs import select_names, study_inputs
    from modelrecovery.tracking import setup_experiment

    config = load_config(args.config, split_overrides(args.set))
    specs, tune = settings_from_config(config)
    for spec in specs:
        require_device(spec.device, "probe.device")  # before the world or any run is built
    experiment_id = setup_experiment(config["study"])
    inputs = study_inputs(config, progress=not args.no_progress)
    wanted = select_names(config.get("generators"), list(inputs.feature_paths), "generators")
    built = build_generators(
        {m: inputs.feature_paths[m] for m in wanted},
        inputs.human,
        experiment_id=experiment_id,
        specs=specs,
        tune=tune,
        progress=not args.no_progress,
        workers=config["probe"].get("workers", 1),
    )
    return {
        f"{name}/{level}": f"run {g.run_id} lam={g.lam:g} T={g.temperature:.4g} "
        f"human_acc={g.human_test_accuracy:.3f}{' (reused)' if g.reused else ''}"
        for (level, name), g in built.items()
    }
