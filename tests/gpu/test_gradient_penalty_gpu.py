"""On a CUDA device: the Triton and CUDA gradient-penalty backends against the reference path
(skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gancore import _ext
from gancore.nn import InstanceNormAct2d
from gancore.ops import gp_interpolate, gradient_norm_penalty, gradient_penalty, record_backends
from tests.helpers import assert_close

pytestmark = pytest.mark.gpu

SHAPES = [(8, 3, 128, 128), (1, 3, 256, 256), (4, 1, 7, 9), (3, 200000)]


def _backends():
    yield "triton"
    if _ext.cuda_built():
        yield "cuda"


def _batch(shape, dtype, layout, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(shape, device="cuda", generator=gen).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" and x.dim() == 4 else x


@pytest.mark.parametrize("impl", list(_backends()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gpu_backends_match_reference(impl, dtype, layout, shape):
    real, fake, grad = (_batch(shape, dtype, layout, s) for s in range(3))
    alpha = torch.rand(shape[0], device="cuda")
    results = {}
    for backend in (impl, "ref"):
        leaves = [t.detach().clone().requires_grad_(True) for t in (real, fake, alpha)]
        with record_backends() as ran:
            out = gp_interpolate(*leaves, impl=backend)
            grads = torch.autograd.grad(out, leaves, grad)
            g = (out.detach().float() * 0.01).to(dtype).requires_grad_(True)
            p = gradient_norm_penalty(g, kind="wgan-gp", inv_scale=0.5, impl=backend)
            (dg,) = torch.autograd.grad(p, g)
        assert {name for _, name in ran} == {backend}
        results[backend] = (out, grads, p, dg)
    got, want = results[impl], results["ref"]
    assert_close(got[0], want[0], dtype)
    for a, b in zip(got[1], want[1]):
        assert_close(a, b, dtype, scale=max(1.0, (real[0].numel() ** 0.5) / 8))
    torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-5)
    assert_close(got[3], want[3], dtype, scale=2.0)


def test_penalty_through_a_critic_on_the_gpu():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), InstanceNormAct2d(16, affine=True), nn.Conv2d(16, 1, 4)).cuda()
    real, fake = torch.randn(4, 3, 32, 32, device="cuda"), torch.randn(4, 3, 32, 32, device="cuda")
    penalties = {}
    for impl in (*_backends(), "ref"):
        gen = torch.Generator(device="cuda").manual_seed(1)
        penalties[impl] = gradient_penalty(critic, real, fake, generator=gen, impl=impl)
    for impl, p in penalties.items():
        torch.testing.assert_close(p, penalties["ref"], rtol=1e-4, atol=1e-5, msg=impl)


def test_auto_picks_a_fused_gpu_backend():
    with record_backends() as ran:
        gradient_norm_penalty(torch.randn(2, 3, 8, 8, device="cuda"))
    assert ran[0][1] in ("triton", "cuda")
