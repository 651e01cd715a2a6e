"""One recovery job (docs/science/method.md §4): simulate data from the generator, refit every
candidate for every λ on every fold, select λ by mean validation score, score by mean test score,
and crown the winner.

Rules (the study's, docs/science/method.md §4): every λ starts from the family's start point
(cold; ``warm_start`` is an option: the λ path then runs from strong to weak penalty, each
fit starting from the previous solution); λ is chosen by mean validation score over folds,
ties going to the smallest λ (the first maximum over the ascending grid); the score is the
mean test score at that λ. Winner ties (``tie_rule``): ``random`` (default) draws the
winner uniformly among the candidates tied at the best score with a seed derived from the
job, and ranks follow the same order, so ``recovered`` ⇔ ``generator_rank == 1``;
``first`` (the study) takes the first tied candidate in candidate order, ranks ``average``.
Scores within 1e-12 of each other count as tied (means of the same accuracies summed in
another order differ in the last bits).

Exact work sharing inside a job: the compiled training triplets of a fold serve every
candidate and λ; each candidate's row space and rotated features are computed once per
fold and serve its whole λ path; validation and test similarities come from cached Gram
pieces (for the reduced full W: S = (P A)(P A)^T + c^2 Q with P = X V and
Q = X X^T - P P^T, because the cross term vanishes), never from the p x p W.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import torch

from modelrecovery.data.sampling import sample_responses, sample_triplets
from modelrecovery.data.splits import concept_folds
from modelrecovery.data.triplets import Triplets
from modelrecovery.probe.crossval import TIE_TOLERANCE, select_lambda
from modelrecovery.probe.fit import (
    FittedProbe,
    LBFGSSettings,
    fit_path,
    resolve_device,
    tie_accuracy,
    triplet_probabilities,
)
from modelrecovery.probe.objective import PreparedTriplets
from modelrecovery.probe.reduced import RowSpace, offset_of, reduction_applies, row_space
from modelrecovery.recovery.grid import GridConfig, Job, derived_seed
from modelrecovery.recovery.triplet_design import odd_one_out_probabilities
from modelrecovery.recovery.triplet_design import sequential as selection_design

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}  # of spec.DTYPES


@dataclass
class FoldData:
    """Synthetic training, validation and test triplets of one concept fold."""

    train: Triplets
    validation: Triplets
    test: Triplets


@dataclass
class JobResult:
    """The three results tables of a job (see docs/reference/results-tables.md)."""

    job: pd.DataFrame
    scores: pd.DataFrame
    fits: pd.DataFrame


def simulate(
    job: Job,
    config: GridConfig,
    generator_z: np.ndarray,
    temperature: float,
    exclude_keys: np.ndarray | None,
    design_models: dict[str, tuple[np.ndarray, float]] | None = None,
    candidate_features: dict[str, np.ndarray] | None = None,
    costs: dict | None = None,
) -> list[FoldData]:
    """Synthetic data of a job. Folds and triplets depend on (seed, N) only, so every
    generator is tested on the same stimuli; responses depend on the generator too.

    ``job.selection`` other than ``random`` chooses the training triplets from a pool of
    ``config.selection_pool`` x N uniform triplets (:mod:`.selection`): ``discriminating``
    by the candidates' human-fitted probes (``design_models``: candidate -> (Z, T) at the
    job's level), ``sequential`` in batches refitted on the responses so far (needs
    ``candidate_features``). Validation and test triplets stay uniform. ``costs``, when
    given, receives the design's timings."""
    n_concepts = generator_z.shape[0]
    folds = concept_folds(
        n_concepts,
        n_folds=config.n_folds,
        seed=derived_seed(job.seed, "folds"),
        train_fraction=config.train_fraction,
    )
    n_eval = max(1, round(job.n_train * config.eval_fraction))
    z = torch.as_tensor(generator_z, dtype=torch.float64)
    out = []
    for f, fold in enumerate(folds):
        sets = {}
        for role, concepts, n in (
            ("train", fold.train, job.n_train),
            ("validation", fold.validation, n_eval),
            ("test", fold.test, n_eval),
        ):
            if role == "train" and job.selection != "random":
                continue  # designed after the uniform sets (below)
            # the published scripts seed their sampler with the job's seed alone, the same
            # for train, validation and test in every fold (and every N)
            sampling_seed = (
                derived_seed(job.seed, "paper_sampler")
                if config.paper_compatible_sampling
                else derived_seed(job.seed, job.n_train, f, role)
            )
            ids = sample_triplets(
                concepts,
                n,
                seed=sampling_seed,
                n_concepts=n_concepts,
                exclude=exclude_keys,
                paper_compatible_sampling=config.paper_compatible_sampling,
            )
            unlabeled = Triplets(ids, np.zeros(len(ids), dtype=np.int8), n_concepts)
            probs = triplet_probabilities(z, unlabeled, temperature)
            odd = sample_responses(
                probs, seed=derived_seed(job.seed, job.n_train, f, role, "responses", job.generator)
            )
            sets[role] = Triplets(ids, odd, n_concepts)
        if job.selection != "random":
            sets["train"] = _designed_train(
                job,
                config,
                f,
                fold.train,
                z,
                temperature,
                exclude_keys,
                sets["validation"],
                design_models,
                candidate_features,
                costs,
            )
        out.append(FoldData(sets["train"], sets["validation"], sets["test"]))
    return out


