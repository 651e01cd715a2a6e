"""Zero-shot scores of features in NumPy alone (the command line's ``evaluate``, which
would otherwise spend most of its time importing torch).

The same quantities as the torch probe (:func:`modelrecovery.probe.accuracy_and_nll` and a
``zero_shot`` fit, tested against both): the odd-one-out logits of a triplet (i, j, k) are
``(s_jk, s_ik, s_ij) / T`` with ``s`` the dot product; accuracy gives tied positions
shared credit (1/2, 1/3), counted in sixths so that all-tied triplets give exactly 1/3;
the best temperature minimises the mean NLL over the scale ``1 / T`` (a convex problem in
the scale, solved by safeguarded Newton steps to machine precision).
"""

from __future__ import annotations

import math

import numpy as np

LOG3 = math.log(3.0)


def degenerate_message(used: np.ndarray, name: str | None = None) -> str | None:
    """The one-line warning for features whose used rows are all the same vector (every
    triplet a three-way tie), else None."""
    if not used.shape[0] or not bool((used == used[0]).all()):
        return None
    where = f"{name}: " if name else ""
    what = "an all-zero" if not bool(used[0].any()) else "the same"
    return (
        f"{where}degenerate features: every concept the triplets use has {what} "
        "feature vector (zero variance in every column), so every triplet is a "
        "three-way tie: accuracy 1/3 and loss log 3 whatever the probe"
    )


def triplet_logits(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(m, 3) similarities ``(s_jk, s_ik, s_ij)`` of each triplet, in float64."""
    x = np.asarray(x, dtype=np.float64)
    a, b, c = (x[ids[:, i]] for i in range(3))
    logits = np.stack([(b * c).sum(1), (a * c).sum(1), (a * b).sum(1)], axis=1)
    if not np.isfinite(logits).all():
        raise ValueError(
            f"the features' similarities are not finite (they overflow float64; largest "
            f"|x| = {np.abs(x).max():.3g}): rescale the features (e.g. divide by their "
            "largest norm)"
        )
    return logits


def tie_accuracy(logits: np.ndarray, odd: np.ndarray) -> float:
    """Mean credit: 1 for the unique largest logit at the response, 1/2 or 1/3 when it
    shares the largest with others; counted in sixths, divided once."""
    m = logits.shape[0]
    if m == 0:
        return math.nan
    tied = logits == logits.max(axis=1, keepdims=True)
    n_tied = tied.sum(axis=1)
    hit = tied[np.arange(m), odd]
    return int((hit * (6 // n_tied)).sum()) / (6 * m)


def mean_nll(logits: np.ndarray, odd: np.ndarray) -> float:
    """Mean negative log softmax probability of the responses."""
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float((lse - logits[np.arange(len(odd)), odd]).mean())


def best_scale(logits: np.ndarray, odd: np.ndarray) -> float:
    """The scale ``a >= 0`` minimising ``mean_nll(a * logits)`` (1 when every scale gives
    the same loss, as for all-tied triplets; 0 when no positive scale beats uniform
    predictions). Convex in ``a``: Newton steps inside a shrinking bracket."""
    rows = np.arange(len(odd))
    chosen = logits[rows, odd]

    def derivatives(a: float) -> tuple[float, float]:
        z = a * logits
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean = (p * logits).sum(axis=1)
        var = (p * logits**2).sum(axis=1) - mean**2
        return float((mean - chosen).mean()), float(var.mean())

    g0, h0 = derivatives(0.0)
    if h0 == 0.0:  # every triplet tied: the loss does not depend on the scale
        return 1.0
    if g0 >= 0.0:
        return 0.0
    low, high = 0.0, 1.0
    while derivatives(high)[0] < 0.0:  # bracket the root of the derivative
        low, high = high, 2.0 * high
        if high > 1e300:
            return math.inf
    a = 0.5 * (low + high)
    for _ in range(200):
        g, h = derivatives(a)
        if g < 0.0:
            low = a
        else:
            high = a
        step = a - g / h if h > 0.0 else math.nan
        a = step if low < step < high else 0.5 * (low + high)
        if high - low <= 1e-15 * max(1.0, high):
            break
    return a


def zero_shot_scores(
    x: np.ndarray, ids: np.ndarray, odd: np.ndarray, name: str | None = None
) -> dict[str, float | str]:
    """Accuracy and NLL at T = 1, the best temperature and the NLL there; ``warning`` when
    the features are degenerate or anti-predictive."""
    ids = np.asarray(ids, dtype=np.int64)
    odd = np.asarray(odd, dtype=np.int64)
    logits = triplet_logits(x, ids)
    scale = best_scale(logits, odd)
    out: dict[str, float | str] = {
        "zero_shot_accuracy": tie_accuracy(logits, odd),
        "zero_shot_nll": mean_nll(logits, odd),
        "best_temperature": 1.0 / scale if scale > 0 else math.inf,
        "zero_shot_nll_at_best_temperature": mean_nll(scale * logits, odd)
        if math.isfinite(scale)
        else math.nan,
    }
    used = np.asarray(x)[np.unique(ids)]
    warning = degenerate_message(used, name)
    if warning is None and scale == 0.0:
        warning = (
            f"{name + ': ' if name else ''}the features predict the responses no better "
            "than chance at any temperature (the best is uniform predictions, T = inf)"
        )
    if warning is not None:
        out["warning"] = warning
    return out
