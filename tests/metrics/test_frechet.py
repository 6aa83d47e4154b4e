"""frechet_distance and fid_from_features against a float64 scipy sqrtm oracle and hand-made cases."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from gancore.metrics import FeatureStats, fid_from_features, frechet, frechet_distance
from gancore.ops import fid as fid_ops
from gancore.ops import record_backends


def scipy_fid(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula, in float64: the oracle for well-conditioned cases."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root).real)


@pytest.fixture
def pair(gaussian):
    def make(dim):
        mu1, sigma1, _ = gaussian(dim)
        mu2, sigma2, _ = gaussian(dim, scale=1.3)
        return mu1, sigma1, mu2 + 0.1, sigma2

    return make


@pytest.mark.parametrize("dim", [1, 7, 64, 300])
@pytest.mark.parametrize("method", ["eigh", "newton_schulz"])
def test_matches_scipy_sqrtm(pair, dim, method):
    mu1, sigma1, mu2, sigma2 = pair(dim)
    expected = scipy_fid(mu1, sigma1, mu2, sigma2)
    got = frechet_distance(mu1, sigma1, mu2, sigma2, method=method)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-6)


def test_torch_in_torch_out_and_float32(pair):
    mu1, sigma1, mu2, sigma2 = pair(32)
    expected = scipy_fid(mu1, sigma1, mu2, sigma2)
    args = [torch.from_numpy(a) for a in (mu1, sigma1, mu2, sigma2)]
    got = frechet_distance(*args)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.dim() == 0
    assert float(got) == pytest.approx(expected, rel=1e-9)
    single = frechet_distance(*[a.float() for a in args], dtype=torch.float32)
    assert single.dtype == torch.float32
    assert float(single) == pytest.approx(expected, rel=1e-4)


def test_equal_covariances_give_exactly_the_mean_term(pair):
    mu1, sigma1, mu2, _ = pair(50)
    assert frechet_distance(mu1, sigma1, mu2, sigma1) == float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, sigma1, mu1, sigma1.copy()) == 0.0


def test_set_with_itself_is_zero(gaussian):
    _, _, features = gaussian(40, samples=500)
    assert abs(fid_from_features(features, features)) <= 1e-8
    assert abs(fid_from_features(features[:20], features[:20])) <= 1e-8  # low-rank route


@pytest.mark.parametrize("samples,dim", [(10, 64), (2, 16), (4, 4), (3, 4)])
@pytest.mark.parametrize("method", ["eigh", "newton_schulz"])
def test_rank_deficient_covariances_give_finite_non_negative_results(rng, samples, dim, method):
    a = rng.standard_normal((samples, dim))
    b = rng.standard_normal((samples, dim)) + 0.5
    mu1, sigma1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, sigma2 = b.mean(0), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # newton_schulz hands singular cases to eigvalsh
        got = frechet_distance(mu1, sigma1, mu2, sigma2, method=method)
    assert np.isfinite(got) and got >= 0
    eigh = frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh")
    assert got == pytest.approx(eigh, rel=1e-6)
    # The exact N x N route on the raw features agrees with the D x D one on their statistics.
    assert fid_from_features(a, b) == pytest.approx(eigh, rel=1e-6)


def test_singular_and_zero_covariances(pair):
    dim = 6
    zero = np.zeros((dim, dim))
    mu1, sigma1, mu2, _ = pair(dim)
    # N(mu1, 0) vs N(mu2, S): |mu1 - mu2|^2 + tr(S).
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1)
    assert frechet_distance(mu1, zero, mu2, sigma1) == pytest.approx(expected)
    rank_one = np.outer(np.arange(dim), np.arange(dim)).astype(float)
    for method in ("eigh", "newton_schulz"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = frechet_distance(mu1, rank_one, mu2, rank_one * 4, method=method)
        # sqrt(S) 4S sqrt(S) = 4 S^2 has trace-sqrt 2 tr(S): the covariance term is tr(S).
        assert got == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.trace(rank_one), rel=1e-9)


def test_newton_schulz_falls_back_loudly_on_singular_input(gaussian, rng):
    mu1, sigma1, _ = gaussian(64)
    mu2, sigma2 = np.zeros(64), np.cov(rng.standard_normal((10, 64)), rowvar=False)
    expected = frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh")
    with pytest.warns(RuntimeWarning, match="Newton–Schulz did not converge for 1 of 1"):
        got = frechet_distance(mu1, sigma1, mu2, sigma2, method="newton_schulz")
    assert got == expected


def test_batched_equals_one_by_one(gaussian):
    dim, sets = 24, 5
    mu_ref, sigma_ref, _ = gaussian(dim)
    mus, sigmas = zip(*[gaussian(dim, scale=1 + k / 4)[:2] for k in range(sets)])
    mus, sigmas = np.stack(mus), np.stack(sigmas)
    singles = np.array([frechet_distance(mu_ref, sigma_ref, m, s) for m, s in zip(mus, sigmas)])
    batched = frechet_distance(mu_ref, sigma_ref, mus, sigmas)
    assert batched.shape == (sets,)
    np.testing.assert_allclose(batched, singles, rtol=1e-12)
    # Reference on either side, and a batch against a batch (pairwise), give the same numbers.
    np.testing.assert_allclose(frechet_distance(mus, sigmas, mu_ref, sigma_ref), singles, rtol=1e-12)
    pairwise = frechet_distance(mus, sigmas, mus[::-1], sigmas[::-1])
    expected = [frechet_distance(mus[k], sigmas[k], mus[-1 - k], sigmas[-1 - k]) for k in range(sets)]
    np.testing.assert_allclose(pairwise, expected, rtol=1e-12)
    # Leading dimensions broadcast: (2, 1) against (5,) gives (2, 5).
    grid = frechet_distance(mus[:2, None], sigmas[:2, None], mus, sigmas)
    assert grid.shape == (2, sets)
    row = [frechet_distance(mus[1], sigmas[1], m, s) for m, s in zip(mus, sigmas)]
    np.testing.assert_allclose(grid[1], row, rtol=1e-12)
    ns = frechet_distance(mu_ref, sigma_ref, mus, sigmas, method="newton_schulz")
    np.testing.assert_allclose(ns, singles, rtol=1e-9)


def test_blocked_triangular_products_match_plain_ones(pair, monkeypatch):
    # With D above two CPU panels the triangular factor is multiplied panel by panel.
    monkeypatch.setattr(fid_ops, "CPU_PANEL", 16)
    mu1, sigma1, mu2, sigma2 = pair(70)
    expected = scipy_fid(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_batched_eigenvalues_leave_the_thread_setting_alone(rng):
    x = torch.from_numpy(rng.standard_normal((5, 40, 30)))
    matrices = x.transpose(1, 2) @ x
    threads = torch.get_num_threads()
    got = frechet._eigvalsh(matrices)
    assert torch.get_num_threads() == threads
    assert torch.allclose(got, torch.linalg.eigvalsh(matrices), rtol=1e-12, atol=1e-10)


def test_low_rank_routes_match_the_full_computation(rng, gaussian):
    dim = 30
    _, _, big = gaussian(dim, samples=200)
    small_a = rng.standard_normal((12, dim)) * 2
    small_b = rng.standard_normal((3, 9, dim)) + 1  # a batch of three sets of nine

    def full(a, b):
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

    expected = [full(small_a, b) for b in small_b]
    np.testing.assert_allclose(fid_from_features(small_a, small_b), expected, rtol=1e-8)  # both N < D
    expected = [full(big, b) for b in small_b]
    np.testing.assert_allclose(fid_from_features(big, small_b), expected, rtol=1e-8)  # stats vs raw
    stats = FeatureStats(dim).update(big)
    got = fid_from_features(stats, small_b)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8)
    assert fid_from_features(small_a, big) == pytest.approx(full(small_a, big), rel=1e-8)  # raw small vs big
    assert fid_from_features(stats, FeatureStats(dim).update(small_a)) == pytest.approx(
        full(big, small_a), rel=1e-8)


def test_bad_arguments_are_named():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match=r"sigma2 must have shape \(\.\.\., 3, 3\)"):
        frechet_distance(mu, sigma, mu, np.eye(4))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma1 has 1 NaN"):
        bad = sigma.copy()
        bad[0, 1] = np.nan
        frechet_distance(mu, bad, mu, sigma)
    with pytest.raises(TypeError, match="mu1 must be floating point"):
        frechet_distance(np.zeros(3, dtype=int), sigma, mu, sigma)
    with pytest.raises(ValueError, match="method must be one of"):
        frechet_distance(mu, sigma, mu, sigma, method="sqrtm")
    with pytest.raises(ValueError, match="features_b needs at least 2 samples"):
        fid_from_features(np.zeros((5, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


@pytest.mark.gpu
def test_cuda_matches_cpu(pair):
    mu1, sigma1, mu2, sigma2 = pair(256)
    expected = frechet_distance(mu1, sigma1, mu2, sigma2)
    args = [torch.from_numpy(a).cuda() for a in (mu1, sigma1, mu2, sigma2)]
    with record_backends() as ran:
        assert float(frechet_distance(*args)) == pytest.approx(expected, rel=1e-9)
    assert ran == [("fid_newton_schulz", "triton")]
    assert float(frechet_distance(*args, method="eigh")) == pytest.approx(expected, rel=1e-9)


def test_a_sigma_that_is_no_covariance_is_refused_not_clamped():
    # the mean term alone is 4 * 0.76^2 = 2.31; clamping the negative eigenvalues used to answer 0.0
    mu_a, mu_b, eye = np.zeros(4), np.full(4, 0.76), np.eye(4)
    with pytest.raises(ValueError, match=r"sigma1 is not positive semi-definite: its smallest eigenvalue is -1\b"):
        frechet_distance(mu_a, -eye, mu_b, -2 * eye)
    with pytest.raises(ValueError, match=r"sigma2\[1\] is not positive semi-definite"):
        frechet_distance(torch.zeros(4), torch.eye(4), torch.zeros(2, 4), torch.stack([torch.eye(4), -torch.eye(4)]))
    skew = eye.copy()
    skew[0, 1] = 0.5  # sigma and sigma.T used to give different answers
    for a, b in ((skew, eye), (eye, skew.T)):
        with pytest.raises(ValueError, match=r"is not symmetric: max \|S - S\^T\| = 0.5"):
            frechet_distance(mu_a, a, mu_b, b)


def test_round_off_sized_defects_are_accepted():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16))
    sigma = np.cov(x, rowvar=False)  # rank 4 of 16: eigenvalues 0 up to round-off, some of them negative
    values, vectors = np.linalg.eigh(sigma)
    nudged = (vectors * np.where(values < 1e-12, -1e-9, values)) @ vectors.T  # -1e-9: round-off sized
    expected = frechet_distance(np.zeros(16), sigma, np.ones(16), np.eye(16))
    assert frechet_distance(np.zeros(16), nudged, np.ones(16), np.eye(16)) == pytest.approx(expected, rel=1e-6)
    # as a float32 file stores it: asymmetric and indefinite by float32 round-off
    assert np.isfinite(frechet_distance(np.zeros(16), nudged.astype(np.float32), np.ones(16), np.eye(16)))
    assert frechet_distance(np.zeros(16), np.zeros((16, 16)), np.ones(16), np.eye(16)) == pytest.approx(16 + 16)