def _designed_train(
    job,
    config,
    f,
    concepts,
    z,
    temperature,
    exclude_keys,
    validation,
    design_models,
    candidate_features,
    costs,
) -> Triplets:
    """One fold's training triplets chosen by the job's design (see :func:`simulate`)."""
    from math import comb

    from modelrecovery.data.sampling import excluded_keys

    if design_models is None or any(c not in design_models for c in config.candidates):
        raise ValueError(
            f"triplet_selection {job.selection!r} needs every candidate's human-fitted probe "
            f"(Z, T) at level {job.level.label}"
        )
    n_concepts = z.shape[0]
    available = comb(len(concepts), 3) - len(
        excluded_keys(exclude_keys, n_concepts, concepts=concepts)
    )
    pool_size = min(int(config.selection_pool) * job.n_train, available)
    pool = sample_triplets(
        concepts,
        pool_size,
        seed=derived_seed(job.seed, job.n_train, f, "pool"),
        n_concepts=n_concepts,
        exclude=exclude_keys,
        paper_compatible_sampling=config.paper_compatible_sampling,
    )
    tic = time.perf_counter()
    prior = np.stack(
        [
            odd_one_out_probabilities(design_models[c][0], pool, design_models[c][1])
            for c in config.candidates
        ]
    )
    prior_seconds = time.perf_counter() - tic

    def collect(ids: np.ndarray, batch: int) -> np.ndarray:
        probs = triplet_probabilities(
            z, Triplets(ids, np.zeros(len(ids), np.int8), n_concepts), temperature
        )
        extra = ("batch", batch) if batch else ()
        seed = derived_seed(job.seed, job.n_train, f, "train", "responses", job.generator, *extra)
        return sample_responses(probs, seed=seed)

    refit = None
    n_batches = 1
    if job.selection == "sequential":
        n_batches = int(config.selection_batches)
        if candidate_features is None:
            raise ValueError("triplet_selection 'sequential' needs the candidates' features")

        def refit(ids: np.ndarray, odd: np.ndarray, rest: np.ndarray) -> np.ndarray:
            return _refit_predictions(
                job, config, candidate_features, Triplets(ids, odd, n_concepts), validation, rest
            )

    design = selection_design(pool, job.n_train, n_batches, prior, collect, refit)
    if costs is not None:
        costs.setdefault("pool_size", []).append(pool_size)
        costs.setdefault("prior_seconds", []).append(prior_seconds)
        costs.setdefault("select_seconds", []).extend(design.select_seconds)
        costs.setdefault("refit_seconds", []).extend(design.refit_seconds)
    return Triplets(pool[design.chosen], design.responses.astype(np.int8), n_concepts)


