"""The study's fitting loop, transcribed in plain torch from the method text (method.md §2),
as the reference the platform's study-rule fits are tested against.

Written from the description, not from the scripts' code: W (p x p, start I) maps the
features, S = (XW)(XW)^T, the logits of triplet (i, j, k) are (S_jk, S_ik, S_ij), the loss
is the mean cross-entropy (autograd) plus λ (‖W‖²_F − tr(W)²/p); torch's LBFGS with lr 1,
history 50, max_iter 150, max_eval 450, tolerance_grad 1e-7, tolerance_change 1e-4,
strong-Wolfe line search; before every step e (0-based) the triplets are reshuffled with
``torch.manual_seed(e)`` and ``torch.randperm``; steps repeat (memory kept) at most 100
times and, from the third on, stop when the losses ``step`` returned (at the start of each
step) differ by less than 1e-7 relative to the larger one (+1e-10).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Loop(NamedTuple):
    """What the loop ends with: W, the losses its steps returned, L-BFGS iterations."""

    w: torch.Tensor
    losses: list[float]
    iterations: int


def study_loop(
    features: np.ndarray,
    ids: np.ndarray,
    odd: np.ndarray,
    lam: float,
    *,
    dtype: torch.dtype = torch.float32,
    reshuffle: bool = True,
    max_steps: int = 100,
) -> Loop:
    """W after the study's loop, the losses its steps returned and its iterations."""
    x = torch.as_tensor(features, dtype=dtype)
    p = x.shape[1]
    triplets = torch.as_tensor(ids, dtype=torch.int64)
    responses = torch.as_tensor(odd, dtype=torch.int64)
    w = torch.nn.Parameter(torch.eye(p, dtype=dtype))
    optimiser = torch.optim.LBFGS(
        [w],
        lr=1,
        max_iter=150,
        max_eval=450,
        history_size=50,
        tolerance_grad=1e-7,
        tolerance_change=1e-4,
        line_search_fn="strong_wolfe",
    )
    losses: list[float] = []
    for step in range(max_steps):
        if reshuffle:
            torch.manual_seed(step)
            order = torch.randperm(len(triplets))
        else:
            order = torch.arange(len(triplets))
        t, y = triplets[order], responses[order]

        def closure(t: torch.Tensor = t, y: torch.Tensor = y) -> torch.Tensor:
            optimiser.zero_grad()
            z = x @ w
            s = z @ z.T
            i, j, k = t[:, 0], t[:, 1], t[:, 2]
            logits = torch.stack([s[j, k], s[i, k], s[i, j]], dim=1)
            penalty = (w * w).sum() - torch.trace(w) ** 2 / p
            loss = torch.nn.functional.cross_entropy(logits, y) + lam * penalty
            loss.backward()
            return loss

        losses.append(float(optimiser.step(closure).detach()))
        if step > 1:
            a, b = losses[-2], losses[-1]
            if abs(a - b) / (max(abs(a), abs(b)) + 1e-10) < 1e-7:
                break
    return Loop(w.detach(), losses, int(optimiser.state[w]["n_iter"]))
