"""Generators: a data-generating model per network AND flexibility level = tune + fit +
calibrate on human data, each level on its own (the study fits a generator of the
matching level for every level of its grid; docs/science/method.md §3). Each generator is a run
``generator/<model>/<level>`` (tag ``stage=generator``) holding W, Z = X W, T, λ and
provenance; a finished run with the same inputs (parameters, feature and triplet hashes,
the science's source) is reused, not recomputed."""

from __future__ import annotations

import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from tqdm.auto import tqdm

from modelrecovery.devices import require_device
from modelrecovery.probe.fit import warn_once
from modelrecovery.study.calibration import calibrate, check_ceiling
from modelrecovery.study.diagnostics import uninformative_reason
from modelrecovery.study.fitting import ProbeSetup
from modelrecovery.study.inputs import HumanData, load_model_features
from modelrecovery.study.keys import inputs_key
from modelrecovery.study.spec import Level, StudySpec, TuneSpec, probe_parameters
from modelrecovery.study.tracker import Run, Tracker, reuse_or_run, standard_tags
from modelrecovery.study.tracking_names import GENERATOR
from modelrecovery.study.tuning import tune_and_fit

#: what every generator logs of its calibration (besides T and the rule)
CALIBRATION_STATISTICS = ("expected_accuracy", "expected_loo_ceiling", "human_loo_ceiling")


@dataclass(frozen=True)
class GeneratorSetup:
    """How the generators of one level are built (shared by every model of a study): the
    probe, the tuning of λ and the calibration target (None: the human noise ceiling)."""

    probe: ProbeSetup
    tune: TuneSpec = TuneSpec()
    ceiling: float | None = None
    # calibrate (and so simulate from) a generator whose probe predicts the held-out
    # human triplets no better than chance (study key include_uninformative)
    calibrate_uninformative: bool = False
    # what T matches to the ceiling (study key probe.calibration; docs/science/method.md §3)
    calibration: str = "study"

    @property
    def level(self) -> Level:
        return self.probe.level

    def key_params(self, model: str) -> dict:
        """What a generator's reuse key hashes: everything but the device (a generator
        fitted on a GPU serves a CPU study and the reverse)."""
        probe = self.probe.params()
        probe.pop("level")
        params = {
            "model": model,
            "probe": probe,
            "tune": self.tune.model_dump(),
            "ceiling": self.ceiling,
            "calibrate_uninformative": self.calibrate_uninformative,
        }
        if self.calibration != "study":  # the keys of generators built before it stay
            params["calibration"] = self.calibration
        return params


def generator_setups(spec: StudySpec) -> list[GeneratorSetup]:
    """One generator setup per level of the study's grid."""
    return [
        GeneratorSetup(
            ProbeSetup.of(level, spec.probe, spec.tune),
            spec.tune,
            spec.probe.ceiling,
            spec.include_uninformative,
            calibration=spec.probe.calibration,
        )
        for level in spec.grid.level_list
    ]


@dataclass
class Generator:
    """A calibrated data-generating model: P(odd) from Z (= X W) at temperature T."""

    model: str
    level: Level
    lam: float
    temperature: float
    z: np.ndarray
    run_id: str
    human_test_accuracy: float
    human_test_nll: float
    feature_dim: int
    reused: bool = False
    ceiling: float | None = None
    # why its probe carries no information about the held-out human triplets, or None
    uninformative: str | None = None
    # per held-out human response: the probe's accuracy credit (ties share it) and NLL
    human_correct: np.ndarray | None = None
    human_nll: np.ndarray | None = None
    # the calibration rule and, at its T on the repeated set: the expected accuracy (mean
    # max P), its expected LOO noise ceiling, and the humans' LOO ceiling
    calibration: str = "study"
    expected_accuracy: float = math.nan
    expected_loo_ceiling: float = math.nan
    human_loo_ceiling: float = math.nan
    # its reuse key (what it was computed from): the recovery jobs' ids name it, not the
    # run, so processes that built or found the same generator share their jobs
    key: str = ""

    @property
    def label(self) -> str:
        """The level's label."""
        return self.level.label

    @property
    def simulates(self) -> bool:
        """Whether it was calibrated, i.e. can generate data (not left out as
        uninformative)."""
        return math.isfinite(self.temperature)