def _refit_predictions(
    job: Job,
    config: GridConfig,
    candidate_features: dict[str, np.ndarray],
    train: Triplets,
    validation: Triplets,
    rest: np.ndarray,
) -> np.ndarray:
    """Every candidate refitted on the responses so far (each λ of the grid, chosen by
    validation NLL, ties to the smallest), predicting the triplets ``rest``: (C, M, 3)."""
    dtype = TORCH_DTYPES[config.dtype]
    settings = LBFGSSettings.of(config.stopping, reshuffle=config.reshuffle)
    prep = PreparedTriplets.from_triplets(train)
    reducible = reduction_applies(
        job.level.family, config.regulariser, config.stopping, config.reduction
    )
    lams = config.lam_grid(job.level)
    pool = Triplets(rest, np.zeros(len(rest), np.int8), train.n_concepts)
    out = []
    for c in config.candidates:
        x = torch.as_tensor(candidate_features[c]).to(dtype=dtype)
        space = row_space(x[prep.concepts]) if reducible else None
        if space is not None and (space.rank >= x.shape[1] or space.rank == 0):
            space = None
        evaluator = _Evaluator(x, {"val": validation, "pool": pool}, space, config.evaluation)
        fits = fit_path(
            x,
            prep,
            lams,
            settings=settings,
            family=job.level.family,
            k=job.level.k,
            regulariser=config.regulariser,
            dtype=dtype,
            space=space,
            reduce=config.reduction if space is not None else "never",
        )
        nll = np.array([evaluator.scores(fitted, ("val",))["val_nll"] for fitted in fits])
        best = fits[int(np.flatnonzero(nll <= nll.min() + TIE_TOLERANCE)[0])]
        logits = evaluator.logits(best, "pool")
        out.append(torch.softmax(logits, 1).cpu().numpy())
    return np.stack(out)


