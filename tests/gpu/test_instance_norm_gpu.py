"""On a CUDA device: the Triton and CUDA backends against the reference path (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from gancore import _ext
from gancore.ops import instance_norm_act, record_backends
from tests.helpers import assert_close

pytestmark = pytest.mark.gpu

SHAPES = [(8, 64, 128, 128), (1, 256, 64, 64), (1, 512, 31, 31), (2, 3, 7, 13), (4, 5, 1, 1)]


def _backends():
    yield "triton"
    if _ext.cuda_built():
        yield "cuda"


@pytest.mark.parametrize("impl", list(_backends()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gpu_backend_matches_reference(impl, dtype, layout, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape, device="cuda") * 2 + 3).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(shape[1], device="cuda") + 0.5
    b = torch.randn(shape[1], device="cuda")
    r = torch.randn(shape, device="cuda").to(dtype)
    grad = torch.randn(shape, device="cuda").to(dtype)
    results = {}
    for backend in (impl, "ref"):
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b, r)]
        with record_backends() as ran:
            out = instance_norm_act(*leaves[:3], residual=leaves[3], impl=backend)
            grads = torch.autograd.grad(out, leaves, grad)
        assert {name for _, name in ran} == {backend}
        results[backend] = (out, grads)
    out, grads = results[impl]
    ref_out, ref_grads = results["ref"]
    assert_close(out, ref_out, dtype, scale=2.0)
    scale = max(2.0, (x.numel() / shape[1]) ** 0.5 / 8)
    for got, want in zip(grads, ref_grads):
        assert_close(got, want, dtype, scale=scale)


def test_auto_picks_a_fused_gpu_backend():
    with record_backends() as ran:
        instance_norm_act(torch.randn(2, 3, 8, 8, device="cuda"))
    assert ran[0][1] in ("triton", "cuda")
