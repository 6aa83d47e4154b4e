"""The DCGAN generator and discriminator of Radford et al. (2016), for any power-of-two resolution.

At 64x64 with width 64 these are the paper's networks (G: 512-256-128-64 channels through four
stride-2 transposed convolutions from a 4x4 start; D the mirror image). Smaller resolutions drop
the widest layer, which gives the usual 32x32 variant. `norm` lets WGAN-GP build its critic
without batch norm, where a per-sample gradient penalty would be wrong (layer or instance norm instead).

Each network is built in plain torch.nn; `fused=True` then hands it to gancore.nn.fuse, which swaps
norm + activation for the fused op (BatchNormAct2d, InstanceNormAct2d) without renaming a state_dict key.
The generator's `noise_std` and `dropout` are training tricks (gancore.families.tricks): they sit in the
activation's slot (gancore.models.noise), so they change no key either.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancore.models.noise import hidden_activation
from gancore.nn import fuse

NORMS = ("batch", "layer", "instance", "none")


def _check_resolution(resolution: int) -> int:
    """Number of stride-2 layers between 4x4 and `resolution`."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return int(math.log2(resolution)) - 2


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # normalises each sample over (C, H, W): safe with per-sample penalties
        return nn.GroupNorm(1, channels)
    if kind == "instance":  # per sample and channel: also safe with per-sample penalties; fused by fuse()
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def dcgan_init_(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, channels, resolution, resolution), in [-1, 1] through the final tanh
    (`tanh=False`: a linear output). `noise_std` adds Gaussian noise after every hidden layer while training,
    `dropout` drops hidden units at train and test time."""

    def __init__(self, latent_dim: int = 100, resolution: int = 64, channels: int = 3, width: int = 64,
                 norm: str = "batch", *, fused: bool = False, tanh: bool = True, noise_std: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        n_up = _check_resolution(resolution)
        self.latent_dim = latent_dim
        widths = [width * 2 ** i for i in reversed(range(n_up))]  # e.g. 512, 256, 128, 64
        has_norm = norm != "none"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=not has_norm),
            _norm(norm, widths[0]),
            hidden_activation(nn.ReLU(inplace=True), noise_std, dropout),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not has_norm), _norm(norm, c_out),
                       hidden_activation(nn.ReLU(inplace=True), noise_std, dropout)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh() if tanh else nn.Identity()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if fused:
            fuse(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """images (N, channels, resolution, resolution) -> one logit (or critic value) per image, (N,)."""

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 64, norm: str = "batch", *,
                 fused: bool = False) -> None:
        super().__init__()
        n_down = _check_resolution(resolution)
        widths = [width * 2 ** i for i in range(n_down)]  # e.g. 64, 128, 256, 512
        has_norm = norm != "none"
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not has_norm), _norm(norm, c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if fused:
            fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])
