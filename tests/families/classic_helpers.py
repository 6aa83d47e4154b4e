"""Checks shared by the tests of the classic families (cgan, wgan, wgan-gp, lapgan, vae-gan)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gancore.data import RingOfGaussians, Shapes
from gancore.data.base import GanDataset
from gancore.metrics import fid_from_features, wasserstein_distance
from gancore.nn import fuse
from gancore.ops import record_backends
from gancore.train import Trainer, build_config


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _run(net: nn.Module, inputs: tuple[torch.Tensor, ...], call: Callable, seed: int) -> list[torch.Tensor]:
    """Output, the floating inputs' gradients and all parameter gradients of <call(net, *inputs), g>."""
    dtype = next(net.parameters()).dtype
    inputs = tuple(x.detach().to(dtype, copy=True).requires_grad_() if x.is_floating_point() else x
                   for x in inputs)
    net.zero_grad(set_to_none=True)
    out = call(net, *inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out * g.to(dtype)).sum().backward()
    grads = [x.grad for x in inputs if x.is_floating_point()]
    params = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return [out.detach(), *grads, params]


def assert_fused_matches_plain(plain: nn.Module, inputs: tuple[torch.Tensor, ...],
                               call: Callable = lambda net, *x: net(*x), fused_norms: int | None = None) -> None:
    """fuse(plain) against plain in train mode: float64 equal (~1e-12) for outputs and all gradients, float32
    no further from float64 than eager float32 is (norm-wise), and the fused batch norm ran on the C++ kernels."""
    plain64 = copy.deepcopy(plain).double().train()
    fused64 = fuse(copy.deepcopy(plain64))
    report = fused64.gancore_fused
    assert report.fused and not report.unfused, str(report)
    if fused_norms is not None:
        assert len(report.fused) == fused_norms, str(report)
    assert fused64.state_dict().keys() == plain64.state_dict().keys()
    plain32 = copy.deepcopy(plain64).float()
    fused32 = fuse(copy.deepcopy(plain32))
    oracle = _run(plain64, inputs, call, seed=2)
    with record_backends() as ran:
        exact = _run(fused64, inputs, call, seed=2)
    assert {op for op, _ in ran} >= {"batch_norm_act"} and {b for _, b in ran} == {"cpu"}, ran
    eager32, gancore32 = _run(plain32, inputs, call, seed=2), _run(fused32, inputs, call, seed=2)
    for i, (o, f, e, g) in enumerate(zip(oracle, exact, eager32, gancore32)):
        assert _rel(f, o) < 1e-12, f"tensor {i}: fused float64 differs from plain float64 by {_rel(f, o):.2e}"
        assert 1e-10 < _rel(e, o) < 1e-3, _rel(e, o)  # float32 really ran
        assert _rel(g, o) <= 1.5 * _rel(e, o) + 1e-7, (
            f"tensor {i}: fused float32 is {_rel(g, o):.2e} from float64, eager float32 {_rel(e, o):.2e}")


class DrawnShapes(GanDataset):
    """The built-in shapes drawn once into memory (training then reads no PIL drawing), with the tensors at hand."""

    num_classes = Shapes.num_classes

    def __init__(self, size: int, resolution: int, seed: int) -> None:
        data = Shapes(size=size, resolution=resolution, seed=seed)
        self.images = torch.stack([data[i]["image"] for i in range(size)])
        self.labels = torch.tensor([data[i]["label"] for i in range(size)])

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, seed: int) -> dict:
        return {"image": self.images[index], "label": int(self.labels[index])}


def frechet(extractor: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance of two image sets in the built-in extractor's features."""
    with torch.no_grad():
        return float(fid_from_features(extractor(a.float()).numpy(), extractor(b.float()).numpy()))


def critic_estimate_on_the_ring(family: str, overrides: list[str], out_dir: str) -> tuple[np.ndarray, float, float]:
    """Train `family` on the built-in ring (log every 25 steps) and return the 100-step means of its critic's
    D/wdist, and the exact W1 of 512 generated points to 512 held-out ring points before and after."""
    config = build_config(family, data="ring", overrides=overrides + [
        "train.ema_beta=0", "log.every=25", "log.progress=false", "log.tensorboard=false"])
    trainer = Trainer(config, out_dir)
    reference = RingOfGaussians(size=512, seed=77).points.numpy()
    latents = trainer.family.make_latents(512, torch.Generator().manual_seed(1), trainer.device)

    def w1() -> float:
        return wasserstein_distance(trainer.generate(latents).numpy(), reference, method="exact",
                                    exact_limit=512)

    w1_initial = w1()
    trainer.fit()
    w1_final = w1()
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        estimate = np.array([json.loads(line)["D/wdist"] for line in f])
    return np.convolve(estimate, np.ones(4) / 4, mode="valid"), w1_initial, w1_final
