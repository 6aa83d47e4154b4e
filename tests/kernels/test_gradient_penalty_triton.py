"""The gradient-penalty Triton kernels run for real under TRITON_INTERPRET=1 (tests/conftest.py) on CPU tensors."""

from __future__ import annotations

import os

import pytest
import torch

from gancore.ops import gp_interpolate, gradient_norm_penalty, record_backends
from tests.helpers import assert_close

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton kernels run on the CPU only under TRITON_INTERPRET=1")

CASES = [((3, 2, 7, 5), "nchw"), ((3, 2, 7, 5), "channels_last"), ((1, 9000), "nchw"), ((2, 1, 1, 1), "nchw")]


def _batch(shape, dtype, layout, seed):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,layout", CASES)
def test_interpolate_matches_eager(shape, layout, dtype):
    real, fake, grad = (_batch(shape, dtype, layout, s) for s in range(3))
    real.requires_grad_(True)
    fake.requires_grad_(True)
    alpha = torch.rand(shape[0], dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                       requires_grad=True)
    with record_backends() as ran:
        out = gp_interpolate(real, fake, alpha, impl="triton")
        grads = torch.autograd.grad(out, (real, fake, alpha), grad)
    assert ran == [("gp_interpolate", "triton")] * 2
    assert out.stride() == real.stride()
    leaves = [t.detach().double().requires_grad_(True) for t in (real, fake, alpha)]
    a = leaves[2].view(-1, *([1] * (len(shape) - 1)))
    expected = a * leaves[0] + (1 - a) * leaves[1]
    expected_grads = torch.autograd.grad(expected, leaves, grad.double())
    assert_close(out, expected, dtype)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, dtype, scale=8.0)


@pytest.mark.parametrize("kind", ["wgan-gp", "wgan-gp-one-sided", "r1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,layout", CASES)
def test_norm_penalty_matches_eager(shape, layout, dtype, kind):
    g = (_batch(shape, dtype, layout, 0).double() * 0.5).to(dtype).requires_grad_(True)
    with record_backends() as ran:
        p = gradient_norm_penalty(g, kind=kind, weight=4.0, center=1.0, inv_scale=2.0, impl="triton")
        (dg,) = torch.autograd.grad(p, g)
    assert ran == [("gradient_norm_penalty", "triton")] * 2
    g64 = g.detach().double().requires_grad_(True)
    norm = (g64 * 2.0).flatten(1).norm(dim=1)
    d = norm - 1.0 if kind == "wgan-gp" else (norm - 1.0).clamp_min(0)
    expected = 2.0 * norm.square().mean() if kind == "r1" else 4.0 * d.square().mean()
    (expected_dg,) = torch.autograd.grad(expected, g64)
    torch.testing.assert_close(p.double(), expected, rtol=1e-5 if dtype != torch.float64 else 1e-12, atol=1e-6)
    assert_close(dg, expected_dg, dtype)


def test_gradgradcheck_float64():
    g = (torch.randn(2, 3, 4, dtype=torch.float64) * 0.4).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda g: gradient_norm_penalty(g, impl="triton"), (g,))
