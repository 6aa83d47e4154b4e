"""LAPGAN's Laplacian pyramid and the conditional networks of its finer levels (Denton et al., 2015).

A pyramid of `levels` levels halves the resolution per level: level 0 is the coarsest image I_0, and each
finer level k stores the band-pass residual h_k = I_k - up(I_{k-1}) that the upsampled coarser image lacks.
The generator of level k maps (up(I_{k-1}), a noise plane) to h_k, its discriminator judges h_k given
up(I_{k-1}); level 0 is a plain GAN. As in the paper's CIFAR-10 models, the noise enters as an extra input
plane and the finer networks are small convolutional nets (here with batch norm, fused by gancore.nn.fuse).
Down-sampling is a 2x2 box filter, up-sampling bilinear, so reconstruct(laplacian_pyramid(x)) == x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gancore.models._common import check_ints
from gancore.models.dcgan import dcgan_init_


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def gaussian_levels(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[I_0 (coarsest), ..., I_{levels-1} = x]: x down-sampled levels-1, ..., 0 times."""
    check_ints(levels=levels)
    out = [x]
    for _ in range(levels - 1):
        if min(out[0].shape[-2:]) < 2 or out[0].shape[-1] % 2 or out[0].shape[-2] % 2:
            raise ValueError(f"{levels} pyramid levels need sides divisible by 2^{levels - 1}, got "
                             f"{tuple(x.shape[-2:])}")
        out.insert(0, downsample(out[0]))
    return out


def laplacian_pyramid(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(I_0, [h_1, ..., h_{levels-1}]): the coarsest image and the band-pass residuals, coarse to fine."""
    images = gaussian_levels(x, levels)
    return images[0], [fine - upsample(coarse) for coarse, fine in zip(images[:-1], images[1:])]


def reconstruct(coarsest: torch.Tensor, residuals: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of laplacian_pyramid: I_k = up(I_{k-1}) + h_k, coarse to fine."""
    image = coarsest
    for h in residuals:
        image = upsample(image) + h
    return image


class LaplacianGenerator(nn.Module):
    """(low-pass image (N, C, R, R), noise (N, 1, R, R)) -> band-pass residual (N, C, R, R), unbounded."""

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 3) -> None:
        super().__init__()
        check_ints(channels=channels, width=width, depth=depth)
        layers: list[nn.Module] = []
        c_in = channels + 1
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.Conv2d(c_in, channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, low: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([low, noise.to(low.dtype)], 1))


class LaplacianDiscriminator(nn.Module):
    """(band-pass residual, low-pass image), each (N, C, R, R) -> one logit per pair, (N,)."""

    def __init__(self, resolution: int, channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_ints(channels=channels, width=width)
        if resolution < 4 or resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4, got {resolution}")
        self.net = nn.Sequential(
            nn.Conv2d(2 * channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(), nn.Linear(2 * width * (resolution // 4) ** 2, 1))
        dcgan_init_(self)

    def forward(self, residual: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([residual, low.to(residual.dtype)], 1)).reshape(residual.shape[0])
