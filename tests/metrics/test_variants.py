"""Intra-FID, FID of many sets, bootstrap intervals and FID-infinity, against one-by-one computations."""

import numpy as np
import pytest

from gancore.metrics import FeatureStats, fid_from_features, frechet_distance
from gancore.metrics.variants import fid_bootstrap, fid_infinity, fid_many, intra_fid


def test_fid_many_equals_one_by_one(rng):
    reference = FeatureStats(6).update(rng.standard_normal((100, 6)))
    sets = [rng.standard_normal((40, 6)) * (1 + k / 5) for k in range(4)]
    expected = [fid_from_features(reference, s) for s in sets]
    np.testing.assert_allclose(fid_many(reference, sets), [float(e) for e in expected], rtol=1e-10)


def test_intra_fid_per_class(rng):
    real = rng.standard_normal((60, 5))
    real_labels = np.arange(60) % 3
    fake = rng.standard_normal((45, 5)) + 0.2
    fake_labels = np.arange(45) % 3
    result = intra_fid(real, real_labels, fake, fake_labels)
    assert sorted(result.per_class) == [0, 1, 2]
    for c in range(3):
        a, b = real[real_labels == c], fake[fake_labels == c]
        expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        assert result.per_class[c] == pytest.approx(expected, rel=1e-10)
    assert result.mean == pytest.approx(np.mean(list(result.per_class.values())))
    with pytest.raises(ValueError, match="class 2 has 1 fake samples"):
        intra_fid(real, real_labels, fake[:5], fake_labels[:5])


def test_bootstrap_is_seeded_and_brackets_the_point_estimate(rng):
    reference = FeatureStats.from_moments(np.zeros(4), np.eye(4), count=10**6)
    features = rng.standard_normal((300, 4))
    a = fid_bootstrap(reference, features, resamples=40, seed=5)
    b = fid_bootstrap(reference, features, resamples=40, seed=5)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.fid == pytest.approx(float(fid_from_features(reference, features)))
    assert a.low < a.fid < a.high
    assert a.samples.shape == (40,) and a.bias > 0  # duplicates make resampled sets look smaller
    assert a.bias == pytest.approx(a.samples.mean() - a.fid)


def test_fid_infinity_removes_the_small_sample_bias(rng):
    # Samples of the reference distribution itself: FID_N is pure 1/N bias, FID-infinity close to 0.
    dim = 8
    reference = FeatureStats.from_moments(np.zeros(dim), np.eye(dim), count=10**9)
    result = fid_infinity(reference, rng.standard_normal((4000, dim)), points=10)
    assert len(result.sizes) == 10 and result.sizes[0] == 800 and result.sizes[-1] == 4000
    assert result.slope > 0
    assert abs(result.fid_infinity) < 0.5 * result.fids[-1]
    slope, intercept = np.polyfit(1 / result.sizes, result.fids, 1)
    assert (slope, intercept) == (pytest.approx(result.slope), pytest.approx(result.fid_infinity))