class _Evaluator:
    """Validation / test accuracy and NLL of a candidate's fits on one fold.

    ``evaluation="exact"`` (the default): similarities are computed in float64 whatever
    the fitting dtype (a float32 Gram matrix can flip a near-tied test triplet between two
    fits equal to 1e-7, and one flipped triplet moves a test accuracy by 1/len(test)), and
    exact ties share credit (:func:`~modelrecovery.probe.fit.tie_accuracy`).
    ``evaluation="study"``: as the published scripts, similarities in the fitting dtype,
    the prediction the argmax (the first position on ties) and the accuracy the dtype's
    mean of the hits."""

    def __init__(
        self,
        x: torch.Tensor,
        sets: dict[str, Triplets],
        space: RowSpace | None,
        evaluation: str = "exact",
    ):
        ids = np.concatenate([t.ids for t in sets.values()])
        concepts, local = np.unique(ids, return_inverse=True)
        local = local.reshape(-1, 3)
        self.sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        start = 0
        dev = x.device
        for name, t in sets.items():
            rows = torch.from_numpy(local[start : start + len(t)].astype(np.int64)).to(dev)
            self.sets[name] = (rows, torch.from_numpy(t.odd.astype(np.int64)).to(dev))
            start += len(t)
        self.study = evaluation == "study"
        self.dtype = x.dtype if self.study else torch.float64
        self.x = x[torch.from_numpy(concepts).to(dev)].to(self.dtype)
        self.space = space
        if space is not None:
            self.p = self.x @ space.basis.to(self.dtype)
            self.q = self.x @ self.x.T - self.p @ self.p.T

    def gram(self, fitted: FittedProbe) -> torch.Tensor:
        theta = fitted.theta.to(self.dtype)
        if fitted.space is None:
            z = fitted.family.transform(self.x, theta)
            return z @ z.T
        if fitted.space is not self.space:
            raise ValueError("the fit's row space is not the evaluator's")
        pa = self.p @ theta
        s = pa @ pa.T
        c = offset_of(theta, fitted.regulariser, fitted.offset)
        if c != 0.0:
            s = s + (c * c) * self.q
        return s

    def scores(
        self,
        fitted: FittedProbe,
        names: tuple[str, ...] | None = None,
        per_triplet: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """Accuracy and mean NLL of each set (or of ``names``); ``per_triplet``, when
        given, receives each set's per-triplet NLL."""
        s = self.gram(fitted)
        out = {}
        for name, (rows, odd) in self.sets.items():
            if names is not None and name not in names:
                continue
            a, b, c = rows[:, 0], rows[:, 1], rows[:, 2]
            logits = torch.stack([s[b, c], s[a, c], s[a, b]], 1) / fitted.temperature
            nll = torch.logsumexp(logits, 1) - logits[torch.arange(len(odd), device=s.device), odd]
            if self.study:  # the scripts: argmax (first on ties), the dtype's mean
                out[f"{name}_accuracy"] = float((logits.argmax(1) == odd).to(s.dtype).mean())
                out[f"{name}_nll"] = float(nll.mean())
            else:
                out[f"{name}_accuracy"] = tie_accuracy(logits, odd)
                out[f"{name}_nll"] = float(nll.double().mean())
            if per_triplet is not None:
                per_triplet[name] = nll.double().cpu().numpy()
        return out

    def logits(self, fitted: FittedProbe, name: str) -> torch.Tensor:
        """The (m, 3) logits of one set's triplets (float64)."""
        s = self.gram(fitted)
        rows, _ = self.sets[name]
        a, b, c = rows[:, 0], rows[:, 1], rows[:, 2]
        return torch.stack([s[b, c], s[a, c], s[a, b]], 1) / fitted.temperature


def _job_columns(job: Job, config: GridConfig) -> dict:
    return {
        "job_id": job.job_id,
        "generator": job.generator,
        "n_train": job.n_train,
        "seed": job.seed,
        **config.condition(job.level, job.selection),
        "condition_key": config.condition_key(job.level, job.selection),
    }


def _snap(values: np.ndarray) -> np.ndarray:
    """Values with near-ties (within :data:`TIE_TOLERANCE`) made exactly equal."""
    out = np.asarray(values, dtype=float).copy()
    order = np.argsort(-out, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if out[a] - out[b] <= TIE_TOLERANCE:
            out[b] = out[a]
    return out


def select_and_score(
    fits: pd.DataFrame, config: GridConfig, candidates: list[str], tie_seed: int = 0
) -> pd.DataFrame:
    """Per candidate: λ by mean validation score over folds (ties: the smallest λ), then
    its mean test score, rank and whether it won.

    The score is mean test accuracy (criterion ``accuracy``, the study's) or minus mean
    test NLL (criterion ``nll``); with ``selection_criterion`` ``loglik`` or ``paired`` it
    is minus the mean test NLL (the held-out log-likelihood per triplet) whichever
    criterion chose λ. Ranks and the winner follow ``config.tie_rule`` (module
    docstring); ``tie_seed`` seeds the ``random`` rule. Fits that carry
    ``human_accuracy`` and ``human_nll`` (``human_heldout``) give them too, at the selected
    λ (mean over folds); they choose nothing.
    """
    if config.tie_rule == "study":
        return study_scores(fits, config, candidates)
    human = [c for c in ("human_accuracy", "human_nll") if c in fits.columns]
    means = (
        fits.groupby(["candidate", "lam"], sort=False)[
            ["val_accuracy", "val_nll", "test_accuracy", "test_nll", *human]
        ]
        .mean()
        .reset_index()
    )
    if config.criterion == "accuracy":
        means["selector"] = means["val_accuracy"]
    else:
        means["selector"] = -means["val_nll"]
    rows = []
    for candidate in candidates:
        part = means[means["candidate"] == candidate]
        best_lam = select_lambda(part["lam"].to_numpy(), part["selector"].to_numpy())
        best = part[part["lam"] == best_lam].iloc[0]
        if config.selection_criterion in ("loglik", "paired"):
            score = -best["test_nll"]  # held-out log-likelihood, whatever chose λ
        else:
            score = best["test_accuracy"] if config.criterion == "accuracy" else -best["test_nll"]
        rows.append(
            {
                "candidate": candidate,
                "best_lam": float(best["lam"]),
                "val_accuracy": float(best["val_accuracy"]),
                "val_nll": float(best["val_nll"]),
                "test_accuracy": float(best["test_accuracy"]),
                "test_nll": float(best["test_nll"]),
                **{c: float(best[c]) for c in human},
                "score": float(score),
            }
        )
    scores = pd.DataFrame(rows)
    return rank_candidates(scores, config.tie_rule, tie_seed)


def study_scores(fits: pd.DataFrame, config: GridConfig, candidates: list[str]) -> pd.DataFrame:
    """:func:`select_and_score` as the published scripts crown (``tie_rule`` ``study``).

    Each fold's score is a float32 value (the scripts' accuracies are float32 means; the
    selector is the validation accuracy, or minus the NLL with criterion ``nll``); λ is the
    first maximum, over the ascending grid, of the float64 mean of those fold values (NumPy
    on the Python floats of ``.item()``); the candidate's score is the float32 mean of its
    fold test values at that λ, and the winner the first maximum in candidate order (Python's
    ``max``). Equal counts split differently over the folds round to different means, so
    rounding, not order, decides most such ties, as in the scripts. Ranks are ordinal in
    the winner's order (rank 1 = the winner)."""
    human = [c for c in ("human_accuracy", "human_nll") if c in fits.columns]
    use_accuracy = config.criterion == "accuracy" and config.selection_criterion == "accuracy"

    def fold_values(part: pd.DataFrame, role: str) -> np.ndarray:
        ordered = part.sort_values("fold", kind="stable")
        if use_accuracy:
            return ordered[f"{role}_accuracy"].to_numpy(np.float32)
        return -ordered[f"{role}_nll"].to_numpy(np.float32)

    rows = []
    for candidate in candidates:
        part = fits[fits["candidate"] == candidate]
        lams = sorted(part["lam"].unique())
        selectors = [
            float(np.mean([float(v) for v in fold_values(part[part["lam"] == lam], "val")]))
            for lam in lams
        ]
        best_lam = lams[selectors.index(max(selectors))]  # the first maximum, as max()
        best = part[part["lam"] == best_lam]
        score = np.mean(fold_values(best, "test"))  # float32 mean
        rows.append(
            {
                "candidate": candidate,
                "best_lam": float(best_lam),
                "val_accuracy": float(best["val_accuracy"].mean()),
                "val_nll": float(best["val_nll"].mean()),
                "test_accuracy": float(best["test_accuracy"].mean()),
                "test_nll": float(best["test_nll"].mean()),
                **{c: float(best[c].mean()) for c in human},
                "score": float(score),
                "_score32": score,
            }
        )
    scores = pd.DataFrame(rows)
    values = [row["_score32"] for row in rows]
    winner = values.index(max(values))  # the first maximum in candidate order
    order = sorted(range(len(values)), key=lambda i: (-float(values[i]), i))
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    top = max(values)
    scores = scores.drop(columns=["_score32"])
    scores["rank"] = ranks
    scores["winner"] = np.arange(len(values)) == winner
    scores["n_tied_top"] = int(sum(v == top for v in values))
    return scores


def rank_candidates(scores: pd.DataFrame, tie_rule: str, tie_seed: int = 0) -> pd.DataFrame:
    """Add ``rank`` (1 = best), ``winner`` (bool) and ``n_tied_top`` to a scores table.

    ``random``: ties are broken by one uniform random permutation (seeded by ``tie_seed``),
    ranks are ordinal in that order, and the winner is rank 1. ``first``: the winner is the
    first tied candidate in table order and ranks are averages over ties (the study's).
    """
    snapped = _snap(scores["score"].to_numpy())
    n = len(scores)
    n_tied_top = int((snapped == snapped.max()).sum())
    if tie_rule == "random":
        shuffle = np.random.default_rng(tie_seed).permutation(n)
        order = np.lexsort((shuffle, -snapped))
        ranks = np.empty(n)
        ranks[order] = np.arange(1, n + 1)
        winner = int(order[0])
    elif tie_rule == "first":
        ranks = pd.Series(snapped).rank(ascending=False, method="average").to_numpy()
        winner = int(np.flatnonzero(snapped == snapped.max())[0])
    else:
        raise ValueError(f"tie_rule must be 'random' or 'first', got {tie_rule!r}")
    out = scores.copy()
    out["rank"] = ranks.astype(float)
    out["winner"] = np.arange(n) == winner
    out["n_tied_top"] = n_tied_top
    return out


def paired_decision(
    scores: pd.DataFrame,
    test_nll: dict[tuple[str, float, int], np.ndarray],
    z: float,
) -> dict:
    """The paired comparison of the two best-ranked candidates (``selection_criterion``
    ``paired``): per held-out test triplet (every fold's, each at the candidate's selected
    λ) the log-likelihood difference best minus runner-up; its mean, standard error
    (sample SD / sqrt(m)) and whether the mean exceeds ``z`` standard errors (``decided``;
    with a zero SE, whether the mean is positive). One candidate: decided."""
    ranked = scores.sort_values("rank", kind="stable")
    if len(ranked) < 2:
        return {"decided": True, "loglik_gap": np.nan, "loglik_gap_se": np.nan}
    (first, lam1), (second, lam2) = (
        ranked[["candidate", "best_lam"]].iloc[:2].itertuples(index=False)
    )
    folds = sorted({f for (c, _, f) in test_nll if c == first})
    diff = np.concatenate([test_nll[(second, lam2, f)] - test_nll[(first, lam1, f)] for f in folds])
    gap = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else np.inf
    decided = gap > z * se if se > 0 else gap > 0
    return {"decided": bool(decided), "loglik_gap": gap, "loglik_gap_se": se}


def pick_winner(scores: pd.DataFrame) -> str:
    """The candidate :func:`rank_candidates` marked as the winner."""
    return str(scores.loc[scores["winner"], "candidate"].iloc[0])


@dataclass(frozen=True)
class Implementation:
    """How a job's fits are computed (not what: no result may depend on it beyond
    rounding). ``FAST`` is the default; ``REFERENCE`` is the plain path the exactness test
    compares against: torch's L-BFGS, the dense objective in array operations, float64."""

    engine: str = "auto"  # L-BFGS: auto (lean on CPU) or torch
    path: str = "auto"  # objective path: auto, dense or sparse
    compiled: bool = True  # the numba kernel for the per-triplet work on CPU
    dtype: str | None = None  # None: the grid's dtype


FAST = Implementation()
REFERENCE = Implementation(engine="torch", path="dense", compiled=False, dtype="float64")


def _fit_unit(
    candidate: str,
    f: int,
    x: torch.Tensor,
    fd: FoldData,
    prep: PreparedTriplets,
    lams: tuple[float, ...],
    *,
    config: GridConfig,
    job: Job,
    settings: LBFGSSettings,
    warm: bool,
    reducible: bool,
    implementation: Implementation,
    test_nll: dict | None = None,
    human_test: Triplets | None = None,
) -> list[dict]:
    """Every λ of one candidate on one fold: the fits table's rows (``test_nll``, when
    given, receives each fit's per-triplet test NLL under (candidate, λ, fold));
    ``human_test`` adds each fit's ``human_accuracy`` and ``human_nll`` on those triplets."""
    space = row_space(x[prep.concepts]) if reducible else None
    if space is not None and (space.rank >= x.shape[1] or space.rank == 0):
        space = None  # nothing to gain, or all-zero training features (no reduced problem)
    evaluator = _Evaluator(x, {"val": fd.validation, "test": fd.test}, space, config.evaluation)
    # the human set in an evaluator of its own: the validation and test scores stay
    # bit-identical to a job without it (their Gram pieces keep the same concepts)
    human = (
        _Evaluator(x, {"human": human_test}, space, config.evaluation)
        if human_test is not None
        else None
    )
    fits = fit_path(
        x,
        prep,
        lams,
        warm_start=warm,
        settings=settings,
        family=job.level.family,
        k=job.level.k,
        regulariser=config.regulariser,
        dtype=x.dtype,
        device=x.device,
        space=space,
        reduce=config.reduction if space is not None else "never",
        path=implementation.path,
        compiled=implementation.compiled,
    )
    rows = []
    for lam, fitted in zip(lams, fits, strict=True):
        per_triplet = {} if test_nll is not None else None
        scores = evaluator.scores(fitted, per_triplet=per_triplet)
        if test_nll is not None:
            test_nll[(candidate, lam, f)] = per_triplet["test"]
        if human is not None:
            scores |= human.scores(fitted)
        rows.append(
            {
                "candidate": candidate,
                "lam": lam,
                "fold": f,
                "train_nll": fitted.train_nll,
                "train_objective": fitted.train_objective,
                **scores,
                "iterations": fitted.iterations,
                "converged": bool(fitted.converged),
                "seconds": fitted.seconds,
            }
        )
    return rows


def run_job(
    job: Job,
    config: GridConfig,
    generator_z: np.ndarray,
    temperature: float,
    candidate_features: dict[str, np.ndarray],
    exclude_keys: np.ndarray | None = None,
    implementation: Implementation = FAST,
    design_models: dict[str, tuple[np.ndarray, float]] | None = None,
    human_test: Triplets | None = None,
) -> JobResult:
    """Simulate from the job's generator (its level's Z and T), refit every candidate for
    every λ and fold, and score (see module doc).

    On CPU with ``config.threads_per_job`` > 1 the (candidate, fold) fits run on that many
    threads, each fit single-threaded (torch and numba release the GIL in the heavy
    work): a busy core slows one fit, not every fit, as a thread team of two would. Each
    fit is computed the same way whatever the threads, so the tables are identical.
    ``config.device`` places the fits (``cuda``: features, triplets and evaluation on the
    GPU; the per-triplet work in torch). ``design_models`` (candidate -> human-fitted
    (Z, T) at the job's level) serve the designs of ``job.selection`` other than
    ``random`` (:func:`simulate`). ``human_test`` (human held-out triplets) scores every
    fit on them too: fits and scores gain ``human_accuracy`` and ``human_nll``, the job
    ``generator_human_accuracy`` and ``winner_human_accuracy``; nothing else changes."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    parallel = device.type == "cpu" and config.threads_per_job > 1
    threads = 1 if parallel else config.threads_per_job
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    dtype = TORCH_DTYPES[implementation.dtype or config.dtype]
    settings = LBFGSSettings.of(
        config.stopping, engine=implementation.engine, reshuffle=config.reshuffle
    )
    costs: dict = {}
    data = simulate(
        job,
        config,
        generator_z,
        temperature,
        exclude_keys,
        design_models,
        candidate_features,
        costs,
    )
    preps = [PreparedTriplets.from_triplets(fd.train, device=device) for fd in data]
    reducible = reduction_applies(
        job.level.family, config.regulariser, config.stopping, config.reduction
    )
    lams = config.lam_grid(job.level)
    warm = config.warm_start and job.level.family != "zero_shot"
    if warm:
        lams = tuple(reversed(lams))  # strong to weak penalty, each from the previous fit
    features = {
        c: torch.as_tensor(candidate_features[c]).to(dtype=dtype, device=device)
        for c in config.candidates
    }
    units = [(c, f) for c in config.candidates for f in range(len(data))]
    options = dict(
        config=config,
        job=job,
        settings=settings,
        warm=warm,
        reducible=reducible,
        implementation=implementation,
        human_test=human_test,
    )
    paired = config.selection_criterion == "paired"
    test_nll: dict = {}  # (candidate, λ, fold) -> per-triplet test NLL (paired only)

    def unit(item: tuple[str, int]) -> list[dict]:
        c, f = item
        return _fit_unit(
            c,
            f,
            features[c],
            data[f],
            preps[f],
            lams,
            test_nll=test_nll if paired else None,
            **options,
        )

    precision = torch.get_float32_matmul_precision()
    if device.type == "cuda":  # TF32 products (high) as the study's recovery fits, or IEEE
        torch.set_float32_matmul_precision(config.matmul_precision)
    try:
        if parallel:
            with ThreadPoolExecutor(max_workers=config.threads_per_job) as pool:
                per_unit = list(pool.map(unit, units))  # results in unit order
        else:
            per_unit = [unit(item) for item in units]
    finally:
        torch.set_float32_matmul_precision(precision)
    rows = [row for part in per_unit for row in part]
    columns = _job_columns(job, config)
    fits = pd.DataFrame(rows)
    tie_seed = derived_seed(job.seed, job.n_train, job.generator, job.level.label, "ties")
    scores = select_and_score(fits, config, list(config.candidates), tie_seed)
    winner = pick_winner(scores)
    generator_rank = float(scores.loc[scores["candidate"] == job.generator, "rank"].iloc[0])
    row = {
        **columns,
        "winner": winner,
        "recovered": winner == job.generator,
        "n_candidates": len(config.candidates),
        "generator_rank": generator_rank,
        "n_tied_top": int(scores["n_tied_top"].iloc[0]),
    }
    if "human_accuracy" in scores.columns:  # human_heldout: the refits' human prediction
        human = scores.set_index("candidate")["human_accuracy"]
        row["generator_human_accuracy"] = float(human[job.generator])
        row["winner_human_accuracy"] = float(human[winner])
    if config.selection_criterion != "accuracy":  # the study's crowning, for comparison
        study = dataclasses.replace(config, selection_criterion="accuracy")
        study_winner = pick_winner(select_and_score(fits, study, list(config.candidates), tie_seed))
        row["accuracy_winner"] = study_winner
        row["accuracy_recovered"] = study_winner == job.generator
    if paired:  # undecided jobs recover nothing; analysis counts them apart
        decision = paired_decision(scores, test_nll, config.undecided_z)
        row.update(decision)
        row["recovered"] = bool(row["recovered"] and decision["decided"])
    if job.selection != "random":
        row["pool_size"] = int(np.sum(costs["pool_size"]))
        row["prior_seconds"] = float(np.sum(costs["prior_seconds"]))
        row["select_seconds"] = float(np.sum(costs["select_seconds"]))
        row["select_seconds_per_batch"] = float(np.mean(costs["select_seconds"]))
        row["refit_seconds"] = float(np.sum(costs["refit_seconds"]))
    row["seconds"] = time.perf_counter() - start
    job_row = pd.DataFrame([row])
    scores = scores.drop(columns=["winner", "n_tied_top"])
    fit_columns = {
        name: columns[name]
        for name in ("job_id", "generator", "n_train", "seed", "family", "level", "condition_key")
    }
    fits = pd.concat([pd.DataFrame([fit_columns] * len(fits)), fits], axis=1)
    scores = pd.concat([pd.DataFrame([columns] * len(scores)), scores], axis=1)
    for frame in (job_row, scores):
        frame["k"] = frame["k"].astype("Int64")
    return JobResult(job=job_row, scores=scores, fits=fits)
