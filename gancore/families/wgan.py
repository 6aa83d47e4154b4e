"""WGAN (Arjovsky, Chintala and Bottou, 2017): a Wasserstein critic kept Lipschitz by weight clipping.

The paper's algorithm 1: RMSprop(5e-5) for both networks, n_critic = 5 critic updates per generator
update, and after every critic update each critic weight clipped to [-c, c] with c = 0.01 (done by the
critic phase's after_step, on every parameter as in the reference code, batch-norm scales included).
Images get the DCGAN networks with batch norm in both, as in the paper's experiments; vector data
(the built-in 2-D ring) fully connected ones (`arch: auto` picks by data). The critic's estimate of the
Wasserstein distance, E[D(real)] - E[D(fake)], is logged as D/wdist: the paper's learning curve.
The reference code's schedule, 100 critic updates for each of the first 25 generator updates and for every
500th, is an option (model.warmup_critic_steps=100); off by default, as in the paper's algorithm 1.
The default image data is the simple style of the built-in shapes (white, upright, near-centred, as DCGAN's
demo). The paper's lr is made for ~100k generator updates; a short look at the shapes wants a faster one:
`gancore train wgan --steps 1000 --set model.lr_g=1e-3 --set model.lr_d=1e-3` (200 generator updates) draws
white objects, about a third of them a recognisable cross, triangle or square.
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
    check_positive,
)
from gancore.families.wgan_gp import WassersteinNetworksConfig, wasserstein_networks
from gancore.losses import d_wasserstein, g_wasserstein


@dataclass
class WGANConfig(WassersteinNetworksConfig):
    resolution: int = 32
    latent_dim: int = 100
    g_width: int = 32  # conv: as in DCGAN
    d_width: int = 32
    # The reference code's critic boost: this many critic updates (0: off) before each of the first
    # warmup_g_iters generator updates and before every warmup_every-th one (0: only the first ones).
    warmup_critic_steps: int = 0
    warmup_g_iters: int = 25
    warmup_every: int = 500
    clip: float = 0.01  # critic weights are clipped to [-clip, clip] after each critic update
    lr_g: float = 5e-5
    lr_d: float = 5e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("warmup_critic_steps", "warmup_g_iters", "warmup_every"):
            check_positive(f"model.{key}", getattr(self, key), 0)
        if not self.clip > 0:
            raise ConfigError(f"model.clip: must be > 0, got {self.clip!r}")


def clip_weights(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of `module` to [-clip, clip] in place (WGAN's Lipschitz constraint)."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


@dataclass(frozen=True)
class CriticScheduledPhase(Phase):
    """The generator phase of the reference code's schedule: generator update g (from 0) follows `boost`
    critic updates when g < boost_first or g is a multiple of boost_every (> 0), else `every` of them.
    Stateless in the step, so a resumed run keeps the schedule."""

    boost: int = 0
    boost_first: int = 0
    boost_every: int = 0

    def critic_steps_before(self, g: int) -> int:
        """The critic updates before generator update g + 1, i.e. run by the end of generator update g."""
        k, n, first = self.boost, self.every, self.boost_first
        if g < first:
            return k * (g + 1)
        # Updates first..g: n critic steps each, k for the multiples of boost_every among them.
        boosted = g // self.boost_every - (first - 1) // self.boost_every if self.boost_every else 0
        return k * first + n * (g + 1 - first) + (k - n) * boosted

    def due(self, step: int) -> bool:
        if not self.boost:
            return super().due(step)
        done = step + 1  # critic updates by the end of this step (the D phase runs every step)
        lo, hi = 0, done  # the first g whose critic_steps_before(g) >= done; each update needs >= 1 step
        while lo < hi:
            mid = (lo + hi) // 2
            if self.critic_steps_before(mid) >= done:
                hi = mid
            else:
                lo = mid + 1
        return self.critic_steps_before(lo) == done

    def schedule(self) -> str:
        if not self.boost:
            return super().schedule()
        later = f" and every {self.boost_every}th" if self.boost_every else ""
        return (f"after {self.boost} critic steps for the first {self.boost_first}{later} update, "
                f"else every {self.every} steps")


@register_family
class WGAN(Family):
    name = "wgan"
    summary = "WGAN (Arjovsky et al. 2017): Wasserstein critic, weight clipping 0.01, RMSprop 5e-5, n_critic 5"
    Config = WGANConfig
    default_data = {"name": "shapes", "style": "simple"}  # see the module doc
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
        c = self.config
        return [Phase("D", "D", self.loss_d, after_step=lambda critic: clip_weights(critic, c.clip)),
                CriticScheduledPhase("G", "G", self.loss_g, every=c.n_critic, boost=c.warmup_critic_steps,
                                     boost_first=c.warmup_g_iters, boost_every=c.warmup_every)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real = ctx.batch[self.spec.key]
        fake = ctx.nets["G"](ctx.randn(self.config.latent_dim)).detach()
        # Separate calls: batch norm sees all-real and all-fake batches, as in the reference code.
        real_score, fake_score = ctx.nets["D"](real), ctx.nets["D"](fake)
        loss = d_wasserstein(real_score, fake_score)
        return {"loss": loss, "wdist": -loss.detach()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        return {"loss": g_wasserstein(ctx.nets["D"](ctx.nets["G"](ctx.randn(self.config.latent_dim))))}
