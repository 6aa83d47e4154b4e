"""Tiny configurations and parameter comparisons shared by the trainer tests."""

import torch

from gancore.train import build_config

TINY = {
    "dcgan": ["model.resolution=8", "model.g_width=4", "model.d_width=4", "model.latent_dim=8"],
    "wgan-gp": ["model.mlp_width=16", "model.mlp_depth=2", "model.latent_dim=4", "model.n_critic=2"],
}
TINY_DATA = {"wgan-gp": "ring"}
QUIET = ["log.progress=false", "log.tensorboard=false", "log.report=false"]  # tests/report covers the report


def tiny_config(family="dcgan", *overrides, steps=4, batch_size=8, data=None):
    """A resolved config of `family` with tiny networks; `overrides` are --set strings."""
    sets = TINY.get(family, []) + QUIET + [f"train.steps={steps}", f"train.batch_size={batch_size}"]
    return build_config(family, data=data or TINY_DATA.get(family), overrides=sets + list(overrides))


def tiny_args(family="dcgan"):
    """The same tiny settings as `gancore train` arguments."""
    args = [a for s in TINY.get(family, []) + QUIET for a in ("--set", s)]
    return args + (["--data", TINY_DATA[family]] if family in TINY_DATA else [])


def parameters(trainer):
    """Every network's parameters and buffers, by name."""
    return {f"{n}.{k}": v.detach().clone()
            for n, m in trainer.nets.items() for k, v in m.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def use_sgd(trainer):
    """Swap every network's optimiser for plain SGD at the same learning rate. Adam divides by its second
    moment and so cannot see a constant factor on the gradients; SGD's update is the gradient, so tests of
    gradient accumulation and of multi-process runs compare exactly what was summed."""
    trainer.optimizers = {name: torch.optim.SGD(trainer.nets[name].parameters(), lr=trainer.specs[name].lr)
                          for name in trainer.optimizers}
    return trainer
