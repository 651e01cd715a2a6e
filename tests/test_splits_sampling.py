"""Concept folds, triplet sampling and response sampling."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from modelrecovery.data import (
    ConceptFold,
    Triplets,
    concept_folds,
    sample_responses,
    sample_triplets,
    triplet_keys,
)

# ----------------------------------------------------------------------------------------------
# Concept folds
# ----------------------------------------------------------------------------------------------


def test_things_folds_partition_and_sizes() -> None:
    folds = concept_folds(1854, n_folds=3, seed=7)
    assert len(folds) == 3
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(1854))  # test parts partition
    for f in folds:
        assert isinstance(f, ConceptFold)
        assert f.test.size == 618
        assert (f.train.size, f.validation.size) == (865, 371)  # 70/30 of 1236
        for arr in (f.train, f.validation, f.test):
            assert np.all(np.diff(arr) > 0)  # sorted, no repeats
        everything = np.concatenate([f.train, f.validation, f.test])
        np.testing.assert_array_equal(np.sort(everything), np.arange(1854))  # disjoint, complete


def test_folds_deterministic_and_seed_dependent() -> None:
    a = concept_folds(100, seed=3)
    b = concept_folds(100, seed=3)
    c = concept_folds(100, seed=4)
    assert a == b
    assert a != c
    assert not np.array_equal(a[0].test, c[0].test)
    # Train/validation splits differ between folds (seeded per fold), not just shifted.
    assert not np.array_equal(a[0].validation, a[1].validation)


def test_folds_uneven_sizes_and_subset() -> None:
    folds = concept_folds(50, n_folds=4, seed=0, train_fraction=0.5)
    sizes = sorted(f.test.size for f in folds)
    assert sizes == [12, 12, 13, 13]
    for f in folds:
        rest = 50 - f.test.size
        assert f.train.size == round(0.5 * rest)
        assert f.train.size + f.validation.size == rest
    subset = np.arange(10, 70, 2)
    folds = concept_folds(100, seed=1, concepts=subset)
    np.testing.assert_array_equal(np.sort(np.concatenate([f.test for f in folds])), subset)
    for f in folds:
        assert np.isin(f.train, subset).all() and np.isin(f.validation, subset).all()


def test_folds_errors() -> None:
    with pytest.raises(ValueError, match="n_folds must be at least 2"):
        concept_folds(100, n_folds=1)
    with pytest.raises(ValueError, match="too few concepts"):
        concept_folds(8, n_folds=3)
    with pytest.raises(ValueError, match="train_fraction"):
        concept_folds(100, train_fraction=1.0)
    with pytest.raises(ValueError, match="repeated"):
        concept_folds(100, concepts=np.array([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]))
    with pytest.raises(ValueError, match="seed"):
        concept_folds(100, seed=-1)
    concept_folds(15, n_folds=3)  # 5 test, 10 rest -> 7 train, 3 validation: just enough


# ----------------------------------------------------------------------------------------------
# Triplet sampling
# ----------------------------------------------------------------------------------------------


def _keys(rows: np.ndarray, n: int) -> np.ndarray:
    return triplet_keys(rows, n)


def test_sample_distinct_inside_subset_not_excluded() -> None:
    n = 300
    rng = np.random.default_rng(0)
    subset = np.sort(rng.choice(n, 60, replace=False))
    human = np.stack([rng.choice(subset, 3, replace=False) for _ in range(3000)])
    exclude = Triplets(ids=human, odd=np.zeros(len(human)), n_concepts=n)
    out = sample_triplets(subset, 5000, seed=1, n_concepts=n, exclude=exclude)
    assert out.shape == (5000, 3) and out.dtype == np.int32
    assert np.isin(out, subset).all()
    assert (out[:, 0] != out[:, 1]).all() and (out[:, 0] != out[:, 2]).all()
    assert (out[:, 1] != out[:, 2]).all()
    keys = _keys(out, n)
    assert np.unique(keys).size == 5000
    assert not np.isin(keys, exclude.sorted_keys()).any()
    # The same exclusion passed as keys or as an (m, 3) array gives the same sample.
    same = sample_triplets(subset, 5000, seed=1, n_concepts=n, exclude=exclude.sorted_keys())
    np.testing.assert_array_equal(out, same)
    np.testing.assert_array_equal(
        out, sample_triplets(subset, 5000, seed=1, n_concepts=n, exclude=human)
    )


def test_sample_reproducible_and_seed_dependent() -> None:
    subset = np.arange(5, 45)
    a = sample_triplets(subset, 400, seed=11, n_concepts=50)
    b = sample_triplets(subset, 400, seed=11, n_concepts=50)
    c = sample_triplets(subset, 400, seed=12, n_concepts=50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    gen = sample_triplets(subset, 400, seed=np.random.default_rng(11), n_concepts=50)
    np.testing.assert_array_equal(a, gen)


def test_sample_all_available_exhaustive() -> None:
    subset = np.array([2, 3, 5, 7, 11, 13, 17, 19, 23])
    exclude = np.array([[2, 3, 5], [23, 19, 17], [0, 1, 4]])  # the last lies outside the subset
    available = math.comb(9, 3) - 2
    out = sample_triplets(subset, available, seed=0, n_concepts=30, exclude=exclude)
    expected = {c for c in combinations(subset.tolist(), 3)} - {(2, 3, 5), (17, 19, 23)}
    assert {tuple(sorted(r)) for r in out.tolist()} == expected
    assert len(out) == available
    # Rows are not left in lexicographic order, nor sorted within rows.
    assert not np.array_equal(out, np.sort(out, axis=1))


def test_sample_too_many_raises_with_both_numbers() -> None:
    subset = np.arange(6)
    with pytest.raises(ValueError, match=r"cannot draw 20 distinct.*only 19 are available"):
        sample_triplets(subset, 20, seed=0, n_concepts=6, exclude=np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="at least 3 concepts"):
        sample_triplets(np.array([1, 2]), 1, seed=0, n_concepts=6)
    with pytest.raises(ValueError, match="repeated"):
        sample_triplets(np.array([1, 2, 2, 3]), 1, seed=0, n_concepts=6)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\]"):
        sample_triplets(np.array([1, 2, 6]), 1, seed=0, n_concepts=6)
    assert sample_triplets(subset, 0, seed=0, n_concepts=6).shape == (0, 3)


@pytest.mark.parametrize("n", [6, 20])  # rejection sampling, enumeration
def test_sample_uniform_over_triplets(n: int) -> None:
    """Each available triplet is equally likely to be among the N drawn."""
    subset = np.arange(8)
    exclude = np.array([[0, 1, 2], [3, 4, 5], [5, 6, 7]])
    all_keys = np.setdiff1d(_keys(np.array(list(combinations(range(8), 3))), 8), _keys(exclude, 8))
    counts = dict.fromkeys(all_keys.tolist(), 0)
    first_pos = np.zeros(3)
    reps = 1500
    for seed in range(reps):
        out = sample_triplets(subset, n, seed=seed, n_concepts=8, exclude=exclude)
        for k in _keys(out, 8).tolist():
            counts[k] += 1
        first_pos += np.bincount(np.argmin(out, axis=1), minlength=3)
    observed = np.array(list(counts.values()))
    expected = reps * n / all_keys.size
    p = stats.chisquare(observed, np.full(observed.size, expected)).pvalue
    assert p > 1e-3, p
    # The smallest concept of a row sits at each position equally often.
    assert stats.chisquare(first_pos).pvalue > 1e-3


def test_sample_concept_frequencies_uniform_large_subset() -> None:
    """Chi-square over concept frequencies in one large draw (fixed seed, deterministic)."""
    subset = np.arange(100, 160)
    out = sample_triplets(subset, 6000, seed=2024, n_concepts=200)
    freq = np.bincount(out.ravel() - 100, minlength=60)
    assert stats.chisquare(freq).pvalue > 1e-3


def test_paper_compatible_sampling_is_biased_low() -> None:
    subset = np.arange(300)
    uniform = sample_triplets(subset, 5000, seed=5, n_concepts=300)
    paper = sample_triplets(subset, 5000, seed=5, n_concepts=300, paper_compatible_sampling=True)
    assert np.unique(_keys(paper, 300)).size == 5000
    assert np.all(np.diff(paper, axis=1) > 0)  # sorted within rows, as the scripts return
    assert abs(uniform.mean() - 149.5) < 5
    assert paper.mean() < uniform.mean() - 30
    assert paper[:, 0].mean() < 40  # the first concept is almost always a low id
    exclude = paper[:100]
    again = sample_triplets(
        subset, 5000, seed=5, n_concepts=300, exclude=exclude, paper_compatible_sampling=True
    )
    assert not np.isin(_keys(again, 300), _keys(exclude, 300)).any()
    np.testing.assert_array_equal(
        paper,
        sample_triplets(subset, 5000, seed=5, n_concepts=300, paper_compatible_sampling=True),
    )


# ----------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------


def test_responses_follow_probabilities() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]])
    reps = 20000
    p = np.repeat(probs, reps, axis=0)
    r = sample_responses(p, seed=3)
    assert r.dtype == np.int8 and r.shape == (4 * reps,)
    freq = np.stack(
        [np.bincount(r[i * reps : (i + 1) * reps], minlength=3) / reps for i in range(4)]
    )
    np.testing.assert_allclose(freq, probs, atol=0.015)
    assert (r[reps : 2 * reps] != 0).all() and (r[3 * reps :] == 2).all()
    np.testing.assert_array_equal(r, sample_responses(p, seed=3))
    assert not np.array_equal(r, sample_responses(p, seed=4))


def test_responses_validation() -> None:
    with pytest.raises(ValueError, match="shape"):
        sample_responses(np.ones((3, 2)) / 2, seed=0)
    with pytest.raises(ValueError, match="row 1: sums to"):
        sample_responses(np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6]]), seed=0)
    with pytest.raises(ValueError, match="row 0: .*negative"):
        sample_responses(np.array([[-0.1, 0.6, 0.5]]), seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        sample_responses(np.array([[np.nan, 0.5, 0.5]]), seed=0)
    sample_responses(np.array([[0.2, 0.3, 0.50005]]), seed=0)  # within 1e-4
