"""The PatchGAN Triton kernels run for real under TRITON_INTERPRET=1 (tests/conftest.py) on CPU tensors."""

from __future__ import annotations

import os

import pytest
import torch

from gancore.ops import patchgan_loss, record_backends
from tests.helpers import assert_close
from tests.ops.test_patchgan import eager_patchgan_loss

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton kernels run on the CPU only under TRITON_INTERPRET=1")


def _inputs(shape, dtype, layout, kernel=4):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if layout == "channels_last":
        h = h.contiguous(memory_format=torch.channels_last)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    w = (torch.randn(1, shape[1], kernel, kernel, generator=g, dtype=torch.float64) * 0.2).to(acc)
    return h, w, torch.randn(1, generator=g, dtype=torch.float64).to(acc)


@pytest.mark.parametrize("loss", ["lsgan", "bce", "hinge", "wgan"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shape,layout,stride,padding", [
    ((2, 5, 11, 10), "nchw", 1, 1),
    ((2, 5, 11, 10), "channels_last", 1, 1),
    ((1, 40, 9, 9), "channels_last", 2, 1),  # more channels than one block, strided
    ((1, 3, 4, 4), "nchw", 1, 0),  # a single patch
])
def test_triton_matches_eager(loss, reduction, shape, layout, stride, padding):
    h, w, b = _inputs(shape, torch.float32, layout)
    target = 1.0 if loss in ("hinge", "wgan") else 0.9
    leaves = [t.clone().requires_grad_(True) for t in (h, w, b)]
    with record_backends() as ran:
        out = patchgan_loss(*leaves, target, loss=loss, stride=stride, padding=padding, reduction=reduction,
                            impl="triton")
        grad = torch.rand_like(out) + 0.5
        grads = torch.autograd.grad(out, leaves, grad)
    assert ran == [("patchgan_loss", "triton")] * 2
    leaves64 = [t.detach().double().requires_grad_(True) for t in (h, w, b)]
    expected = eager_patchgan_loss(*leaves64, target, loss, stride, padding, reduction)
    expected_grads = torch.autograd.grad(expected, leaves64, grad.double())
    assert_close(out, expected, torch.float32, scale=4.0)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, torch.float32, scale=8.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_triton_dtypes_and_tensor_targets(dtype):
    h, w, b = _inputs((3, 6, 8, 8), dtype, "nchw", kernel=3)
    target = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1, 1)
    out = patchgan_loss(h, w, b, target, loss="bce", impl="triton")
    expected = eager_patchgan_loss(h, w, b, target, "bce")
    assert_close(out, expected, dtype if dtype == torch.float64 else torch.float32, scale=4.0)