def load_generator(tracker: Tracker, run_id: str) -> Generator:
    """A generator from its run's artifacts."""
    local = tracker.artifacts(run_id, "generator")
    meta = json.loads((local / "generator.json").read_text())
    scores = np.load(local / "human_test.npz") if (local / "human_test.npz").exists() else None
    return Generator(
        model=meta["model"],
        level=Level(meta["family"], meta.get("k")),
        lam=meta["lam"],
        temperature=meta["temperature"],
        z=np.load(local / "z.npy"),
        run_id=run_id,
        human_test_accuracy=meta["human_test_accuracy"],
        human_test_nll=meta["human_test_nll"],
        feature_dim=meta["feature_dim"],
        reused=True,
        ceiling=meta.get("ceiling"),
        uninformative=meta.get("uninformative"),
        human_correct=None if scores is None else scores["correct"],
        human_nll=None if scores is None else scores["nll"],
        calibration=meta.get("calibration", "study"),
        expected_accuracy=meta.get("expected_accuracy", math.nan),
        expected_loo_ceiling=meta.get("expected_loo_ceiling", math.nan),
        human_loo_ceiling=meta.get("human_loo_ceiling", math.nan),
    )


def generator_matrix(tracker: Tracker, generator: Generator) -> np.ndarray:
    """The generator's fitted W."""
    return np.load(tracker.artifacts(generator.run_id, "generator") / "W.npy")


def build_generator(
    model: str,
    features_path: str | Path,
    human: HumanData,
    *,
    tracker: Tracker,
    setup: GeneratorSetup,
    parent: Run | None = None,
) -> Generator:
    """Tune, fit and calibrate one model on human data (on the probe's device), or reuse
    the finished run (wherever it was computed); the run is a child of ``parent``."""
    check_ceiling(setup.ceiling)
    require_device(setup.probe.device, "probe.device")
    if human.test is None:
        raise ValueError(f"{human.path}: generators need a repeated human test set to calibrate T")
    features, feature_hash = load_model_features(features_path, human.train.n_concepts, human)
    hashes = {"features": feature_hash, "triplets": human.data_hash}
    key = inputs_key("generator", setup.key_params(model), hashes)

    def compute() -> Generator:
        return _build(model, features, features_path, human, tracker, setup, parent, key, hashes)

    generator = reuse_or_run(tracker, key, lambda run_id: load_generator(tracker, run_id), compute)
    generator.key = key
    return generator


