"""fuse() on the reference pix2pix / CycleGAN networks (built plain, then fused): every instance norm is fused,
the residual adds run inside the fused op, and the fused network computes the same function.

Oracle: float64. The fused float64 network equals the plain float64 one (~1e-12); in float32 the fused
network is no further from float64 than eager float32 is, norm-wise."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from gancore.models.pix2pix import NLayerDiscriminator, PixelDiscriminator, ResnetBlock, ResnetGenerator, UnetGenerator
from gancore.nn import BatchNormAct2d, InstanceNormAct2d, fuse
from gancore.ops import record_backends

# name: (plain network, input shape, residual adds, instance norms)
CASES = {
    "resnet_6blocks": (lambda: ResnetGenerator(ngf=8, n_blocks=6, fused=False), (1, 3, 32, 32), 6, 17),
    "resnet_9blocks": (lambda: ResnetGenerator(ngf=8, n_blocks=9, fused=False), (1, 3, 32, 32), 9, 23),
    "unet_instance": (lambda: UnetGenerator(num_downs=5, ngf=8, norm="instance", fused=False), (1, 3, 64, 64), 0, 7),
    "nlayer_D": (lambda: NLayerDiscriminator(3, ndf=8, fused=False), (2, 3, 32, 32), 0, 3),
    "pixel_D": (lambda: PixelDiscriminator(6, ndf=8, norm="instance", fused=False), (2, 6, 16, 16), 0, 1),
}


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _ops(net: nn.Module, x: torch.Tensor) -> Counter[str]:
    with torch.no_grad(), _CountOps() as counter:
        net(x)
    return counter.ops


@pytest.mark.parametrize("name", list(CASES))
def test_every_instance_norm_and_residual_add_is_fused(name):
    make, shape, n_res, n_norms = CASES[name]
    torch.manual_seed(0)
    plain = make()
    fused = fuse(copy.deepcopy(plain))
    assert not [m for m in fused.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert sum(isinstance(m, InstanceNormAct2d) for m in fused.modules()) == n_norms
    report = fused.gancore_fused
    assert len(report.fused) == n_norms and len(report.residual) == n_res and not report.unfused
    assert fused.state_dict().keys() == plain.state_dict().keys()

    x = torch.randn(shape)
    plain_ops, fused_ops = _ops(plain, x), _ops(fused, x)
    assert plain_ops["aten.add.Tensor"] - fused_ops["aten.add.Tensor"] == n_res  # the adds are inside the op
    with torch.no_grad(), record_backends() as ran:  # the eager path runs the kernels without the custom op
        fused(x)
    assert Counter(ran) == {("instance_norm_act", "cpu"): n_norms}
    with record_backends() as ran:
        fused(x).sum().backward()
    assert Counter(ran) == {("instance_norm_act", "cpu"): 2 * n_norms}  # forward and backward, C++ kernels


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _run(net: nn.Module, x: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """output, input gradient and all parameter gradients of <out, g> for a fixed random cotangent g."""
    dtype = next(net.parameters()).dtype
    x = x.detach().to(dtype, copy=True).requires_grad_()
    out = net(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out * g.to(dtype)).sum().backward()
    return [out.detach(), x.grad, torch.cat([p.grad.flatten() for p in net.parameters()])]


@pytest.mark.parametrize("name", list(CASES))
def test_fused_matches_float64_oracle(name):
    make, shape, _, _ = CASES[name]
    torch.manual_seed(1)
    plain64 = make().double()
    fused64 = fuse(copy.deepcopy(plain64))
    plain32 = copy.deepcopy(plain64).float()
    fused32 = fuse(copy.deepcopy(plain32))
    x = torch.randn(shape, dtype=torch.float64)
    oracle = _run(plain64, x, seed=2)
    exact = _run(fused64, x, seed=2)
    eager32, gancore32 = _run(plain32, x, seed=2), _run(fused32, x, seed=2)
    for what, o, f, e, g in zip(("output", "input grad", "param grads"), oracle, exact, eager32, gancore32):
        assert _rel(f, o) < 1e-12, f"{what}: fused float64 differs from plain float64 by {_rel(f, o):.2e}"
        assert 1e-9 < _rel(e, o) < 1e-4  # float32 really ran
        assert _rel(g, o) <= 1.5 * _rel(e, o) + 1e-7, (
            f"{what}: fused float32 is {_rel(g, o):.2e} from float64, eager float32 {_rel(e, o):.2e}")


def test_default_configs_structure():
    """The full-size reference networks (on the meta device: no weights allocated) fuse completely."""
    with torch.device("meta"):
        resnet = ResnetGenerator()
        unet = UnetGenerator(norm="instance")
        patch = NLayerDiscriminator()
        unet_batch = UnetGenerator()
    blocks = [m for m in resnet.modules() if isinstance(m, ResnetBlock)]
    assert len(blocks) == 9 and len(resnet.gancore_fused.residual) == 9 and not resnet.gancore_fused.unfused
    assert len({type(b) for b in blocks}) == 1 and type(blocks[0]) is not ResnetBlock  # one generated subclass
    acts = Counter(m.activation for m in resnet.modules() if isinstance(m, InstanceNormAct2d))
    assert acts == {"relu": 5 + 9, "identity": 9}
    # U-Net: the 6 inner down-norms take the next level's in-place LeakyReLU, the 7 up-norms stand alone
    acts = Counter(m.activation for m in unet.modules() if isinstance(m, InstanceNormAct2d))
    assert acts == {"leaky_relu": 6, "identity": 7} and not unet.gancore_fused.unfused
    assert sum(type(m) is nn.LeakyReLU for m in unet.modules()) == 1  # the outermost level's input has no norm
    assert Counter(m.activation for m in patch.modules() if isinstance(m, InstanceNormAct2d)) == {"leaky_relu": 3}
    # the default U-Net's batch norms fuse like its instance norms
    assert not unet_batch.gancore_fused.unfused
    acts = Counter(m.activation for m in unet_batch.modules() if isinstance(m, BatchNormAct2d))
    assert acts == {"leaky_relu": 6, "identity": 7}
