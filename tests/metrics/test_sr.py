"""PSNR / SSIM on Y with a border crop: against values derived by hand and a naive per-window SSIM."""

import math

import numpy as np
import pytest
import torch

from gancore.metrics.sr import gaussian_window, psnr, rgb_to_y, shave, sr_scores, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _window_2d() -> np.ndarray:
    """The 11x11 Gaussian (sigma 1.5) written out from its formula, normalised to sum 1."""
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    return w / w.sum()


def naive_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s formula evaluated window by window with explicit weighted sums (float64)."""
    w = _window_2d()
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2)))
    return float(np.mean(values))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).view(1, 1, *a.shape)


def test_luma_of_black_white_and_primaries():
    rgb = torch.tensor([[-1.0, -1, -1], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).view(5, 3, 1, 1)
    y = rgb_to_y(rgb).flatten().tolist()
    assert y == pytest.approx([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], abs=1e-9)
    grey = torch.full((1, 1, 2, 2), 0.2)
    assert torch.allclose(rgb_to_y(grey), rgb_to_y(grey.expand(1, 3, 2, 2)))


def test_psnr_of_identical_images_is_infinite_and_of_a_constant_offset_is_exact():
    a = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 200
    assert torch.isinf(psnr(a, a)).all()
    for d in (1.0, 5.0, 25.5):
        expected = 10 * math.log10(255 ** 2 / d ** 2)
        assert psnr(a, a + d).tolist() == pytest.approx([expected] * 2, abs=1e-9)


def test_psnr_of_known_gaussian_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.full((1, 1, 256, 256), 128.0, dtype=torch.float64)
    noisy = a + 5.0 * torch.randn(a.shape, generator=g, dtype=torch.float64)
    # E[MSE] = 25: 34.15 dB; the sample MSE of 65536 draws is within 1.5% (8 standard errors) of it
    assert float(psnr(noisy, a)) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=0.07)


def test_ssim_window_is_the_normalised_gaussian():
    g = gaussian_window()
    assert g.shape == (11,) and float(g.sum()) == pytest.approx(1.0, abs=1e-15)
    assert np.allclose(np.outer(g, g), _window_2d(), atol=1e-15)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 1, 20, 17, dtype=torch.float64) * 255
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-12)


def test_ssim_of_a_constant_offset_is_the_luminance_term():
    # flat images: every window has sigma 0, so SSIM = (2 c (c + d) + C1) / (c^2 + (c + d)^2 + C1)
    c, d = 100.0, 20.0
    x = torch.full((1, 1, 15, 15), c, dtype=torch.float64)
    expected = (2 * c * (c + d) + C1) / (c ** 2 + (c + d) ** 2 + C1)
    assert float(ssim(x, x + d)) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_a_scaled_image_on_one_window():
    # one 11x11 window: y = alpha x gives l = (2 alpha mu^2 + C1) / ((1 + alpha^2) mu^2 + C1) and
    # cs = (2 alpha s2 + C2) / ((1 + alpha^2) s2 + C2) with the window's weighted mean mu and variance s2
    rng = np.random.default_rng(1)
    x = rng.uniform(20, 200, (11, 11))
    w = _window_2d()
    mu = (w * x).sum()
    s2 = (w * (x - mu) ** 2).sum()
    for alpha in (0.5, 0.9, 1.2):
        expected = ((2 * alpha * mu ** 2 + C1) / ((1 + alpha ** 2) * mu ** 2 + C1)
                    * (2 * alpha * s2 + C2) / ((1 + alpha ** 2) * s2 + C2))
        assert float(ssim(_t(x), _t(alpha * x))) == pytest.approx(expected, rel=1e-10)


def test_ssim_equals_the_naive_per_window_formula():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (16, 19))
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    assert float(ssim(_t(x), _t(y))) == pytest.approx(naive_ssim(x, y), rel=1e-10)


def test_sr_scores_ignore_the_border_and_use_luma():
    g = torch.Generator().manual_seed(3)
    hr = torch.rand(2, 3, 24, 24, generator=g) * 2 - 1
    sr = hr.clone()
    sr[..., :4, :] = -hr[..., :4, :]  # damage inside the 4-pixel border only
    scores = sr_scores(sr, hr, scale=4)
    assert torch.isinf(scores["psnr"]).all() and scores["ssim"].tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    noisy = hr + 0.05 * torch.randn(hr.shape, generator=g)
    scores = sr_scores(noisy, hr, scale=2)
    y_a, y_b = shave(rgb_to_y(noisy), 2), shave(rgb_to_y(hr), 2)
    mse = float((y_a - y_b).square().mean(dim=(1, 2, 3))[0])
    assert float(scores["psnr"][0]) == pytest.approx(10 * math.log10(255 ** 2 / mse), rel=1e-12)
    assert float(scores["ssim"][0]) == pytest.approx(naive_ssim(y_a[0, 0].numpy(), y_b[0, 0].numpy()), rel=1e-10)


def test_bad_arguments_name_themselves():
    x = torch.zeros(1, 1, 12, 12)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, torch.zeros(1, 1, 12, 13))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 10, 12), torch.zeros(1, 1, 10, 12))
    with pytest.raises(ValueError, match="border 6 leaves nothing"):
        shave(x, 6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        rgb_to_y(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        psnr(torch.zeros(12, 12), torch.zeros(12, 12))


def test_against_scikit_image_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (32, 30))
    y = np.clip(x + rng.normal(0, 15, x.shape), 0, 255)
    expected = metrics.structural_similarity(x, y, data_range=255, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
    assert float(ssim(_t(x), _t(y))) == pytest.approx(expected, rel=1e-6)
    assert float(psnr(_t(x), _t(y))) == pytest.approx(metrics.peak_signal_noise_ratio(x, y, data_range=255),
                                                      rel=1e-10)
