"""On a CUDA device: the Triton and CUDA PatchGAN backends against the reference path (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from gancore import _ext
from gancore.ops import patchgan_loss, record_backends
from tests.helpers import assert_close

pytestmark = pytest.mark.gpu

SHAPES = [(1, 512, 31, 31), (16, 512, 31, 31), (2, 256, 63, 63), (3, 5, 8, 9)]


def _backends():
    yield "triton"
    if _ext.cuda_built():
        yield "cuda"


@pytest.mark.parametrize("impl", list(_backends()))
@pytest.mark.parametrize("loss", ["lsgan", "bce", "hinge", "wgan"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gpu_backend_matches_reference(impl, loss, dtype, layout, shape):
    torch.manual_seed(0)
    h = torch.randn(shape, device="cuda").to(dtype)
    if layout == "channels_last":
        h = h.contiguous(memory_format=torch.channels_last)
    w = torch.randn(1, shape[1], 4, 4, device="cuda") / (16 * shape[1]) ** 0.5
    b = torch.randn(1, device="cuda")
    target = 1.0 if loss in ("hinge", "wgan") else 0.9
    results = {}
    for backend in (impl, "ref"):
        leaves = [t.detach().clone().requires_grad_(True) for t in (h, w, b)]
        with record_backends() as ran:
            out = patchgan_loss(*leaves, target, loss=loss, impl=backend)
            grads = torch.autograd.grad(out, leaves)
        assert {name for _, name in ran} == {backend}
        results[backend] = (out, grads)
    (out, grads), (ref_out, ref_grads) = results[impl], results["ref"]
    scale = max(2.0, (h.numel() / shape[1]) ** 0.5 / 8)
    assert_close(out, ref_out, torch.float32, scale=scale)
    for got, want in zip(grads, ref_grads):
        assert_close(got, want, dtype if got.dtype == dtype else torch.float32, scale=scale)


def test_auto_picks_a_fused_gpu_backend():
    h, w = torch.randn(2, 8, 9, 9, device="cuda"), torch.randn(1, 8, 4, 4, device="cuda")
    with record_backends() as ran:
        patchgan_loss(h, w, None, 1.0)
    assert ran[0][1] in ("triton", "cuda")
