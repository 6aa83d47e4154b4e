"""DCGAN (Radford, Metz and Chintala, 2016): all-convolutional G and D with batch norm.

The defaults are sized for the README's first run (200 steps on the built-in shapes, about a
minute on two CPU cores): 32x32 networks of width 32, batch 32 and Adam(2e-3, (0.5, 0.99)). The paper's
setting is model.resolution=64, g_width=64, d_width=64, lr 2e-4, betas (0.5, 0.999), train.batch_size=64.

Two phases, both every step: D on real images and fresh fakes, then G through the frozen D.
`loss` swaps the non-saturating BCE of the paper for hinge or least squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gancore.families import register_family
from gancore.families.base import (
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
from gancore.models.dcgan import NORMS, DCGANDiscriminator, DCGANGenerator


@dataclass
class DCGANConfig:
    # Not the paper's 64 / 64 / 2e-4 / 0.999: ten times its learning rate, with a shorter second-moment
    # memory, is what turns 200 steps into recognisable shapes rather than grey noise (see the module doc).
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 100
    g_width: int = 32  # channels of G's last hidden layer; doubled per layer towards 4x4
    d_width: int = 32  # channels of D's first layer
    norm: str = "batch"  # normalisation in both networks: batch (the paper), layer or none
    loss: str = "bce"
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.5, 0.99)
    betas_d: tuple[float, float] = (0.5, 0.99)

    def __post_init__(self) -> None:
        check_choice("model.loss", self.loss, tuple(sorted(ADVERSARIAL_LOSSES)))
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "g_width", "d_width"):
            check_positive(f"model.{key}", getattr(self, key))


@register_family
class DCGAN(Family):
    name = "dcgan"
    summary = "DCGAN (Radford et al. 2016): conv G/D with batch norm, BCE loss; 32x32 demo defaults"
    Config = DCGANConfig
    default_data = {"name": "shapes"}
    default_train = {"batch_size": 32}  # the demo: half the paper's 64 halves the time, at the same 200-step FD

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        self.spec = spec
        self.d_loss, self.g_loss = adversarial_losses(c.loss)
        return {
            "G": Network(DCGANGenerator(c.latent_dim, c.resolution, c.channels, c.g_width, c.norm),
                         lr=c.lr_g, betas=c.betas_g, ema=True),
            "D": Network(DCGANDiscriminator(c.resolution, c.channels, c.d_width, c.norm),
                         lr=c.lr_d, betas=c.betas_d),
        }

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real = ctx.batch[self.spec.key]
        fake = ctx.nets["G"](ctx.randn(self.config.latent_dim))
        # Separate calls, so batch norm sees all-real and all-fake batches, as in the paper.
        real_score, fake_score = ctx.nets["D"](real), ctx.nets["D"](fake.detach())
        return {"loss": self.d_loss(real_score, fake_score),
                "real_score": real_score.detach().float().mean(),
                "fake_score": fake_score.detach().float().mean()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        fake_score = ctx.nets["D"](ctx.nets["G"](ctx.randn(self.config.latent_dim)))
        return {"loss": self.g_loss(fake_score)}
