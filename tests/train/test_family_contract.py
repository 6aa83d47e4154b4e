"""A family written here, in the test, trains through the unchanged trainer and CLI."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from gancore.families import get_family, list_families, register_family
from gancore.families.base import ConfigError, DataSpec, Family, Network, Phase
from gancore.losses import d_nonsaturating, g_nonsaturating
from gancore.train import Trainer, build_config
from tests.train.trainhelpers import QUIET


@dataclass
class ToyConfig:
    g_every: int = 2
    reg_every: int = 3
    lr: float = 0.01


@register_family
class ToyGaussian(Family):
    """A linear generator against a linear discriminator on one 2-D Gaussian, with a lazy regulariser."""

    name = "toy-gaussian"
    summary = "test family: linear G and D, D every step, G every g_every, Dreg every reg_every"
    Config = ToyConfig
    default_data = {"name": "ring", "modes": 1, "radius": 3.0, "std": 0.5, "size": 256}

    calls: list = []

    def build(self, spec: DataSpec) -> dict[str, Network]:
        self.spec = spec
        return {"G": Network(nn.Linear(4, spec.shape[0]), lr=self.config.lr, ema=True),
                "D": Network(nn.Sequential(nn.Linear(spec.shape[0], 8), nn.Tanh(), nn.Linear(8, 1)),
                             lr=self.config.lr, betas=(0.5, 0.9))}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g, every=self.config.g_every),
                Phase("Dreg", "D", self.loss_reg, every=self.config.reg_every)]

    def _record(self, phase, ctx):
        trainable = {n for n, m in ctx.nets.items() if any(p.requires_grad for p in m.parameters())}
        self.calls.append((ctx.step, phase, ctx.batch[self.spec.key].shape, frozenset(trainable)))

    def loss_d(self, ctx):
        self._record("D", ctx)
        fake = ctx.nets["G"](ctx.randn(4))
        return {"loss": d_nonsaturating(ctx.nets["D"](ctx.batch["x"])[:, 0], ctx.nets["D"](fake)[:, 0])}

    def loss_g(self, ctx):
        self._record("G", ctx)
        return {"loss": g_nonsaturating(ctx.nets["D"](ctx.nets["G"](ctx.randn(4)))[:, 0])}

    def loss_reg(self, ctx):
        self._record("Dreg", ctx)
        weights = torch.cat([p.flatten() for p in ctx.nets["D"].parameters()])
        penalty = weights.square().sum() * 1e-3 * self.config.reg_every  # lazy: scaled by its interval
        return {"loss": penalty, "weight_norm": weights.detach().norm()}

    def make_latents(self, n, generator, device):
        return torch.randn(n, 4, generator=generator, device=device)

    def generate(self, nets, latents):
        return nets["G"](latents)


def test_a_family_defined_outside_the_package_trains_with_its_phases(tmp_path):
    ToyGaussian.calls.clear()
    assert get_family("toy_gaussian") is ToyGaussian and "toy-gaussian" in list_families()
    config = build_config("toy-gaussian", overrides=QUIET + ["train.steps=6", "train.batch_size=8",
                                                             "train.accumulate=2", "log.every=3"])
    trainer = Trainer(config, str(tmp_path))
    before = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
    trainer.fit()
    schedule = {}
    for step, phase, shape, trainable in ToyGaussian.calls:
        assert shape == (4, 2)  # one accumulation round of this process's share
        assert trainable == {"D" if phase in ("D", "Dreg") else "G"}  # the other network is frozen
        schedule.setdefault(phase, []).append(step)
    assert schedule["D"] == [s for s in range(6) for _ in range(2)]
    assert schedule["G"] == [s for s in (1, 3, 5) for _ in range(2)]
    assert schedule["Dreg"] == [s for s in (2, 5) for _ in range(2)]
    assert trainer.ema["G"].updates == 3
    assert any(not torch.equal(before[k], v) for k, v in trainer.nets["G"].state_dict().items())
    log = (tmp_path / "log.jsonl").read_text()
    assert '"Dreg/weight_norm"' in log and '"G/loss"' in log
    assert (tmp_path / "samples" / "final.png").exists()  # 2-D points: a scatter plot


@dataclass
class ClippedConfig:
    optimizer: str = "rmsprop"
    clip: float = 0.01


@register_family
class ToyClipped(Family):
    """A linear critic under RMSprop with weight clipping after every update (WGAN's recipe), G under SGD."""

    name = "toy-clipped"
    summary = "test family: RMSprop critic clipped to +-clip after each update, SGD generator"
    Config = ClippedConfig
    default_data = {"name": "ring", "modes": 1, "radius": 3.0, "std": 0.5, "size": 256}
    clipped_steps: list = []

    def build(self, spec: DataSpec) -> dict[str, Network]:
        self.spec = spec
        return {"G": Network(nn.Linear(4, spec.shape[0]), lr=0.05, optimizer="sgd", momentum=0.5),
                "D": Network(nn.Linear(spec.shape[0], 1), lr=0.05, optimizer=self.config.optimizer)}

    def _clip(self, module: nn.Module) -> None:
        assert not torch.is_grad_enabled()
        self.clipped_steps.append(1)
        for p in module.parameters():
            p.clamp_(-self.config.clip, self.config.clip)

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d, after_step=self._clip), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx):
        fake = ctx.nets["G"](ctx.randn(4))
        return {"loss": ctx.nets["D"](fake).mean() - ctx.nets["D"](ctx.batch["x"]).mean()}

    def loss_g(self, ctx):
        return {"loss": -ctx.nets["D"](ctx.nets["G"](ctx.randn(4))).mean()}

    def make_latents(self, n, generator, device):
        return torch.randn(n, 4, generator=generator, device=device)

    def generate(self, nets, latents):
        return nets["G"](latents)


def test_networks_get_the_optimiser_they_ask_for_and_phases_run_their_after_step(tmp_path):
    ToyClipped.clipped_steps.clear()
    trainer = Trainer(build_config("toy-clipped", overrides=QUIET + ["train.steps=3", "train.batch_size=8"]))
    assert type(trainer.optimizers["D"]) is torch.optim.RMSprop
    assert type(trainer.optimizers["G"]) is torch.optim.SGD
    assert trainer.optimizers["G"].param_groups[0]["momentum"] == 0.5
    assert "RMSprop(lr=0.05" in trainer.plan() and "SGD(lr=0.05, momentum=0.5)" in trainer.plan()
    trainer.fit()
    assert len(ToyClipped.clipped_steps) == 3
    weights = torch.cat([p.flatten() for p in trainer.nets["D"].parameters()])
    assert weights.abs().max() <= 0.01 and weights.abs().max() > 0  # clipped, and lr 0.05 pushed it there


def test_an_unknown_optimiser_is_a_config_error_naming_the_network():
    with pytest.raises(ConfigError, match="optimiser of 'D' must be one of"):
        Trainer(build_config("toy-clipped", overrides=QUIET + ["model.optimizer=lbfgs"]))
