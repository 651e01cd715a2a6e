"""Diagnostics of a study's models on the human data, before and during a study.

:func:`uninformative_reason` is the one rule that calls a model uninformative about the
human triplets: its predictions of held-out human triplets are no better than chance
(accuracy within ``z`` standard errors of 1/3, or mean NLL within ``NLL_TOLERANCE`` of
log 3, the NLL of predicting nothing). ``check`` applies it to each model's zero-shot
fit; the generators apply it to each fitted probe (an uninformative generator is not
calibrated to the noise ceiling and runs no jobs unless ``include_uninformative``).

:func:`diagnose` is what ``modelrecovery check`` (and ``recover``, before it starts)
reports: each model's zero-shot fit and flags (uninformative, badly scaled,
near-duplicates), the human noise ceiling, the grid's jobs and an estimate of their time;
:func:`format_diagnosis` gives its lines. Pure: no tracking, no files written. The flags
are warnings: none of them stops a study.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHANCE = 1 / 3
NLL_TOLERANCE = 1e-3  # nats: log 3 - NLL below this is no information
Z = 1.96  # accuracy within Z standard errors of chance is chance


def uninformative_reason(accuracy: float, nll: float, n: int, z: float = Z) -> str | None:
    """Why predictions with held-out ``accuracy`` and mean ``nll`` on ``n`` responses carry
    no information about the triplets (one line), or None when they do."""
    if n < 1 or not math.isfinite(accuracy):
        return None
    se = math.sqrt(CHANCE * (1 - CHANCE) / n)
    if math.isfinite(nll) and nll >= math.log(3) - NLL_TOLERANCE:
        return (
            f"its held-out NLL {nll:.4f} is within {NLL_TOLERANCE:g} of log 3 = "
            f"{math.log(3):.4f} (no odd one out preferred)"
        )
    if accuracy - CHANCE <= z * se:
        return (
            f"its held-out accuracy {accuracy:.3f} on {n} responses is within {z:g} "
            f"standard errors ({se:.3f}) of chance (1/3)"
        )
    return None


# ----------------------------------------------------------------------------------------------
# diagnose: what ``modelrecovery check`` reports before a study runs
# ----------------------------------------------------------------------------------------------

#: the range of the zero-shot best scale a* (W = a* I on the raw features, T = 1) inside
#: which the probes' fits, which start at W = I, reach their optimum (see :func:`scale_problem`)
SCALE_RANGE = (1e-4, 1e2)
DUPLICATE_CORRELATION = 0.95  # RDMs correlating above this: near-duplicate models
# training triplets of the two timed fits per level: N1 = the level's largest size up to
# 1000 (and as many as the human training triplets), N0 = min(200, N1 / 2)
TIMING_SIZES = (200, 1000)
TIMING_REPEATS = 2  # each timed fit is the fastest of this many
TIMED_LAMBDAS = 3  # λ values timed per level (smallest, middle, largest)


@dataclass(frozen=True)
class ModelDiagnosis:
    """One model's zero-shot fit to the human triplets and its flags (None: not raised)."""

    name: str
    feature_dim: int
    zero_shot_accuracy: float  # on the held-out (repeated) human triplets
    zero_shot_nll: float
    best_scale: float  # a* of W = a* I on the raw features, fitted on the training triplets
    largest_norm: float  # the largest row norm over the concepts of the triplets
    uninformative: str | None = None
    badly_scaled: str | None = None


@dataclass(frozen=True)
class CeilingDiagnosis:
    """The human noise ceiling of the repeated set and its response counts (per distinct
    triplet answered at least twice: the triplets the ceiling averages over)."""

    ceiling: float
    n_responses: int  # every response of the set
    n_triplets: int  # distinct triplets
    n_repeated: int  # distinct triplets with at least two responses
    responses_min: int
    responses_median: float
    responses_max: int


