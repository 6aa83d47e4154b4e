"""The StarGAN networks of Choi et al. (2018), in the module layout of yunjey/stargan model.py.

Same modules, keys and parameter counts as the reference (Generator -> StarGANGenerator,
Discriminator -> StarGANDiscriminator), so its `200000-G.ckpt` / `200000-D.ckpt` load with strict=True.
Every instance norm is affine with running statistics, as the reference; with fused=True the network is
passed through gancore.nn.fuse, which also moves each residual block's add into the fused norm once it can fuse
norms with running statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from gancore.models._common import check_ints
from gancore.nn import fuse as _fuse


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=True)



class ResidualBlock(nn.Module):
    """x + main(x), main = conv3 (no bias), IN, ReLU, conv3 (no bias), IN."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=1, padding=1, bias=False), _instance_norm(dim_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim_out, dim_out, kernel_size=3, stride=1, padding=1, bias=False), _instance_norm(dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class StarGANGenerator(nn.Module):
    """(image (N, 3, H, W), target labels (N, c_dim)) -> translated image (N, 3, H, W) in [-1, 1].

    The labels are replicated over the image and concatenated to it; then conv7-IN-ReLU, two stride-2
    4x4 downsamplings, repeat_num residual blocks, two 4x4 transposed-conv upsamplings, conv7 and tanh.
    H and W must be multiples of 4.
    """

    def __init__(self, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6, *, fused: bool = True) -> None:
        super().__init__()
        check_ints(conv_dim=conv_dim, c_dim=c_dim)
        check_ints(0, repeat_num=repeat_num)
        self.c_dim = c_dim
        layers: list[nn.Module] = [nn.Conv2d(3 + c_dim, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
                                   _instance_norm(conv_dim), nn.ReLU(inplace=True)]
        dim = conv_dim
        for _ in range(2):
            layers += [nn.Conv2d(dim, dim * 2, kernel_size=4, stride=2, padding=1, bias=False),
                       _instance_norm(dim * 2), nn.ReLU(inplace=True)]
            dim *= 2
        layers += [ResidualBlock(dim, dim) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(dim, dim // 2, kernel_size=4, stride=2, padding=1, bias=False),
                       _instance_norm(dim // 2), nn.ReLU(inplace=True)]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, kernel_size=7, stride=1, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        if fused:
            _fuse(self)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if c.dim() != 2 or c.shape[0] != x.shape[0] or c.shape[1] != self.c_dim:
            raise ValueError(f"StarGANGenerator: c must have shape ({x.shape[0]}, {self.c_dim}), got {tuple(c.shape)}")
        c = c.to(x.dtype).reshape(c.shape[0], c.shape[1], 1, 1).expand(-1, -1, x.shape[2], x.shape[3])
        return self.main(torch.cat([x, c], dim=1))


class StarGANDiscriminator(nn.Module):
    """image (N, 3, image_size, image_size) -> (source logits (N, 1, s, s), domain logits (N, c_dim)),
    s = image_size / 2**repeat_num: repeat_num stride-2 4x4 convs with LeakyReLU 0.01 (`main`), a 3x3
    PatchGAN head `conv1`, and a classification head `conv2` whose kernel covers the whole final map.
    """

    def __init__(self, image_size: int = 128, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6, *,
                 fused: bool = True) -> None:
        super().__init__()
        check_ints(image_size=image_size, conv_dim=conv_dim, c_dim=c_dim, repeat_num=repeat_num)
        if image_size % 2 ** repeat_num:
            raise ValueError(f"image_size must be a multiple of 2**repeat_num = {2 ** repeat_num}, got {image_size}")
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.conv1 = nn.Conv2d(dim, 1, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(dim, c_dim, kernel_size=image_size // 2 ** repeat_num, bias=False)
        if fused:
            _fuse(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        out_cls = self.conv2(h)
        return self.conv1(h), out_cls.reshape(out_cls.shape[0], out_cls.shape[1])
