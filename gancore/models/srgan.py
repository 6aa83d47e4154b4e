"""SRResNet and the SRGAN discriminator of Ledig et al. (2017).

There is no single canonical PyTorch checkpoint layout for SRGAN (the authors released none), so the
names here are chosen to read like the paper's figure 4:

SRResNet             keys
  conv_in            conv_in.0.{weight,bias} (9x9, 3 -> 64), conv_in.1.weight (PReLU)
  res_blocks.<i>     res_blocks.<i>.body.{0,3}.{weight,bias} (3x3 convs), .body.{1,4}.* (BatchNorm2d),
                     .body.2.weight (PReLU)
  conv_mid           conv_mid.0.{weight,bias} (3x3), conv_mid.1.* (BatchNorm2d); added to conv_in's output
  upsample.<k>       upsample.<k>.0.{weight,bias} (3x3, 64 -> 256), .1 PixelShuffle(2), upsample.<k>.2.weight (PReLU)
  conv_out           conv_out.{weight,bias} (9x9, 64 -> 3)

Every PReLU has a single slope (nn.PReLU(), as the paper's figure gives no channel count): with one per
PReLU (19 at scale 4) the defaults have exactly 1,549,462 parameters, the published count; a slope
per channel (nn.PReLU(64)) would give 1,550,659. Every conv has a bias, also those before batch norm: the same count
requires it, and the discriminator follows the same convention.

SRGANDiscriminator   keys
  features           features.<i>: Conv2d (3x3), BatchNorm2d from the second conv on, LeakyReLU(0.2);
                     stride 2 on every second conv, widths 64-64-128-128-256-256-512-512
  classifier         head="dense": Flatten, Linear(512*(s/16)**2, 1024), LeakyReLU(0.2), Linear(1024, 1)
                     head="pooled": AdaptiveAvgPool2d(1), Conv2d(512, 1024, 1), LeakyReLU(0.2), Conv2d(1024, 1, 1)
                     (both: classifier.1.* and classifier.3.*)

Both return logits (the paper's sigmoid belongs to the loss).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancore.models._common import check_ints
from gancore.nn import fuse as _fuse

SR_HEADS = ("dense", "pooled")



class SRResidualBlock(nn.Module):
    """x + body(x), body = conv3, BN, PReLU, conv3, BN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """LR image (N, 3, H, W) -> SR image (N, 3, scale*H, scale*W); the generator of SRGAN. No output
    activation, as the paper.
    """

    def __init__(self, scale: int = 4, channels: int = 64, n_blocks: int = 16, *, fused: bool = True) -> None:
        super().__init__()
        check_ints(channels=channels)
        if not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two >= 2, got {scale!r}")
        check_ints(0, n_blocks=n_blocks)
        self.scale = scale
        self.conv_in = nn.Sequential(nn.Conv2d(3, channels, kernel_size=9, padding=4), nn.PReLU())
        self.res_blocks = nn.Sequential(*[SRResidualBlock(channels) for _ in range(n_blocks)])
        self.conv_mid = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                                      nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(channels, channels * 4, kernel_size=3, padding=1), nn.PixelShuffle(2), nn.PReLU())
            for _ in range(int(math.log2(scale)))])
        self.conv_out = nn.Conv2d(channels, 3, kernel_size=9, padding=4)
        if fused:
            _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        h = h + self.conv_mid(self.res_blocks(h))
        return self.conv_out(self.upsample(h))


class SRGANDiscriminator(nn.Module):
    """image (N, 3, image_size, image_size) -> one logit per image, (N, 1).

    head="dense" is the paper's (Dense 1024 over the flattened 512 x image_size/16 x image_size/16 map,
    96x96 crops by default); head="pooled" averages the map first, so any size >= 16 works.
    """

    def __init__(self, image_size: int = 96, in_channels: int = 3, head: str = "dense", *,
                 fused: bool = True) -> None:
        super().__init__()
        check_ints(image_size=image_size, in_channels=in_channels)
        if head not in SR_HEADS:
            raise ValueError(f"head must be one of {SR_HEADS}, got {head!r}")
        if head == "dense" and image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 for head='dense', got {image_size}")
        self.head = head
        self.image_size = image_size
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate((64, 64, 128, 128, 256, 256, 512, 512)):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1 + i % 2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        if head == "dense":
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512 * (image_size // 16) ** 2, 1024),
                                            nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1))
        else:
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(512, 1024, kernel_size=1),
                                            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(1024, 1, kernel_size=1))
        if fused:
            _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head == "dense" and x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"SRGANDiscriminator(head='dense'): input must be {self.image_size}x{self.image_size}, "
                             f"got {tuple(x.shape)}; use head='pooled' for other sizes")
        return self.classifier(self.features(x)).reshape(x.shape[0], 1)
