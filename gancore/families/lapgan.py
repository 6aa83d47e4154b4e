"""LAPGAN (Denton, Chintala, Szlam and Fergus, 2015): a Laplacian pyramid of GANs, sampled coarse to fine.

With `levels` levels the training images give a pyramid (gancore.models.lapgan): the coarsest image I_0 at
resolution / 2^(levels-1) and the band-pass residuals h_k = I_k - up(I_{k-1}) of the finer levels. Level 0
is a plain GAN on I_0 (the DCGAN networks). Each finer level k is a conditional GAN: G_k turns the
up-sampled coarser image l_k = up(I_{k-1}) plus a noise plane into a residual, and D_k tells (h_k, l_k) from
(G_k(l_k, noise), l_k). Every level trains on its own level of the data, independently of the others (l_k
comes from the real image, as in the paper); only sampling chains them: I_0 = G_0(z), then
I_k = l_k + G_k(l_k, noise_k) with l_k = up(I_{k-1}). Networks G0/D0, G1/D1, ...; phases D_k then G_k per
level, every step; each level's losses are logged under its own phase names.
The default data is the simple style of the built-in shapes (white, upright, near-centred, as DCGAN's demo):
on it `gancore train lapgan --steps 600` draws one white object per tile, about half of them a recognisable
square, cross or triangle with rounded, lumpy edges; on the varied style 100 steps had left dim blobs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_image_spec,
    check_positive,
    check_power_of_two,
)
from gancore.losses import ADVERSARIAL_LOSSES, adversarial_losses
from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gancore.models.lapgan import LaplacianDiscriminator, LaplacianGenerator, gaussian_levels, upsample
from gancore.nn import fuse


@dataclass
class LAPGANConfig:
    resolution: int = 32
    channels: int = 3
    levels: int = 3  # the paper's CIFAR-10 pyramid: 8x8 -> 16x16 -> 32x32
    latent_dim: int = 100  # level 0's z
    coarse_width: int = 32  # level 0's DCGAN networks
    g_width: int = 64  # the finer levels' generators
    g_depth: int = 3  # their convolution layers
    d_width: int = 32  # the finer levels' discriminators
    loss: str = "bce"
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.5, 0.99)
    betas_d: tuple[float, float] = (0.5, 0.99)
    fused: bool = True  # batch norm + activation through gancore's fused op; false: plain torch.nn

    def __post_init__(self) -> None:
        check_choice("model.loss", self.loss, tuple(sorted(ADVERSARIAL_LOSSES)))
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("levels", "latent_dim", "coarse_width", "g_width", "g_depth", "d_width"):
            check_positive(f"model.{key}", getattr(self, key))
        if self.resolution >> (self.levels - 1) < 8:
            raise ConfigError(f"model.levels: {self.levels} levels from {self.resolution}x{self.resolution} make "
                              f"the coarsest level {self.resolution >> (self.levels - 1)} pixels wide; it must be "
                              f">= 8 (at most {self.resolution.bit_length() - 3} levels)")

    def level_resolutions(self) -> list[int]:
        return [self.resolution >> (self.levels - 1 - k) for k in range(self.levels)]


@register_family
class LAPGAN(Family):
    name = "lapgan"
    summary = "LAPGAN (Denton et al. 2015): Laplacian pyramid of conditional GANs, sampled coarse to fine"
    Config = LAPGANConfig
    default_data = {"name": "shapes", "style": "simple"}  # see the module doc
    default_train = {"batch_size": 32}
    bench_cases = {"full": BenchCase("32x32", ("model.resolution=32", "model.levels=3"), (16, 64)),
                   "quick": BenchCase("16x16", ("model.resolution=16", "model.levels=2", "model.g_width=16",
                                                "model.d_width=16", "model.coarse_width=16"), (8,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        self.spec = spec
        self.d_loss, self.g_loss = adversarial_losses(c.loss)
        sizes = c.level_resolutions()
        nets: dict[str, nn.Module] = {"G0": DCGANGenerator(c.latent_dim, sizes[0], c.channels, c.coarse_width),
                                      "D0": DCGANDiscriminator(sizes[0], c.channels, c.coarse_width)}
        for k, size in enumerate(sizes[1:], start=1):
            nets[f"G{k}"] = LaplacianGenerator(c.channels, c.g_width, c.g_depth)
            nets[f"D{k}"] = LaplacianDiscriminator(size, c.channels, c.d_width)
        if c.fused:
            nets = {name: fuse(net) for name, net in nets.items()}
        return {name: (Network(net, lr=c.lr_g, betas=c.betas_g, ema=True) if name[0] == "G" else
                       Network(net, lr=c.lr_d, betas=c.betas_d)) for name, net in nets.items()}

    def phases(self) -> list[Phase]:
        phases = []
        for k in range(self.config.levels):
            phases += [Phase(f"D{k}", f"D{k}", functools.partial(self.loss_d, k)),
                       Phase(f"G{k}", f"G{k}", functools.partial(self.loss_g, k))]
        return phases

    def _level(self, ctx: PhaseContext, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(target, condition) of level k for this batch: (I_0, None), or (h_k, l_k) for a finer level."""
        images = gaussian_levels(ctx.batch[self.spec.key], self.config.levels)
        if k == 0:
            return images[0], None
        low = upsample(images[k - 1])
        return images[k] - low, low

    def _fake(self, ctx: PhaseContext, k: int, low: torch.Tensor | None) -> torch.Tensor:
        if k == 0:
            return ctx.nets["G0"](ctx.randn(self.config.latent_dim))
        return ctx.nets[f"G{k}"](low, ctx.randn(1, *low.shape[2:]))

    def _score(self, ctx: PhaseContext, k: int, x: torch.Tensor, low: torch.Tensor | None) -> torch.Tensor:
        return ctx.nets["D0"](x) if k == 0 else ctx.nets[f"D{k}"](x, low)

    def loss_d(self, k: int, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        target, low = self._level(ctx, k)
        fake = self._fake(ctx, k, low).detach()
        # Separate calls, so batch norm sees all-real and all-fake batches.
        real_score, fake_score = self._score(ctx, k, target, low), self._score(ctx, k, fake, low)
        return {"loss": self.d_loss(real_score, fake_score), "real_score": real_score.detach().float().mean(),
                "fake_score": fake_score.detach().float().mean()}

    def loss_g(self, k: int, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        _, low = self._level(ctx, k)
        return {"loss": self.g_loss(self._score(ctx, k, self._fake(ctx, k, low), low))}

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """{"z": level 0's latents, "noise<k>": level k's noise plane (n, 1, R_k, R_k)}."""
        latents = {"z": torch.randn(n, self.config.latent_dim, generator=generator, device=device)}
        for k, size in enumerate(self.config.level_resolutions()[1:], start=1):
            latents[f"noise{k}"] = torch.randn(n, 1, size, size, generator=generator, device=device)
        return latents

    def generate(self, nets: Mapping[str, nn.Module], latents: Mapping[str, torch.Tensor],
                 levels: int | None = None) -> torch.Tensor:
        """Coarse to fine: I_0 = G0(z), I_k = l_k + G_k(l_k, noise_k), l_k = up(I_{k-1}), each level clamped to
        the data's [-1, 1]; `levels` stops after that many levels (default: all)."""
        image = nets["G0"](latents["z"])
        for k in range(1, self.config.levels if levels is None else levels):
            low = upsample(image)
            image = (low + nets[f"G{k}"](low, latents[f"noise{k}"])).clamp(-1, 1)
        return image
