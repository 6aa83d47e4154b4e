"""The batch-norm Triton kernels run for real under TRITON_INTERPRET=1 (set in tests/conftest.py) on CPU tensors."""

from __future__ import annotations

import os

import pytest
import torch

from gancore.ops import batch_norm_act, record_backends
from tests.helpers import assert_close
from tests.ops.test_batch_norm import eager_batch_norm_act

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton kernels run on the CPU only under TRITON_INTERPRET=1")

CASES = [
    ((3, 6, 7, 5), "nchw"),
    ((3, 6, 7, 5), "channels_last"),
    ((2, 70, 3, 3), "channels_last"),  # more channels than one channel block
    ((1, 3, 40, 40), "nchw"),  # batch 1: the planes are split into slices
    ((5, 4), "nchw"),  # (N, C)
]


@pytest.mark.parametrize("shape,layout,dtype,training",
                         [(s, lay, dt, True) for s, lay in CASES for dt in (torch.float32, torch.float64)]
                         + [((3, 6, 7, 5), "channels_last", torch.float16, True),
                            ((3, 6, 7, 5), "nchw", torch.float32, False),
                            ((2, 70, 3, 3), "channels_last", torch.float64, False)])
def test_triton_matches_eager(shape, layout, dtype, training):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + 3).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    C = shape[1]
    w, b = (torch.rand(C, generator=g) + 0.5).to(dtype), torch.randn(C, generator=g).to(dtype)
    a = torch.linspace(-0.2, 0.3, C).to(dtype)
    r = torch.randn(shape, generator=g).to(dtype)
    rm, rv = torch.randn(C, dtype=torch.float64, generator=g), torch.rand(C, dtype=torch.float64, generator=g) + 0.5
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    buffers = [rm.to(acc, copy=True), rv.to(acc, copy=True)]
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b, a, r)]
    grad = torch.randn(shape, generator=g).to(dtype)
    with record_backends() as ran:
        out = batch_norm_act(*leaves[:3], *buffers, training=training, activation="prelu", prelu_weight=leaves[3],
                             residual=leaves[4], impl="triton")
        grads = torch.autograd.grad(out, leaves, grad)
    assert ran == [("batch_norm_act", "triton")] * 2
    assert out.stride() == x.stride()

    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, w, b, a, r)]
    buffers64 = [rm.clone(), rv.clone()]
    expected = eager_batch_norm_act(*leaves64[:3], *buffers64, training=training, activation="prelu",
                                    prelu_weight=leaves64[3], residual=leaves64[4])
    expected_grads = torch.autograd.grad(expected, leaves64, grad.double())
    assert_close(out, expected, dtype)
    reduce_scale = max(4.0, (x.numel() / C) ** 0.5 / 8)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, dtype, scale=reduce_scale)
    for got, want in zip(buffers, buffers64):
        assert_close(got, want, acc)


def test_triton_large_offset_and_leaky_without_affine():
    x = torch.randn(4, 5, 20, 20, dtype=torch.float32) * 2 + 1e4
    out = batch_norm_act(x, None, None, None, None, training=True, impl="triton")
    expected = eager_batch_norm_act(x.double(), None, None, None, None, training=True)
    torch.testing.assert_close(out.double(), expected, atol=2e-3, rtol=0)
