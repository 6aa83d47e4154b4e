"""PSNR and SSIM as super-resolution papers report them: on the luma (Y) channel, with a `scale`-pixel
border cropped off, on the 0..255 scale.

- Y is ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it, 16 + 65.481 R + 128.553 G + 24.966 B with
  R, G, B in [0, 1], so Y lies in [16, 235]; it is kept in floating point (not rounded to 8 bits).
- SSIM is Wang et al. (2004): a normalised 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  dynamic range 255, statistics over 'valid' windows only (no padding), averaged over the image; the
  population (not sample) covariance, as in the authors' ssim.m.

Images come in as gancore tensors, (N, C, H, W) in [-1, 1] with C = 3 (RGB) or 1 (grey, taken as
R = G = B). Everything is computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: The 0..255 scale of 8-bit images: PSNR's peak and SSIM's dynamic range.
DATA_RANGE = 255.0
_LUMA = (65.481, 128.553, 24.966)


def _check_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating (N, C, H, W) tensor, got {x.dtype} of shape {tuple(x.shape)}")


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    _check_images(a, "a")
    _check_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """(N, 3 or 1, H, W) in [-1, 1] -> (N, 1, H, W) float64 luma in [16, 235]."""
    _check_images(images, "images")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    rgb = (images.double() + 1.0) / 2.0
    if rgb.shape[1] == 1:
        return 16.0 + sum(_LUMA) * rgb
    weights = torch.tensor(_LUMA, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    return 16.0 + (rgb * weights).sum(dim=1, keepdim=True)


def shave(images: torch.Tensor, border: int) -> torch.Tensor:
    """Crop `border` pixels off every side (SR papers crop `scale` pixels before scoring)."""
    _check_images(images, "images")
    if not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be an integer >= 0, got {border!r}")
    h, w = images.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"border {border} leaves nothing of a {h}x{w} image")
    return images[..., border:h - border, border:w - border] if border else images


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, (N,) in dB: 10 log10(data_range^2 / MSE); inf when equal."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The 1-D Gaussian of SSIM's separable window, summing to 1, float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Mean SSIM per image, (N,), over every channel and every valid 11x11 window position."""
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    x = a.double().reshape(n * c, 1, *a.shape[-2:])
    y = b.double().reshape(n * c, 1, *b.shape[-2:])
    g = gaussian_window().to(x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable 'valid' Gaussian filter
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return index.reshape(n, -1).mean(dim=1)


def sr_scores(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, torch.Tensor]:
    """{"psnr": (N,), "ssim": (N,)} of super-resolved images against the originals, both (N, C, H, W) in
    [-1, 1]: on Y, with `scale` pixels cropped off each side."""
    _check_pair(sr, hr)
    y_sr, y_hr = shave(rgb_to_y(sr), scale), shave(rgb_to_y(hr), scale)
    return {"psnr": psnr(y_sr, y_hr), "ssim": ssim(y_sr, y_hr)}

