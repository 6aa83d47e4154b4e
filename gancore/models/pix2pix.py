"""The pix2pix / CycleGAN networks of Isola et al. (2017) and Zhu et al. (2017), in the module layout of
the reference code (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), so that its checkpoints
(`latest_net_G_A.pth`, `latest_net_G.pth`, `latest_net_D.pth`) load with `load_state_dict(strict=True)`.

Each network is built in plain torch.nn; `fused=True` (the default) then hands it to gancore.nn.fuse,
which swaps norm + activation (and the residual block's add) for fused ops without renaming a key.
`fused=False` is the plain network: the comparison contender and a debugging aid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gancore.nn import fuse

NORMS = ("instance", "batch", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")


def _norm_layer(norm: str) -> tuple[Callable[[int], nn.Module], bool]:
    """(channels -> norm module, whether convs before it take a bias). As in the reference, a conv has a
    bias only when the norm is instance norm (batch norm's shift makes it redundant; "none" keeps the
    reference's behaviour of no bias either)."""
    if norm == "instance":
        return (lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)), True
    if norm == "batch":
        return (lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)), False
    if norm == "none":
        return (lambda c: nn.Identity()), False
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def init_weights_(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference "normal" init: conv/linear weights N(0, gain), biases 0, batch-norm scales N(1, gain)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def _finish(net: nn.Module, fused: bool) -> None:
    init_weights_(net)
    if fused:
        fuse(net)


class _TestTimeDropout(nn.Dropout):
    """Dropout that stays on in eval mode: pix2pix's only source of noise at test time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.p, training=True, inplace=self.inplace)


class ResnetBlock(nn.Module):
    """x + conv_block(x), conv_block = pad, conv3x3, norm, ReLU, [dropout 0.5], pad, conv3x3, norm."""

    def __init__(self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool,
                 use_bias: bool) -> None:
        super().__init__()
        self.conv_block = self.build_conv_block(dim, padding_type, norm_layer, use_dropout, use_bias)

    @staticmethod
    def build_conv_block(dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool,
                         use_bias: bool) -> nn.Sequential:
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}
        if padding_type not in PADDING_TYPES:
            raise ValueError(f"padding_type must be one of {PADDING_TYPES}, got {padding_type!r}")
        p = 1 if padding_type == "zero" else 0

        def conv() -> list[nn.Module]:
            pad = [pads[padding_type](1)] if padding_type in pads else []
            return pad + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]

        layers = conv() + [nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        return nn.Sequential(*layers, *conv())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-ngf, d2ngf, d4ngf, n_blocks residual blocks, u2ngf, ungf, c7s1-output_nc, tanh.
    resnet_9blocks (n_blocks=9, 11,378,179 parameters) for 256x256, resnet_6blocks for 128x128."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "instance",
                 use_dropout: bool = False, n_blocks: int = 9, padding_type: str = "reflect",
                 fused: bool = True) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        norm_layer, use_bias = _norm_layer(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0,
                                                                    bias=use_bias), norm_layer(ngf), nn.ReLU(True)]
        n_down = 2
        for i in range(n_down):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=use_bias), norm_layer(c * 2),
                       nn.ReLU(True)]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 2 ** n_down, padding_type, norm_layer, use_dropout, use_bias))
        for i in range(n_down):
            c = ngf * 2 ** (n_down - i)
            layers += [nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1,
                                          bias=use_bias), norm_layer(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        _finish(self, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down (LeakyReLU 0.2, conv4x4/2, norm) -> submodule -> up (ReLU, convT4x4/2,
    norm), returned concatenated with its input. As in the reference, the down LeakyReLU is in place, so
    the skip carries the activated input; the outermost level has no skip and ends in tanh."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d, use_bias: bool = False,
                 use_dropout: bool = False, dropout_at_test: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(_TestTimeDropout(0.5) if dropout_at_test else nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's generator: num_downs stride-2 levels (unet_256: 8, unet_128: 7) with skip connections;
    the num_downs - 5 innermost-but-one levels have dropout 0.5 when asked. `dropout_at_test=True` keeps
    that dropout on in eval mode (the pix2pix noise trick)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", use_dropout: bool = False, fused: bool = True,
                 dropout_at_test: bool = False) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        norm_layer, use_bias = _norm_layer(norm)
        kw = dict(norm_layer=norm_layer, use_bias=use_bias)
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout,
                                            dropout_at_test=dropout_at_test, **kw)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, **kw)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             **kw)
        _finish(self, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator: n_layers=3 gives the 70x70 receptive field of pix2pix and CycleGAN.
    One logit per patch, (N, 1, H', W')."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 fused: bool = True) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        norm_layer, use_bias = _norm_layer(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=use_bias),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        _finish(self, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """The 1x1 PatchGAN ("pixel" D): one logit per pixel, (N, 1, H, W)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "instance", fused: bool = True) -> None:
        super().__init__()
        norm_layer, use_bias = _norm_layer(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias), norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias))
        _finish(self, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
