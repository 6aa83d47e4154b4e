"""Non-finite losses and gradients: the update is skipped and counted; too many in a row stop the run."""

import argparse
import json
import math
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from gancore.families import register_family
from gancore.families.base import DataSpec, Family, Network, Phase
from gancore.losses import d_nonsaturating, g_nonsaturating
from gancore.train import NonFiniteLossError, Trainer, build_config
from gancore.train import checkpoint as ckpt
from gancore.train.cli import register
from tests.train.trainhelpers import QUIET


class _NaNGradient(torch.autograd.Function):
    """Identity whose backward is NaN: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@dataclass
class FlakyConfig:
    nan_loss_steps: list[int] = field(default_factory=list)
    nan_grad_steps: list[int] = field(default_factory=list)
    nan_from: int = -1


@register_family
class Flaky(Family):
    name = "flaky"
    summary = "test family whose discriminator loss or gradient goes non-finite at chosen steps"
    Config = FlakyConfig
    default_data = {"name": "ring", "size": 64}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        self.spec = spec
        return {"G": Network(nn.Linear(2, 2), lr=0.01), "D": Network(nn.Linear(2, 1), lr=0.01)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx):
        c = self.config
        real_score = ctx.nets["D"](ctx.batch["x"])[:, 0]
        if ctx.step in c.nan_grad_steps:
            real_score = _NaNGradient.apply(real_score)
        loss = d_nonsaturating(real_score, ctx.nets["D"](ctx.nets["G"](ctx.randn(2)))[:, 0])
        if ctx.step in c.nan_loss_steps or 0 <= c.nan_from <= ctx.step:
            loss = loss * float("nan")
        return {"loss": loss}

    def loss_g(self, ctx):
        return {"loss": g_nonsaturating(ctx.nets["D"](ctx.nets["G"](ctx.randn(2)))[:, 0])}

    def make_latents(self, n, generator, device):
        return torch.randn(n, 2, generator=generator, device=device)

    def generate(self, nets, latents):
        return nets["G"](latents)


def _config(*sets, steps):
    return build_config("flaky", overrides=QUIET + [f"train.steps={steps}", "train.batch_size=4", *sets])


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    trainer = Trainer(_config("model.nan_loss_steps=[1]", "model.nan_grad_steps=[3]", "log.every=2",
                              "train.nonfinite_patience=2", steps=6), str(tmp_path))
    for step in range(6):
        d_before = {k: v.clone() for k, v in trainer.nets["D"].state_dict().items()}
        g_before = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
        skipped = trainer.train_step()
        d_same = all(torch.equal(d_before[k], v) for k, v in trainer.nets["D"].state_dict().items())
        g_same = all(torch.equal(g_before[k], v) for k, v in trainer.nets["G"].state_dict().items())
        assert skipped == (["D"] if step in (1, 3) else [])
        assert d_same == (step in (1, 3)) and not g_same  # only the bad phase's update is dropped
    assert trainer.nonfinite_steps == 2
    trainer.fit(steps=8)
    assert all(torch.isfinite(v).all() for m in trainer.nets.values() for v in m.state_dict().values())
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert last["nonfinite_steps"] == 2.0
    assert math.isnan(json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])["D/loss"])


def test_too_many_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    config = _config("model.nan_from=4", "log.checkpoint_every=2", "train.nonfinite_patience=3", steps=20)
    trainer = Trainer(config, str(tmp_path))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "stopped at step 7: 3 steps in a row had a non-finite loss" in message
    assert ckpt.checkpoint_name(4) in message
    latest = ckpt.latest_checkpoint(str(tmp_path))
    assert latest.endswith(ckpt.checkpoint_name(4))  # nothing was saved during the bad streak
    state = ckpt.load_checkpoint(latest)
    assert all(torch.isfinite(v).all() for net in state["nets"].values() for v in net.values())
    resumed = Trainer(_config("log.checkpoint_every=2", steps=6), str(tmp_path), resume=True, force=True)
    resumed.fit()  # the good checkpoint carries on, without the fault
    assert resumed.step == 6 and resumed.nonfinite_steps == 0


def test_the_cli_reports_the_stop_clearly(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "flaky", "--out", str(tmp_path), "--steps", "9", "--batch-size", "4",
                              "--set", "model.nan_from=0", "--set", "train.nonfinite_patience=2",
                              "--set", "log.progress=false"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "gancore train: error: stopped at step 2: 2 steps in a row" in err
    assert err.count("steps in a row") == 1  # printed once, not by the trainer and again by the CLI
    assert "Last good checkpoint: none written yet" in err
