"""pytest-benchmark entry point for instance_norm_act (not part of the test suite):

    .venv/bin/python -m pytest bench/test_instance_norm.py --benchmark-group-by=param:shape

The full comparison (torch.compile, floors, both allocator settings, JSON/Markdown/PNG) is
`gancore bench --suite instance_norm`; this file gives pytest-benchmark's statistics for the same ops.
"""

from __future__ import annotations

import pytest
import torch

from gancore.bench.suites.instance_norm import SHAPES, eager, fused

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("shape", ["pix2pix", "cyclegan-res", "patchgan"])
@pytest.mark.parametrize("contender", ["eager", "gancore"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_forward(benchmark, shape, contender, layout):
    x = torch.randn(SHAPES[shape], device=DEVICE)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    fn = eager if contender == "eager" else fused
    with torch.no_grad():
        benchmark(fn, x)


@pytest.mark.parametrize("shape", ["pix2pix", "cyclegan-res", "patchgan"])
@pytest.mark.parametrize("contender", ["eager", "gancore"])
def test_forward_backward(benchmark, shape, contender):
    x = torch.randn(SHAPES[shape], device=DEVICE, requires_grad=True)
    grad = torch.randn(SHAPES[shape], device=DEVICE)
    fn = eager if contender == "eager" else fused
    benchmark(lambda: torch.autograd.grad(fn(x), x, grad))
