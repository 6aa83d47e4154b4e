"""The encoder and discriminator of VAE-GAN (Larsen et al., 2016); its decoder is the DCGAN generator.

The paper's 64x64 networks are 5x5 convolutions with batch norm and ReLU: an encoder 64-128-256 -> FC 2048
-> (mu, log variance), and a discriminator 32-128-256-256 -> FC 512 -> 1 whose third convolution's output
is the feature space of the reconstruction loss. These keep that structure in the DCGAN layout (4x4 stride-2
convolutions, halving the map per layer down to 4x4, width doubling), so any power-of-two resolution works
and `gancore.nn.fuse` fuses every batch norm with its activation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancore.models._common import check_ints
from gancore.models.dcgan import dcgan_init_


def _down_widths(resolution: int, width: int) -> list[int]:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return [width * 2 ** i for i in range(int(math.log2(resolution)) - 2)]  # down to 4x4


def _conv_stack(channels: int, widths: list[int], first_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip([channels, *widths[:-1]], widths)):
        norm = first_norm or i > 0
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm), *([nn.BatchNorm2d(c_out)] if norm else []),
                   nn.LeakyReLU(0.2, inplace=True)]
    return layers


class VAEEncoder(nn.Module):
    """images (N, C, R, R) -> (mu, log variance), each (N, latent_dim)."""

    def __init__(self, latent_dim: int = 128, resolution: int = 64, channels: int = 3, width: int = 64,
                 hidden: int = 512) -> None:
        super().__init__()
        check_ints(latent_dim=latent_dim, width=width, hidden=hidden)
        widths = _down_widths(resolution, width)
        self.latent_dim = latent_dim
        self.net = nn.Sequential(*_conv_stack(channels, widths, first_norm=True), nn.Flatten(),
                                 nn.Linear(widths[-1] * 16, hidden, bias=False), nn.BatchNorm1d(hidden),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 2 * latent_dim))
        dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class VAEGANDiscriminator(nn.Module):
    """images -> one logit per image; `features(x)` is the output of its `feature_layer`-th convolution
    block (1-based, after its activation), the space of VAE-GAN's learned similarity.

    forward(x, output=...) also gives the features ("features", or ("logits", "features") for "both"), so that a
    compiled D (train.compile compiles forward only) serves every call: an eager features() call would save the
    batch norms' running statistics for its backward while the compiled calls update them."""

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 32, hidden: int = 512,
                 feature_layer: int = 3) -> None:
        super().__init__()
        check_ints(width=width, hidden=hidden, feature_layer=feature_layer)
        widths = _down_widths(resolution, width)
        if feature_layer > len(widths):
            raise ValueError(f"feature_layer must be at most {len(widths)} (the convolutions down to 4x4 at "
                             f"resolution {resolution}), got {feature_layer}")
        layers = _conv_stack(channels, widths, first_norm=False)
        cut = 2 + 3 * (feature_layer - 1)  # conv + act for the first block, conv + norm + act after
        self.body = nn.Sequential(*layers[:cut])
        self.head = nn.Sequential(*layers[cut:], nn.Flatten(), nn.Linear(widths[-1] * 16, hidden, bias=False),
                                  nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1))
        dcgan_init_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self(x, output="features")  # through __call__: a compiled D's compiled forward

    def forward(self, x: torch.Tensor, output: str = "logits") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if output not in ("logits", "features", "both"):
            raise ValueError(f"output must be 'logits', 'features' or 'both', got {output!r}")
        features = self.body(x)
        if output == "features":
            return features
        logits = self.head(features).reshape(x.shape[0])
        return (logits, features) if output == "both" else logits
