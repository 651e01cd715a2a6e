"""Noise ceiling: hand cases and an independent brute-force computation."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from modelrecovery.data import Triplets, noise_ceiling, noise_ceiling_details


def _triplets(rows: list[tuple[tuple[int, int, int], int]], n_concepts: int = 10) -> Triplets:
    """Build triplets from ((i, j, k), chosen concept) pairs."""
    ids = np.array([r for r, _ in rows])
    odd = np.array([list(r).index(c) for r, c in rows])
    return Triplets(ids=ids, odd=odd, n_concepts=n_concepts)


def _brute_force(ids: np.ndarray, odd: np.ndarray) -> float:
    """Leave-one-out majority agreement with plain loops, written independently."""
    responses: dict[frozenset, list[int]] = defaultdict(list)
    for row, o in zip(ids.tolist(), odd.tolist(), strict=True):
        responses[frozenset(row)].append(row[o])  # the concept chosen
    per_triplet = []
    for chosen in responses.values():
        if len(chosen) < 2:
            continue
        credits = []
        for left_out in range(len(chosen)):
            rest = chosen[:left_out] + chosen[left_out + 1 :]
            tally: dict[int, int] = {}
            for c in rest:
                tally[c] = tally.get(c, 0) + 1
            best = max(tally.values())
            winners = [c for c, v in tally.items() if v == best]
            credits.append(1.0 / len(winners) if chosen[left_out] in winners else 0.0)
        per_triplet.append(sum(credits) / len(credits))
    return sum(per_triplet) / len(per_triplet)


def test_identical_responses_give_one() -> None:
    t = _triplets([((1, 2, 3), 2)] * 3)
    assert noise_ceiling(t) == pytest.approx(1.0)


def test_a_a_b() -> None:
    # Leaving an "a" out leaves {a, b}: a tie, so the left-out "a" gets credit 1/2 (twice);
    # leaving "b" out leaves {a, a}, which predicts a: credit 0. (1/2 + 1/2 + 0) / 3 = 1/3.
    # (Counting the left-out response in the majority would give (1 + 1 + 0) / 3 instead; the
    # study's script, like method.md, leaves it out and shares ties.)
    t = _triplets([((1, 2, 3), 1), ((1, 2, 3), 1), ((1, 2, 3), 3)])
    assert noise_ceiling(t) == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_a_a_a_b() -> None:
    # Leaving an "a" out leaves a:2, b:1 -> a, credit 1 (three times); leaving "b" out -> 0.
    t = _triplets([((1, 2, 3), 1)] * 3 + [((1, 2, 3), 3)])
    assert noise_ceiling(t) == pytest.approx((1 + 1 + 1 + 0) / 4)


def test_order_does_not_matter_concepts_are_compared() -> None:
    # The same triplet in three orders, always concept 7 chosen: perfect agreement even though
    # the odd POSITION differs.
    t = _triplets([((7, 1, 2), 7), ((1, 2, 7), 7), ((2, 7, 1), 7)])
    assert noise_ceiling(t) == pytest.approx(1.0)


def test_two_responses_disagreeing_and_ties() -> None:
    # a, b: leaving a out leaves {b} -> predicts b, credit 0; same for b -> 0.
    assert noise_ceiling(_triplets([((1, 2, 3), 1), ((3, 2, 1), 2)])) == pytest.approx(0.0)
    # a, b, c: leaving one out leaves a tie of two others (not the left-out one) -> 0.
    t = _triplets([((1, 2, 3), 1), ((1, 2, 3), 2), ((1, 2, 3), 3)])
    assert noise_ceiling(t) == pytest.approx(0.0)
    # a, a, b, b: leaving an a out leaves a:1, b:2 -> 0; so every response scores 0.
    t = _triplets([((1, 2, 3), 1)] * 2 + [((1, 2, 3), 2)] * 2)
    assert noise_ceiling(t) == pytest.approx(0.0)
    # a, a, b, c: leave a -> a:1,b:1,c:1 -> 1/3 (twice); leave b or c
    # -> a:2 wins -> 0. Mean (1/3 + 1/3) / 4 = 1/6.
    t = _triplets([((1, 2, 3), 1), ((1, 2, 3), 1), ((1, 2, 3), 2), ((1, 2, 3), 3)])
    assert noise_ceiling(t) == pytest.approx(1 / 6)


def test_averages_over_triplets_not_responses() -> None:
    # Triplet A: 4 identical responses (1.0); triplet B: a, a, b (1/3); a singleton is ignored.
    rows = [((1, 2, 3), 1)] * 4 + [((4, 5, 6), 4)] * 2 + [((4, 5, 6), 6)] + [((7, 8, 9), 9)]
    assert noise_ceiling(_triplets(rows)) == pytest.approx((1.0 + 1 / 3) / 2)
    details = noise_ceiling_details(_triplets(rows))
    assert list(details["n_responses"]) == [4, 3, 1]
    assert details.loc[0, ["i", "j", "k", "n_i", "n_j", "n_k"]].tolist() == [1, 2, 3, 4, 0, 0]
    assert details.loc[1, ["n_i", "n_j", "n_k"]].tolist() == [2, 0, 1]
    assert np.isnan(details.loc[2, "agreement"])


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_concepts = 12
    base = np.stack([rng.choice(n_concepts, 3, replace=False) for _ in range(40)])
    reps = rng.integers(1, 8, size=len(base))  # includes singletons, pairs, ties
    rows = np.repeat(base, reps, axis=0)
    rows = rng.permuted(rows, axis=1)  # same triplet in shuffled orders
    # Skewed choices so that majorities and ties both occur.
    weights = rng.dirichlet([1.0, 1.0, 1.0], size=len(base))
    chosen_slot = np.concatenate(
        [rng.choice(3, size=r, p=w) for r, w in zip(reps, weights, strict=True)]
    )
    chosen_concept = np.sort(np.repeat(base, reps, axis=0), axis=1)[
        np.arange(len(rows)), chosen_slot
    ]
    odd = np.argmax(rows == chosen_concept[:, None], axis=1)
    order = rng.permutation(len(rows))
    t = Triplets(ids=rows[order], odd=odd[order], n_concepts=n_concepts)
    assert noise_ceiling(t) == pytest.approx(_brute_force(t.ids, t.odd), abs=1e-12)


def test_no_repeated_triplet_raises() -> None:
    t = _triplets([((1, 2, 3), 1), ((1, 2, 4), 1)])
    with pytest.raises(ValueError, match="no triplet has two or more responses"):
        noise_ceiling(t)
    with pytest.raises(ValueError, match="no triplets"):
        noise_ceiling(Triplets(ids=np.empty((0, 3)), odd=np.empty(0), n_concepts=5))
