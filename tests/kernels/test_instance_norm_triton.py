"""The Triton kernels run for real under TRITON_INTERPRET=1 (set in tests/conftest.py) on CPU tensors."""

from __future__ import annotations

import os

import pytest
import torch

from gancore.ops import instance_norm_act, record_backends
from tests.helpers import assert_close, eager_instance_norm_act

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton kernels run on the CPU only under TRITON_INTERPRET=1")

CASES = [
    ((2, 6, 7, 5), "nchw"),
    ((2, 6, 7, 5), "channels_last"),
    ((1, 70, 3, 3), "channels_last"),  # more channels than one channel block
    ((2, 3, 1, 1), "nchw"),  # H*W == 1
    ((2, 4, 33), "nchw"),  # 1-D
    ((1, 2, 3, 4, 5), "channels_last"),  # 3-D
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,layout", CASES)
def test_triton_matches_eager(shape, layout, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + 3).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    C = shape[1]
    w, b = (torch.rand(C, generator=g) + 0.5).to(dtype), torch.randn(C, generator=g).to(dtype)
    r = torch.randn(shape, generator=g).to(dtype)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b, r)]
    grad = torch.randn(shape, generator=g).to(dtype)
    with record_backends() as ran:
        out = instance_norm_act(*leaves[:3], residual=leaves[3], impl="triton")
        grads = torch.autograd.grad(out, leaves, grad)
    assert ran == [("instance_norm_act", "triton")] * 2
    assert out.stride() == x.stride()

    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, w, b, r)]
    expected = eager_instance_norm_act(*leaves64[:3], residual=leaves64[3])
    expected_grads = torch.autograd.grad(expected, leaves64, grad.double(), materialize_grads=True)
    assert_close(out, expected, dtype)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, dtype, scale=4.0)


def test_triton_large_offset():
    x = torch.randn(2, 4, 40, 40, dtype=torch.float32) * 2 + 1e4
    out = instance_norm_act(x, impl="triton")
    torch.testing.assert_close(out.double(), eager_instance_norm_act(x.double()), atol=2e-3, rtol=0)


def test_triton_without_affine_and_residual():
    x = torch.randn(2, 5, 6, 7)
    with record_backends() as ran:
        out = instance_norm_act(x, impl="triton", activation="relu")
    assert ran == [("instance_norm_act", "triton")]
    assert_close(out, eager_instance_norm_act(x, activation="relu"), torch.float32)
