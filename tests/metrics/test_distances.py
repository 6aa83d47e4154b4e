"""MMD, KID, Wasserstein, the 1-NN test and precision/recall against hand-worked cases and oracles."""

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from gancore.metrics._assignment import hungarian, min_cost_assignment
from gancore.metrics.distances import kid, mmd2, wasserstein_distance
from gancore.metrics.nearest import nearest_neighbour_accuracy, precision_recall


def test_mmd_by_hand():
    x, y = np.array([[0.0], [0.0]]), np.array([[1.0], [1.0]])
    expected = 2 - 2 * math.exp(-0.5)
    assert mmd2(x, y, bandwidth=1.0) == pytest.approx(expected)
    assert mmd2(x, y) == pytest.approx(expected)  # the median pooled distance is 1
    same = np.array([[0.0], [1.0]])
    # The U-statistic of two equal samples is negative; the V-statistic is 0.
    assert mmd2(same, same, bandwidth=1.0) == pytest.approx(math.exp(-0.5) - 1)
    assert mmd2(same, same, bandwidth=1.0, unbiased=False) == pytest.approx(0.0, abs=1e-15)


def test_kid_by_hand_and_against_a_direct_sum(rng):
    # k(a, b) = (a b + 1)^3 in one dimension: k(1, 1) = 8, k(2, 2) = 125, k(1, 2) = 27.
    result = kid(np.ones((2, 1)), np.full((2, 1), 2.0), subsets=3)
    np.testing.assert_allclose(result.subsets, [79.0] * 3)
    assert (result.mean, result.std, result.subset_size) == (pytest.approx(79.0), 0.0, 2)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 0.5
    kernel = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    n = 30
    direct = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
    assert kid(real, fake, subsets=2, subset_size=50).mean == pytest.approx(direct, rel=1e-12)


def test_kid_subsets_are_seeded(rng):
    real, fake = rng.standard_normal((60, 3)), rng.standard_normal((50, 3))
    a = kid(real, fake, subsets=5, subset_size=20, seed=1)
    b = kid(real, fake, subsets=5, subset_size=20, seed=1)
    np.testing.assert_array_equal(a.subsets, b.subsets)
    assert a.std == pytest.approx(np.std(a.subsets))
    assert not np.array_equal(a.subsets, kid(real, fake, subsets=5, subset_size=20, seed=2).subsets)


def test_wasserstein_1d_by_hand():
    x, y = np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0, 3.0])
    assert wasserstein_distance(x, y) == pytest.approx(1.0)
    assert wasserstein_distance(x, y, p=2) == pytest.approx(math.sqrt(1.5))


def test_wasserstein_1d_matches_scipy(rng):
    x, y = rng.standard_normal(37), rng.standard_normal(53) * 2 + 1
    assert wasserstein_distance(x, y) == pytest.approx(scipy.stats.wasserstein_distance(x, y), rel=1e-12)


def test_wasserstein_exact_in_two_dimensions():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 1.0], [1.0, 1.0]])
    assert wasserstein_distance(x, y, method="exact") == pytest.approx(1.0)
    # Unequal sizes (samples repeated to lcm = 6): collinear points, so the 1-D answer 1/3 holds.
    a = np.array([[0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert wasserstein_distance(a, b, method="exact") == pytest.approx(1 / 3)


@pytest.mark.parametrize("solve", [min_cost_assignment, hungarian], ids=["scipy", "numpy-fallback"])
def test_assignment_is_optimal(rng, solve):
    small = rng.random((6, 6))
    best = min(sum(small[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
    cols = solve(small)
    assert sorted(cols) == list(range(6))
    assert small[np.arange(6), cols].sum() == pytest.approx(best)
    large = rng.random((40, 40))
    rows, oracle = scipy.optimize.linear_sum_assignment(large)
    assert large[np.arange(40), solve(large)].sum() == pytest.approx(large[rows, oracle].sum())


def test_assignment_falls_back_to_numpy_without_scipy(rng, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    from gancore.metrics import _assignment

    calls = []
    monkeypatch.setattr(_assignment, "hungarian", lambda cost: calls.append(cost) or hungarian(cost))
    cost = rng.random((12, 12))
    with_scipy = min_cost_assignment(cost)
    assert calls == []  # scipy answered
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert list(min_cost_assignment(cost)) == list(with_scipy) and len(calls) == 1


def test_sliced_wasserstein_of_a_translation(rng):
    # Every projection of a translation by c moves by theta.c, so SW_2^2 = E (theta.c)^2 = |c|^2 / D.
    x = rng.standard_normal((40, 3))
    shift = np.array([3.0, 0.0, 4.0])
    got = wasserstein_distance(x, x + shift, p=2, method="sliced", projections=4000)
    assert got == pytest.approx(5 / math.sqrt(3), rel=0.03)
    assert got == wasserstein_distance(x, x + shift, p=2, method="sliced", projections=4000)
    assert wasserstein_distance(x, x, method="sliced") == pytest.approx(0.0, abs=1e-12)


def test_nearest_neighbour_accuracy_by_hand():
    far = nearest_neighbour_accuracy(np.array([[0.0], [0.1]]), np.array([[10.0], [10.1]]))
    assert (far.real_accuracy, far.fake_accuracy, far.accuracy) == (1.0, 1.0, 1.0)
    # Interleaved points: every nearest neighbour (ties to the lowest index) is of the other set.
    mixed = nearest_neighbour_accuracy(np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]]))
    assert (mixed.real_accuracy, mixed.fake_accuracy) == (0.0, 0.0)
    # Copies of the real samples (memorisation) are always the nearest: accuracy 0, not 0.5.
    real = np.array([[0.0], [5.0], [9.0]])
    copied = nearest_neighbour_accuracy(real, real.copy())
    assert (copied.real_accuracy, copied.fake_accuracy) == (0.0, 0.0)
    lopsided = nearest_neighbour_accuracy(np.array([[0.0], [1.0], [3.0]]), np.array([[2.2], [9.0]]))
    assert (lopsided.real_accuracy, lopsided.fake_accuracy) == (pytest.approx(2 / 3), 0.0)


def test_precision_recall_by_hand():
    real = np.arange(5.0)[:, None]  # each real ball has radius 1 with k = 1
    fake = np.array([[0.5], [10.0]])  # radii 9.5
    result = precision_recall(real, fake, k=1)
    assert (result.precision, result.recall) == (0.5, 1.0)
    same = precision_recall(real, real, k=2)
    assert (same.precision, same.recall) == (1.0, 1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="same feature dimension"):
        mmd2(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="needs at least 4 samples"):
        precision_recall(np.zeros((3, 2)), np.zeros((5, 2)), k=3)
    with pytest.raises(ValueError, match="method must be"):
        wasserstein_distance(np.zeros((2, 2)), np.zeros((2, 2)), method="lp")
