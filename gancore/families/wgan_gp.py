"""WGAN-GP (Gulrajani et al., 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty.

The critic has no batch norm (the penalty is per sample: layer norm, as the paper suggests, or instance
norm through gancore's fused op, are the options), Adam(1e-4, betas 0 and 0.9), lambda=10,
and G steps once per n_critic=5 critic steps. Convolutional (DCGAN layout) networks for images,
fully connected ones for vector data such as the built-in 2-D ring (`arch: auto` picks by data).
The critic's estimate of the Wasserstein distance, E[D(real)] - E[D(fake)], is logged as D/wdist.
"""

from __future__ import annotations

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
from gancore.losses import d_wasserstein, g_wasserstein
from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gancore.models.mlp import MLPCritic, MLPGenerator
from gancore.ops import gradient_penalty


@dataclass
class WassersteinNetworksConfig:
    """The networks' keys shared by WGAN and WGAN-GP (built by wasserstein_networks); each family's Config
    subclasses it with its own defaults and its own training keys."""

    arch: str = "auto"  # conv (images), mlp (vectors) or auto (by the shape of the data)
    resolution: int = 64
    channels: int = 3
    latent_dim: int = 128
    g_width: int = 64  # conv: as in DCGAN
    d_width: int = 64
    fused: bool = True  # conv: gancore's fused norm + activation (G's batch norm, a normalised critic's norm)
    mlp_width: int = 512  # mlp: hidden units
    mlp_depth: int = 3  # mlp: hidden layers
    n_critic: int = 5

    def __post_init__(self) -> None:
        check_choice("model.arch", self.arch, ("auto", "conv", "mlp"))
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "g_width", "d_width", "mlp_width", "mlp_depth", "n_critic"):
            check_positive(f"model.{key}", getattr(self, key))


@dataclass
class WGANGPConfig(WassersteinNetworksConfig):
    critic_norm: str = "none"  # none, layer or instance (never batch: it breaks the per-sample penalty)
    gp_weight: float = 10.0
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas_g: tuple[float, float] = (0.0, 0.9)
    betas_d: tuple[float, float] = (0.0, 0.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.critic_norm", self.critic_norm, ("none", "layer", "instance"))
        if self.gp_weight < 0:
            raise ConfigError(f"model.gp_weight: must be >= 0, got {self.gp_weight}")


def wasserstein_networks(family: str, spec: DataSpec, c: WassersteinNetworksConfig,
                         critic_norm: str) -> tuple[nn.Module, nn.Module]:
    """G and critic of WGAN and WGAN-GP: MLPs for vector data, DCGAN's conv networks (G with batch norm,
    the critic with `critic_norm`) for images; `c.arch` auto picks by the shape of the data."""
    arch = c.arch if c.arch != "auto" else ("mlp" if len(spec.shape) == 1 else "conv")
    if arch == "mlp":
        if len(spec.shape) != 1:
            raise ConfigError(f"model.arch=mlp needs vector data, but '{spec.key}' has shape {spec.shape}")
        return (MLPGenerator(c.latent_dim, spec.shape[0], c.mlp_width, c.mlp_depth),
                MLPCritic(spec.shape[0], c.mlp_width, c.mlp_depth))
    check_image_spec(family, spec, c.channels, c.resolution)
    return (DCGANGenerator(c.latent_dim, c.resolution, c.channels, c.g_width, "batch", fused=c.fused),
            DCGANDiscriminator(c.resolution, c.channels, c.d_width, critic_norm, fused=c.fused))


@register_family
class WGANGP(Family):
    name = "wgan-gp"
    summary = "WGAN-GP (Gulrajani et al. 2017): critic without batch norm, gradient penalty 10, n_critic 5"
    Config = WGANGPConfig
    default_data = {"name": "shapes"}
    # a round: n_critic critic steps with the penalty, then the G step; the critic with the fused instance norm
    bench_cases = {"full": BenchCase("32x32, instance-norm critic",
                                     ("model.resolution=32", "model.critic_norm=instance"), (16, 64), steps=5),
                   "quick": BenchCase("16x16, instance-norm critic", ("model.resolution=16", "model.g_width=16",
                                                                      "model.d_width=16", "model.critic_norm=instance"),
                                      (8,), steps=5)}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        g, d = wasserstein_networks(self.name, spec, c, critic_norm=c.critic_norm)
        self.spec = spec
        return {
            "G": Network(g, lr=c.lr_g, betas=c.betas_g, ema=True),
            "D": Network(d, lr=c.lr_d, betas=c.betas_d, double_backward=True),
        }

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g, every=self.config.n_critic)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        critic = ctx.nets["D"]
        real = ctx.batch[self.spec.key]
        fake = ctx.nets["G"](ctx.randn(self.config.latent_dim)).detach()
        scores = critic(torch.cat([real, fake.to(real.dtype)]))  # no batch norm: one call for both
        real_score, fake_score = scores.split([real.shape[0], fake.shape[0]])
        # alpha weights the real sample (gancore.ops convention, docs/ops.md); drawn per sample by ctx
        penalty = gradient_penalty(critic, real, fake.to(real.dtype), weight=self.config.gp_weight,
                                   alpha=ctx.rand(), scaler=ctx.scaler)
        wasserstein = -d_wasserstein(real_score, fake_score)
        return {"loss": penalty - wasserstein, "wdist": wasserstein.detach(), "gp": penalty.detach()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        return {"loss": g_wasserstein(ctx.nets["D"](ctx.nets["G"](ctx.randn(self.config.latent_dim))))}
