"""WGAN (Arjovsky, Chintala and Bottou, 2017): a Wasserstein critic kept Lipschitz by weight clipping.

The paper's algorithm 1: RMSprop for both networks, n_critic = 5 critic updates per generator
update, and after every critic update each critic weight clipped to [-c, c] with c = 0.01 (done by the
critic phase's after_step, on every parameter as in the reference code, batch-norm scales included).
Images get the DCGAN networks with batch norm in both, as in the paper's experiments; vector data
(the built-in 2-D ring) fully connected ones (`arch: auto` picks by data). The critic's estimate of the
Wasserstein distance, E[D(real)] - E[D(fake)], is logged as D/wdist: the paper's learning curve.
Not reproduced: the 100 critic iterations of the first 25 generator iterations (and every 500th).
One deviation, for the built-in short run: the learning rate defaults to 1e-3, twenty times the paper's 5e-5
(set model.lr_g=5e-5 model.lr_d=5e-5 for the paper's). At 5e-5 a few hundred steps (a few dozen generator
updates) leave grey noise, since the paper trains for ~100k generator iterations; at 1e-3, 300 steps on the
built-in shapes give coloured blobs on dark grounds (docs/families-classic.md).
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
    check_positive,
    check_power_of_two,
)
from gancore.families.wgan_gp import wasserstein_networks
from gancore.losses import d_wasserstein, g_wasserstein


@dataclass
class WGANConfig:
    arch: str = "auto"  # conv (images), mlp (vectors) or auto (by the shape of the data)
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 100
    g_width: int = 32  # conv: as in DCGAN
    d_width: int = 32
    mlp_width: int = 512  # mlp: hidden units
    mlp_depth: int = 3  # mlp: hidden layers
    n_critic: int = 5
    clip: float = 0.01  # critic weights are clipped to [-clip, clip] after each critic update
    lr_g: float = 1e-3  # the paper's is 5e-5: 1e-3 makes a 300-step run show structure (module doc)
    lr_d: float = 1e-3
    fused: bool = True  # batch norm + activation through gancore's fused op; false: plain torch.nn

    def __post_init__(self) -> None:
        check_choice("model.arch", self.arch, ("auto", "conv", "mlp"))
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "g_width", "d_width", "mlp_width", "mlp_depth", "n_critic"):
            check_positive(f"model.{key}", getattr(self, key))
        if not self.clip > 0:
            raise ConfigError(f"model.clip: must be > 0, got {self.clip!r}")


def clip_weights(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of `module` to [-clip, clip] in place (WGAN's Lipschitz constraint)."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


@register_family
class WGAN(Family):
    name = "wgan"
    summary = "WGAN (Arjovsky et al. 2017): Wasserstein critic, weight clipping 0.01, RMSprop, n_critic 5"
    Config = WGANConfig
    default_data = {"name": "shapes"}
    default_train = {"batch_size": 64}  # the paper's
    bench_cases = {"full": BenchCase("32x32", ("model.resolution=32",), (16, 64)),
                   "quick": BenchCase("16x16", ("model.resolution=16", "model.g_width=16", "model.d_width=16"),
                                      (8,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        # Batch norm in both networks, as the paper's DCGAN critic had: clipping, not a penalty, keeps it Lipschitz.
        g, d = wasserstein_networks(self.name, spec, c, critic_norm="batch")
        self.spec = spec
        return {
            "G": Network(g, lr=c.lr_g, optimizer="rmsprop", ema=True),
            "D": Network(d, lr=c.lr_d, optimizer="rmsprop"),
        }

    def phases(self) -> list[Phase]:
        clip = self.config.clip
        return [Phase("D", "D", self.loss_d, after_step=lambda critic: clip_weights(critic, clip)),
                Phase("G", "G", self.loss_g, every=self.config.n_critic)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real = ctx.batch[self.spec.key]
        fake = ctx.nets["G"](ctx.randn(self.config.latent_dim)).detach()
        # Separate calls: batch norm sees all-real and all-fake batches, as in the reference code.
        real_score, fake_score = ctx.nets["D"](real), ctx.nets["D"](fake)
        loss = d_wasserstein(real_score, fake_score)
        return {"loss": loss, "wdist": -loss.detach()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        return {"loss": g_wasserstein(ctx.nets["D"](ctx.nets["G"](ctx.randn(self.config.latent_dim))))}