@dataclass(frozen=True)
class LevelTiming:
    """The measured cost of one fit at a level: seconds at two training sizes (one fit of
    the largest candidate, averaged over the timed λ values) and the affine cost model
    through them, ``seconds(N) = fixed + per_triplet * N``."""

    level: str
    model: str
    sizes: tuple[int, int]
    seconds: tuple[float, float]
    fixed: float
    per_triplet: float

    @property
    def exponent(self) -> float:
        """The measured scaling: log(t1 / t0) / log(N1 / N0) (1 for a cost linear in N, 0
        when the fixed cost dominates)."""
        (n0, n1), (t0, t1) = self.sizes, self.seconds
        if n1 == n0 or t0 <= 0 or t1 <= 0:
            return math.nan
        return math.log(t1 / t0) / math.log(n1 / n0)

    def fit_seconds(self, n: int) -> float:
        return self.fixed + self.per_triplet * n


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` finds: per model, the near-duplicate pairs, the noise
    ceiling, the grid's size and the estimated time."""

    study: str
    models: tuple[ModelDiagnosis, ...]
    duplicates: tuple[tuple[str, str, float], ...]  # (model, model, RDM correlation)
    ceiling: CeilingDiagnosis
    jobs: int
    fits: int  # probe fits of every job: candidates x λ values x folds, summed
    workers: int
    estimated_seconds: float
    timings: tuple[LevelTiming, ...] = ()
    n_test: int = 0  # held-out human responses the zero-shot scores are computed on
    # studies that cannot mean anything: models sharing a feature file, one candidate
    meaningless: tuple[str, ...] = ()

    @property
    def uninformative(self) -> list[str]:
        return [m.name for m in self.models if m.uninformative]

    @property
    def badly_scaled(self) -> list[str]:
        return [m.name for m in self.models if m.badly_scaled]

    def flags(self) -> dict[str, list]:
        """The flagged models (warnings: none of them stops a study)."""
        return {
            "uninformative": self.uninformative,
            "badly_scaled": self.badly_scaled,
            "near_duplicates": [[a, b] for a, b, _ in self.duplicates],
        }


def scale_problem(
    best_scale: float, largest_norm: float, dtype: str = "float32", informative: bool = True
) -> str | None:
    """Why features are badly scaled for the probes (one line), or None.

    The probes' fits start at W = I with T = 1, so they see the raw dot products. The
    zero-shot best scale a* (the W = a* I minimising the training NLL) says how far that
    start is from the right scale. Measured with the L-BFGS fits (zero-shot, diagonal,
    full, p = 10 and 50): for a* above about 1e2 the similarities at the start are so
    small that the loss looks flat there (NLL ~ log 3) and the fit stops at once, no
    better than chance (and a generator is then called uninformative); below about 1e-4
    the fits need several times more iterations and, from a* ~ 1e-12, stop at the step
    limit or diverge; the λ grid's penalties, relative to W's scale, also shift. So
    ``badly scaled``: a* outside :data:`SCALE_RANGE` = [1e-4, 1e2], or the largest squared
    row norm (the largest similarity) beyond the fit ``dtype``'s largest number (the
    fits refuse such features). A model can be informative and badly scaled: dividing
    its features by a constant fixes the scale and keeps the information. For an
    uninformative model (``informative`` false) a small a* is what no information looks
    like, not a scale: only a* above the range and the overflow are flagged."""
    limit = float(np.finfo(dtype).max)
    fix = (
        f"multiply the features by about {math.sqrt(best_scale):.3g} (so that a* ~ 1)"
        if math.isfinite(best_scale) and best_scale > 0
        else "rescale the features"
    )
    if largest_norm**2 > limit:
        return (
            f"the largest squared row norm {largest_norm**2:.3g} overflows {dtype} "
            f"(largest {limit:.3g}): the probe fits refuse these features; {fix}"
        )
    if not (math.isfinite(best_scale) and best_scale > 0):
        return None  # no positive scale helps (uninformative) or separable: no scale to judge
    low, high = SCALE_RANGE
    if best_scale > high:
        return (
            f"the best zero-shot scale a* = {best_scale:.3g} > {high:g}: the similarities are "
            f"too small (largest row norm {largest_norm:.3g}) for fits that start at W = I, "
            f"T = 1 (they stop at about log 3, as if uninformative); {fix}"
        )
    if best_scale < low and informative:
        return (
            f"the best zero-shot scale a* = {best_scale:.3g} < {low:g}: the similarities are "
            f"too large (largest row norm {largest_norm:.3g}) for fits that start at W = I, "
            f"T = 1 (slow, or stopping far from their optimum; λ means less); {fix}"
        )
    return None


def zero_shot_diagnosis(
    name: str, features: np.ndarray, train, test, dtype: str = "float32"
) -> ModelDiagnosis:
    """A model's zero-shot fit: W = a* I with a* fitted on the human ``train`` triplets
    (:func:`~modelrecovery.probe.zero_shot.best_scale`), scored on the held-out ``test``
    triplets (accuracy with tied predictions sharing credit, mean NLL), and its flags.

    Computed in float64 on the features divided by their largest row norm c (the scores
    do not depend on a positive factor; a* of the raw features is a*(x / c) / c^2)."""
    from modelrecovery.probe.zero_shot import best_scale, mean_nll, tie_accuracy, triplet_logits

    x = np.asarray(features, dtype=np.float64)
    used = np.unique(np.concatenate([train.ids.ravel(), test.ids.ravel()]))
    norm = float(np.linalg.norm(x[used], axis=1).max()) if used.size else 0.0
    c = norm if math.isfinite(norm) and norm > 0 else 1.0
    if not math.isfinite(norm):  # overflowing float64: scale by the largest entry first
        c = float(np.abs(x[used]).max())
        norm = c * float(np.linalg.norm(x[used] / c, axis=1).max())
    xs = x / c
    scale = best_scale(triplet_logits(xs, train.ids), np.asarray(train.odd, dtype=np.int64))
    logits = triplet_logits(xs, test.ids)
    odd = np.asarray(test.odd, dtype=np.int64)
    if math.isfinite(scale):
        accuracy, nll = tie_accuracy(scale * logits, odd), mean_nll(scale * logits, odd)
    else:  # separable training triplets: the ordering of the similarities, no NLL
        accuracy, nll = tie_accuracy(logits, odd), math.nan
    raw_scale = scale / (c * c) if norm > 0 else math.nan
    reason = uninformative_reason(float(accuracy), float(nll), len(odd))
    return ModelDiagnosis(
        name=name,
        feature_dim=int(x.shape[1]),
        zero_shot_accuracy=float(accuracy),
        zero_shot_nll=float(nll),
        best_scale=float(raw_scale),
        largest_norm=norm,
        uninformative=reason,
        badly_scaled=scale_problem(raw_scale, norm, dtype, reason is None) if norm > 0 else None,
    )


def near_duplicates(
    features: dict[str, np.ndarray], concepts: np.ndarray, threshold: float = DUPLICATE_CORRELATION
) -> list[tuple[str, str, float]]:
    """Pairs of models whose RDMs (1 - Pearson correlation of the rows) over ``concepts``
    correlate above ``threshold``, highest first."""
    from modelrecovery.world.model_report import rdm_correlations

    names = list(features)
    if len(names) < 2:
        return []
    corr = rdm_correlations({m: np.asarray(features[m])[concepts] for m in names})
    pairs = [
        (a, b, float(corr.loc[a, b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if math.isfinite(corr.loc[a, b]) and corr.loc[a, b] > threshold
    ]
    return sorted(pairs, key=lambda pair: -pair[2])


def ceiling_diagnosis(test) -> CeilingDiagnosis:
    """:func:`~modelrecovery.data.ceiling.noise_ceiling` of the repeated set with its
    response counts."""
    from modelrecovery.data.ceiling import noise_ceiling, noise_ceiling_details

    counts = noise_ceiling_details(test)["n_responses"].to_numpy()
    repeated = counts[counts >= 2]
    try:
        ceiling = noise_ceiling(test)
    except ValueError:  # no triplet answered twice
        ceiling = math.nan
    return CeilingDiagnosis(
        ceiling=ceiling,
        n_responses=len(test),
        n_triplets=len(counts),
        n_repeated=len(repeated),
        responses_min=int(repeated.min()) if repeated.size else 0,
        responses_median=float(np.median(repeated)) if repeated.size else math.nan,
        responses_max=int(repeated.max()) if repeated.size else 0,
    )


def time_level(
    grid,
    level,
    name: str,
    features: np.ndarray,
    train,
    largest: int,
    scale: float,
    seed: int = 0,
) -> LevelTiming:
    """One fit of ``features`` at ``level`` (the grid's family, regulariser, stopping,
    dtype, device and reduction) on simulated triplets at two sizes
    (:data:`TIMING_SIZES`; ``largest``: the level's largest N): random subsets of the
    human training triplets answered by the features' own zero-shot fit (W = ``scale``
    I, as a job's generator answers; the human responses themselves, which the best
    models predict almost perfectly, make the weakly penalised fits run far longer than
    a job's), averaged over up to
    :data:`TIMED_LAMBDAS` of the level's λ values (cold starts), each the fastest of
    :data:`TIMING_REPEATS` (the machine may be busy), single-threaded as a job's fits;
    a small fit first, untimed, compiles the kernels."""
    import numba
    import torch

    from modelrecovery.data.triplets import Triplets
    from modelrecovery.probe import LBFGSSettings, fit_probe
    from modelrecovery.probe.zero_shot import triplet_logits
    from modelrecovery.recovery.job import TORCH_DTYPES

    lams = grid.lam_grid(level)
    timed = sorted({lams[0], lams[len(lams) // 2], lams[-1]})[:TIMED_LAMBDAS]
    settings = LBFGSSettings.of(grid.stopping, reshuffle=grid.reshuffle)
    m = len(train)
    n1 = max(min(TIMING_SIZES[1], largest, m), 2)
    n0 = min(TIMING_SIZES[0], n1 // 2)
    order = np.random.default_rng(seed).permutation(m)
    options = dict(
        family=level.family,
        k=level.k,
        regulariser=grid.regulariser,
        dtype=TORCH_DTYPES[grid.dtype],
        device=grid.device,
        reduce=grid.reduction,
        settings=settings,
        name=name,
    )

    ids = train.ids[np.sort(order[: max(n1, 50)])]
    logits = triplet_logits(np.asarray(features, dtype=np.float64), ids)
    if math.isfinite(scale) and scale > 0:
        logits = scale * logits
    else:  # no scale fitted: uniform answers
        logits = np.zeros_like(logits)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    draws = np.random.default_rng(seed + 1).random(len(ids))[:, None]
    odd = np.minimum((draws > np.cumsum(probs, axis=1)).sum(axis=1), 2)

    def subset(n: int) -> Triplets:
        return Triplets(ids[:n], odd[:n], train.n_concepts)

    # one thread per fit, as a job's fits run (run_job); the caller's threads restored
    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        fit_probe(features, subset(min(n0, 50)), lam=timed[0], **options)  # compile, untimed
        seconds = []
        for n in (n0, n1):
            part = subset(n)
            total = 0.0
            for lam in timed:
                fastest = math.inf
                for _ in range(TIMING_REPEATS):
                    tic = time.perf_counter()
                    fit_probe(features, part, lam=lam, **options)
                    fastest = min(fastest, time.perf_counter() - tic)
                total += fastest
            seconds.append(total / len(timed))
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)
    t0, t1 = seconds
    per_triplet = max((t1 - t0) / (n1 - n0), 0.0) if n1 > n0 else t1 / max(n1, 1)
    fixed = max(t0 - per_triplet * n0, 0.0)
    return LevelTiming(level.label, name, (n0, n1), (t0, t1), fixed, per_triplet)


def grid_workers(spec) -> int:
    """How many jobs run at once: 1 in process; the Dask pool's workers otherwise."""
    from modelrecovery.devices import cuda_count, pool_size

    execution = spec.executor
    if execution.kind == "inprocess":
        return 1
    if execution.address:
        return int(execution.n_workers)
    device = spec.grid.device
    n_gpus = 0 if device == "cpu" else cuda_count()
    return pool_size(device, n_gpus, execution.jobs_per_gpu, execution.n_workers)


def diagnose(spec, inputs=None, timing: bool = True) -> Diagnosis:
    """Diagnose a study before it runs (pure: no tracking, nothing written; a world study
    builds its world when ``inputs`` is not given).

    Per model: its feature dimension and its **zero-shot** fit, W = a* I with the scale a*
    fitted on the human *training* triplets and scored on the held-out repeated human
    triplets (``inputs.human.test``), flagged **uninformative** by
    :func:`uninformative_reason` (the rule the generators apply to their fitted probes:
    here it says the features, compared by their dot products, carry no information about
    these triplets; a fitted W may still find some) and **badly scaled** by
    :func:`scale_problem`. **Near-duplicates**: pairs of models whose RDMs over the
    concepts of the triplets correlate above 0.95. The **noise ceiling** of the repeated
    set with its response counts. The grid's **jobs** (every level's grid,
    :func:`~modelrecovery.study.pipeline.level_grids`, with every generator: those whose
    fitted probes turn out uninformative run none, so this is an upper bound).

    The **time** is an estimate from a small measured cost model. Assumptions: a job's
    cost is its probe fits, (candidates x λ values x folds) of them, each on the job's N
    simulated training triplets (simulation, evaluation and the triplet designs other
    than random are not counted); a fit's cost is affine in N, ``fixed + per_triplet *
    N`` (full-batch L-BFGS: each step is linear in the triplets; a roughly constant
    number of steps), the same for every candidate as for the largest-dimension
    unflagged candidate, which is timed on triplets its zero-shot fit answers, per level,
    at two sizes up to the level's largest N (:func:`time_level`: the two sizes give the
    two coefficients, and their ratio the measured exponent, reported, which the model
    assumes between 0 and 1; at small N the fixed cost dominates and the exponent is
    near 0, or below it when fewer triplets take more steps); jobs spread over
    ``threads_per_job`` threads (their candidate-fold fits) and the executor's workers
    without overhead. Checked against real jobs on a planted study (4 candidates of 5 to
    9 dimensions, one of them badly scaled, 3 folds, 3 λ; diagonal and full W; N = 80
    to 3000): estimated 0.15 to 0.7 s per job, measured 0.2 to 0.9 s: low by up to 4x
    there, as the badly scaled candidate's fits took 7 times the steps of the others;
    the fits were 90% of a job's time. ``timing=False`` skips the timed fits (no
    estimate: ``estimated_seconds`` is NaN)."""
    from modelrecovery.recovery.grid import jobs_of
    from modelrecovery.study.inputs import load_model_features, study_inputs
    from modelrecovery.study.pipeline import grid_config, level_grids

    if inputs is None:
        inputs = study_inputs(spec, progress=False)
    human = inputs.human
    if human.test is None:
        raise ValueError("the study has no repeated (held-out) human triplets to diagnose on")
    names = list(inputs.feature_paths)
    n_concepts = human.train.n_concepts
    loaded = {m: load_model_features(inputs.feature_paths[m], n_concepts, human) for m in names}
    features = {m: x for m, (x, _) in loaded.items()}
    dtype = spec.probe.dtype if spec.probe.dtype == spec.grid.dtype else "float32"
    models = tuple(
        zero_shot_diagnosis(m, features[m], human.train, human.test, dtype) for m in names
    )
    concepts = np.unique(np.concatenate([human.train.ids.ravel(), human.test.ids.ravel()]))
    grid = grid_config(spec, names)
    meaningless = meaningless_study(
        {m: Path(inputs.feature_paths[m]) for m in names},
        {m: digest for m, (_, digest) in loaded.items()},
        list(grid.candidates),
    )
    same = {frozenset(pair) for pair in _same_features({m: d for m, (_, d) in loaded.items()})}
    duplicates = tuple(  # a pair sharing one file is said once, as such
        d for d in near_duplicates(features, concepts) if frozenset(d[:2]) not in same
    )

    grids = level_grids(grid, spec)
    # timed: the widest candidate, among the unflagged ones when there are (a badly scaled
    # model's fits are erratic in time, or refused), else those that fit the grid's dtype
    limit = float(np.finfo(grid.dtype).max)
    by_name = {m.name: m for m in models}
    flagged = {m.name for m in models if m.badly_scaled or m.uninformative}
    clean = [m for m in grid.candidates if m not in flagged]
    fits_dtype = [m for m in grid.candidates if by_name[m].largest_norm ** 2 <= limit]
    widest = max(clean or fits_dtype or grid.candidates, key=lambda m: features[m].shape[1])
    timings = {}
    for part in grids if timing else []:  # each level is in one grid, with its own sizes
        for level in part.levels:
            timings[level.label] = time_level(
                part,
                level,
                widest,
                features[widest],
                human.train,
                max(part.sizes),
                by_name[widest].best_scale,
            )
    n_jobs = n_fits = 0
    seconds = 0.0
    for part in grids:
        for job in jobs_of(part):
            units = len(part.candidates) * part.n_folds
            n_lams = len(part.lam_grid(job.level))
            timed = timings.get(job.level.label)
            fit = timed.fit_seconds(job.n_train) if timed is not None else math.nan
            n_jobs += 1
            n_fits += units * n_lams
            seconds += units * n_lams * fit / min(max(int(part.threads_per_job), 1), units)
    workers = max(grid_workers(spec), 1)
    return Diagnosis(
        study=spec.study,
        models=models,
        duplicates=duplicates,
        ceiling=ceiling_diagnosis(human.test),
        jobs=n_jobs,
        fits=n_fits,
        workers=workers,
        estimated_seconds=seconds / min(workers, max(n_jobs, 1)),
        timings=tuple(timings.values()),
        n_test=len(human.test),
        meaningless=meaningless,
    )


def _same_features(digests: dict[str, str]) -> list[tuple[str, str]]:
    """Pairs of models (in order) whose feature files have the same content hash."""
    names = list(digests)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if digests[a] and digests[a] == digests[b]
    ]


def meaningless_study(
    paths: dict[str, Path], digests: dict[str, str], candidates: list[str]
) -> tuple[str, ...]:
    """One warning line per way the study cannot mean anything: two models reading one
    feature file (the same path, or files of the same content hash: recovery cannot tell
    them apart, whichever generated the data), and a single candidate (it is crowned by
    every job: recovery is trivially 1.0)."""
    lines = []
    for a, b in _same_features(digests):
        same_path = paths[a].resolve() == paths[b].resolve()
        how = (
            f"the same file {paths[a]}"
            if same_path
            else (f"files of the same content ({paths[a]}, {paths[b]}; sha256 {digests[a][:12]})")
        )
        lines.append(
            f"same features: models {a} and {b} read {how}: recovery cannot tell them apart "
            "(each crowns either); give each model its own features"
        )
    if len(candidates) == 1:
        lines.append(
            f"one candidate: {candidates[0]} is crowned by every job, so recovery is "
            "trivially 1.0; name two or more candidates"
        )
    return tuple(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_diagnosis(d: Diagnosis) -> list[str]:
    """The lines ``modelrecovery check`` prints: a table of the models, the flags in
    words, the noise ceiling, the jobs and the estimated time."""
    c = d.ceiling
    lines = [
        f"study {d.study}: {len(d.models)} models; zero-shot fit W = a* I (a* fitted on the "
        f"human training triplets), scored on the {d.n_test} held-out repeated responses",
    ]
    width = max([5] + [len(m.name) for m in d.models])
    lines.append(f"  {'model':<{width}}  {'dim':>6}  {'accuracy':>8}  {'nll':>7}  {'a*':>9}  flags")
    for m in d.models:
        flags = [
            f
            for f, on in (("uninformative", m.uninformative), ("badly scaled", m.badly_scaled))
            if on
        ]
        lines.append(
            f"  {m.name:<{width}}  {m.feature_dim:>6}  {m.zero_shot_accuracy:>8.3f}  "
            f"{m.zero_shot_nll:>7.4f}  {m.best_scale:>9.3g}  {', '.join(flags) or '-'}"
        )
    for m in d.models:
        if m.uninformative:
            lines.append(
                f"uninformative: {m.name} carries no information about these triplets: "
                f"{m.uninformative}"
            )
        if m.badly_scaled:
            lines.append(f"badly scaled: {m.name}: {m.badly_scaled}")
    for a, b, r in d.duplicates:
        lines.append(
            f"near-duplicates: {a} and {b} (RDM correlation {r:.3f} > "
            f"{DUPLICATE_CORRELATION:g}): recovery cannot tell them apart"
        )
    lines.extend(f"warning: {line}" for line in d.meaningless)
    if not (d.uninformative or d.badly_scaled or d.duplicates or d.meaningless):
        lines.append("no model flagged")
    lines.append(
        f"noise ceiling {c.ceiling:.3f}: {c.n_responses} responses on {c.n_triplets} "
        f"distinct triplets, {c.n_repeated} of them repeated (responses per repeated "
        f"triplet: min {c.responses_min}, median {c.responses_median:g}, max {c.responses_max})"
    )
    time_text = (
        f": about {_duration(d.estimated_seconds)} (an estimate from timed fits)"
        if math.isfinite(d.estimated_seconds)
        else ""
    )
    lines.append(f"grid: {d.jobs} jobs ({d.fits} probe fits), on {d.workers} worker(s){time_text}")
    for t in d.timings:
        lines.append(
            f"  {t.level}: one fit of {t.model} {t.seconds[0]:.3g} s at N = {t.sizes[0]}, "
            f"{t.seconds[1]:.3g} s at N = {t.sizes[1]} (measured scaling N^{t.exponent:.2f}; "
            "assumed: a fixed cost plus a cost per triplet)"
        )
    return lines