def _build(model, features, features_path, human, tracker, setup, parent, key, hashes):
    start = time.perf_counter()
    level = setup.level
    probe = setup.probe
    device = require_device(probe.device, "probe.device")
    tags = standard_tags(GENERATOR.stage, model, level.family) | {"level": level.label}
    params = {
        "model": model,
        "level": level.label,
        "family": level.family,
        "k": level.k,
        "regulariser": probe.regulariser,
        "ceiling": setup.ceiling,
        "calibration": setup.calibration,
        "dtype": probe.dtype,
        "feature_dim": features.shape[1],
        "probe_parameters": probe_parameters(level, features.shape[1]),
        "stopping": probe.stopping,
        "reduction": probe.reduction,
        "reshuffle": probe.reshuffle,
        "device": device,
        "features_path": str(features_path),
        "hash_features": hashes["features"],
        "hash_triplets": human.data_hash,
    }
    with tracker.run(
        GENERATOR.run_name(model=model, level=level.label),
        tags=tags,
        params=params,
        key=key,
        parent=parent,
    ) as run:
        tuned = tune_and_fit(
            features,
            human.train,
            tracker=tracker,
            model=model,
            setup=probe,
            settings=setup.tune,
            test=human.test,
            data_hashes=hashes,
            parent=run,
            log_model=False,  # the generator run holds W and Z
        )
        fitted = tuned.fit.fitted
        z = fitted.transform(features).double().cpu().numpy()
        correct, nll = response_scores(fitted.probabilities(features, human.test), human.test)
        reason = uninformative_reason(float(correct.mean()), float(nll.mean()), len(correct))
        if reason is None or setup.calibrate_uninformative:
            calibration = calibrate(
                z,
                human.test,
                tracker=tracker,
                model=model,
                level=level.label,
                ceiling=setup.ceiling,
                parent=run,
                device=device,
                calibration=setup.calibration,
            )
        else:  # not calibrated to the ceiling: it would be a nearly deterministic generator
            calibration = {
                "temperature": math.nan,
                "ceiling": setup.ceiling,
                "expected_accuracy": math.nan,
                "expected_loo_ceiling": math.nan,
                "human_loo_ceiling": math.nan,
            }
            warn_once(
                f"generator/{model}/{level.label}: left out (no jobs): {reason}; "
                "include_uninformative=true calibrates and runs it anyway"
            )
        if reason is not None:
            run.set_tags({"uninformative": "true", "uninformative_reason": reason})
        meta = {
            "model": model,
            "family": level.family,
            "k": level.k,
            "level": level.label,
            "regulariser": probe.regulariser,
            "stopping": probe.stopping,
            "lam": tuned.best_lam,
            "temperature": calibration["temperature"],
            "ceiling": calibration["ceiling"],
            "human_test_accuracy": tuned.fit.metrics.get("test_accuracy", float("nan")),
            "human_test_nll": tuned.fit.metrics.get("test_nll", float("nan")),
            "feature_dim": int(features.shape[1]),
            "tune_run_id": tuned.run_id,
            "fit_run_id": tuned.fit.run_id,
            "optuna_study": tuned.study_name,
            "uninformative": reason,
            "calibration": setup.calibration,
            **{name: calibration[name] for name in CALIBRATION_STATISTICS},
        }
        run.log_metrics(
            {
                "lam": tuned.best_lam,
                "temperature": calibration["temperature"],
                **{name: calibration[name] for name in CALIBRATION_STATISTICS},
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
            np.savez(folder / "human_test.npz", correct=correct, nll=nll)
            run.log_artifacts(folder, "generator")
    return Generator(
        model=model,
        level=level,
        lam=tuned.best_lam,
        temperature=calibration["temperature"],
        z=z.astype(np.float32),
        run_id=run.id,
        human_test_accuracy=meta["human_test_accuracy"],
        human_test_nll=meta["human_test_nll"],
        feature_dim=int(features.shape[1]),
        reused=False,
        ceiling=calibration["ceiling"],
        uninformative=reason,
        human_correct=correct,
        human_nll=nll,
        calibration=setup.calibration,
        **{name: calibration[name] for name in CALIBRATION_STATISTICS},
    )


def response_scores(probabilities: np.ndarray, triplets) -> tuple[np.ndarray, np.ndarray]:
    """Per response: accuracy credit (1 when the odd one is the most probable, shared
    among tied positions) and negative log-likelihood of the response."""
    probs = np.asarray(probabilities, dtype=np.float64)
    odd = np.asarray(triplets.odd)
    rows = np.arange(len(odd))
    top = probs.max(axis=1, keepdims=True)
    tied = probs == top
    correct = tied[rows, odd] / tied.sum(axis=1)
    nll = -np.log(np.clip(probs[rows, odd], 1e-300, None))
    return correct.astype(np.float64), nll


def build_generators(
    feature_paths: dict[str, str | Path],
    human: HumanData,
    *,
    tracker: Tracker,
    setups: list[GeneratorSetup],
    parent: Run | None = None,
    progress: bool = True,
    workers: int = 1,
) -> dict[tuple[str, str], Generator]:
    """A generator per (level, model), keyed by (level label, model); reused where
    finished, with a progress bar.

    ``workers`` > 1 builds that many generators side by side on threads (CPU), each
    single-threaded (torch and the compiled kernel release the GIL in their heavy work).
    Runs are reproducible for a given ``workers``; against ``workers=1`` (whose fits use
    every core) results can differ in the last float bits, as BLAS sums in another order
    with another thread count.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"probe.workers must be an integer >= 1, got {workers!r}")
    if not feature_paths:
        raise ValueError("no models given: the generator list is empty")
    labels = [setup.level.label for setup in setups]
    if len(set(labels)) != len(labels):
        raise ValueError(f"generator levels repeat: {labels}")
    devices = [require_device(setup.probe.device, "probe.device") for setup in setups]
    for model, path in feature_paths.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"features of model {model!r} not found: {path}")
    todo = [(setup, model, path) for setup in setups for model, path in feature_paths.items()]

    def build(item) -> Generator:
        setup, model, path = item
        return build_generator(model, path, human, tracker=tracker, setup=setup, parent=parent)

    bar = tqdm(total=len(todo), desc="generators", disable=not progress, unit="generator")
    built: list[Generator] = []
    try:
        if workers > 1 and all(device == "cpu" for device in devices):
            storage = tracker.optuna_storage()
            if storage is not None:
                # create the Optuna schema once: threads creating it at once collide
                optuna.storages.get_storage(storage)
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
                bar.set_postfix_str(f"{item[1]}/{item[0].level.label}")
                built.append(build(item))
                bar.update(1)
    finally:
        bar.close()
    return {(setup.level.label, model): g for (setup, model, _), g in zip(todo, built, strict=True)}
