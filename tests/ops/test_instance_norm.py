"""instance_norm_act on the CPU: the C++ backend and the reference path against eager PyTorch."""

from __future__ import annotations

import pytest
import torch

from gancore import _ext
from gancore.ops import instance_norm_act, record_backends
from tests.helpers import assert_close, eager_instance_norm_act

pytestmark = pytest.mark.skipif(not _ext.has("instance_norm_act_forward_cpu"), reason=_ext.LOAD_ERROR or "")

# shapes from real GAN models, then odd ones
SHAPES = [
    (2, 64, 32, 32),  # pix2pix encoder block (reduced)
    (1, 256, 16, 16),  # CycleGAN residual block (reduced)
    (2, 3, 7, 13),  # odd plane, C=3
    (3, 5, 1, 1),  # H*W == 1
    (2, 4, 33),  # 1-D
    (1, 3, 4, 5, 6),  # 3-D
    (1, 8, 600, 3),  # plane longer than one statistics chunk, not a multiple of it
]


def _inputs(shape, dtype, layout, affine=True, residual=True, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    C = shape[1]
    w = (torch.rand(C, generator=g) + 0.5).to(dtype) if affine else None
    b = torch.randn(C, generator=g).to(dtype) if affine else None
    r = torch.randn(shape, generator=g).to(dtype) if residual else None
    return x, w, b, r


def _layouts(shape):
    return ("nchw", "channels_last") if len(shape) in (4, 5) else ("nchw",)


CASES = [(s, lay) for s in SHAPES for lay in _layouts(s)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,layout", CASES)
def test_forward_backward_match_eager(impl, dtype, shape, layout):
    x, w, b, r = _inputs(shape, dtype, layout)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b, r)]
    with record_backends() as ran:
        out = instance_norm_act(*leaves[:3], residual=leaves[3], impl=impl)
        grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        grads = torch.autograd.grad(out, leaves, grad)
    assert {backend for _, backend in ran} == {impl}
    assert len(ran) == 2  # forward and backward both ran the fused kernels
    assert out.dtype == dtype and out.shape == x.shape and out.stride() == x.stride()

    # oracle: float64 eager PyTorch on the same (rounded) inputs
    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, w, b, r)]
    expected = eager_instance_norm_act(*leaves64[:3], residual=leaves64[3])
    expected_grads = torch.autograd.grad(expected, leaves64, grad.double(), materialize_grads=True)
    assert_close(out, expected, dtype)
    affine_tol = _affine_grad_tolerance(*leaves64[:3], grad.double(), dtype)
    for name, got, want in zip(("x", "weight", "bias", "residual"), grads, expected_grads):
        assert got.dtype == dtype, name
        if name in affine_tol:
            rtol, atol = affine_tol[name]
            assert ((got.double() - want).abs() <= 2 * (rtol * want.abs() + atol)).all(), name
        else:
            assert_close(got, want, dtype)


UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def _affine_grad_tolerance(x, weight, bias, grad, dtype, slope=0.2):
    """(rtol, atol) of dweight and dbias: a sum of n = N*H*W terms accumulated in float32 (float64 for
    float64), then rounded once to `dtype`. Summation error <= n * u_acc * sum|terms|; rounding <= u_dtype."""
    dims = tuple(range(2, x.dim()))
    x = x.detach()
    mean = x.mean(dims, keepdim=True)
    xhat = (x - mean) * ((x - mean).square().mean(dims, keepdim=True) + 1e-5).rsqrt()
    shape = (1, -1) + (1,) * len(dims)
    y = xhat * weight.detach().view(shape) + bias.detach().view(shape)
    dy = grad * torch.where(y > 0, 1.0, slope)
    n = x.numel() // x.shape[1]
    u_acc = UNIT_ROUNDOFF[torch.float64 if dtype == torch.float64 else torch.float32]
    u_out = UNIT_ROUNDOFF[dtype]
    sum_dims = (0, *dims)
    return {"weight": (u_out, n * u_acc * (dy * xhat).abs().sum(sum_dims)),
            "bias": (u_out, n * u_acc * dy.abs().sum(sum_dims))}


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "identity"])
@pytest.mark.parametrize("affine,residual", [(False, False), (True, False), (False, True)])
def test_activations_and_optional_arguments(activation, affine, residual):
    x, w, b, r = _inputs((2, 6, 9, 11), torch.float32, "nchw", affine=affine, residual=residual)
    with record_backends() as ran:
        out = instance_norm_act(x, w, b, residual=r, activation=activation, negative_slope=0.1)
    assert ran == [("instance_norm_act", "cpu")]
    expected = eager_instance_norm_act(x, w, b, residual=r, activation=activation, negative_slope=0.1)
    assert_close(out, expected, torch.float32)


def test_identity_activation_is_exact_instance_norm(impl):
    x, w, b, _ = _inputs((2, 6, 9, 11), torch.float64, "nchw")
    with record_backends() as ran:
        out = instance_norm_act(x, w, b, activation="identity", impl=impl)
    assert ran == [("instance_norm_act", impl)]
    torch.testing.assert_close(out, torch.nn.functional.instance_norm(x, weight=w, bias=b), atol=1e-12, rtol=0)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_large_offset_keeps_statistics_exact(impl, layout):
    # mean 1e4, std 2: a one-pass E[x^2] - E[x]^2 in float32 would lose every digit of the variance
    x, w, b, _ = _inputs((2, 8, 64, 64), torch.float32, layout, residual=False, offset=1e4)
    with record_backends() as ran:
        out = instance_norm_act(x, w, b, impl=impl)
    assert ran == [("instance_norm_act", impl)]
    expected = eager_instance_norm_act(x.double(), w, b)
    # inputs near 1e4 carry float32 rounding of ~5e-4 absolute, i.e. ~2.5e-4 after normalising
    torch.testing.assert_close(out.double(), expected, atol=2e-3, rtol=0)
    assert torch.isfinite(out).all()


def test_spatial_size_one_gives_bias_through_activation(impl):
    x, w, b, _ = _inputs((4, 6, 1, 1), torch.float32, "nchw", residual=False)
    with record_backends() as ran:
        out = instance_norm_act(x, w, b, negative_slope=0.3, impl=impl)
    assert ran == [("instance_norm_act", impl)]
    expected = torch.nn.functional.leaky_relu(b, 0.3).view(1, -1, 1, 1).expand_as(x)
    torch.testing.assert_close(out, expected)


def test_non_dense_input_matches_eager(impl):
    base = torch.randn(2, 8, 20, 30)
    x = base[:, ::2, :, ::3]  # neither contiguous nor channels-last
    with record_backends() as ran:
        out = instance_norm_act(x, impl=impl)
    assert ran == [("instance_norm_act", impl)]
    assert_close(out, eager_instance_norm_act(x), torch.float32)


def test_residual_in_another_layout_is_matched(impl):
    x, w, b, r = _inputs((2, 6, 8, 8), torch.float32, "channels_last")
    with record_backends() as ran:
        out = instance_norm_act(x, w, b, residual=r.contiguous(), impl=impl)
    assert ran == [("instance_norm_act", impl)]
    assert_close(out, eager_instance_norm_act(x, w, b, residual=r), torch.float32)


def test_weight_gradient_is_deterministic(impl):
    x, w, b, _ = _inputs((4, 32, 24, 24), torch.float32, "channels_last", residual=False)
    w.requires_grad_(True)
    g = torch.randn_like(x)
    with record_backends() as ran:
        first = torch.autograd.grad(instance_norm_act(x, w, b, impl=impl), w, g)[0]
        for _ in range(3):
            assert torch.equal(torch.autograd.grad(instance_norm_act(x, w, b, impl=impl), w, g)[0], first)
    assert {backend for _, backend in ran} == {impl} and len(ran) == 8


@pytest.mark.parametrize("impl", ["cpu", "ref"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradcheck_and_gradgradcheck_float64(impl, layout):
    x, w, b, r = _inputs((2, 3, 4, 5), torch.float64, layout)
    inputs = tuple(t.requires_grad_(True) for t in (x, w, b, r))

    def fn(x, w, b, r):
        return instance_norm_act(x, w, b, residual=r, impl=impl, negative_slope=0.3)

    with record_backends() as ran:
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)
    assert {backend for _, backend in ran} == {impl}


@pytest.mark.parametrize("impl", ["cpu", "ref"])
def test_gradgradcheck_without_affine(impl):
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    with record_backends() as ran:
        assert torch.autograd.gradgradcheck(lambda t: instance_norm_act(t, activation="relu", impl=impl), (x,))
    assert {backend for _, backend in ran} == {impl}


def test_gradient_penalty_through_the_op_matches_eager(impl):
    """WGAN-GP differentiates through the op twice: penalty gradients must match eager PyTorch."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)

    def penalty(use_fused):
        h = conv(x)
        out = instance_norm_act(h, w, None, impl=impl) if use_fused else eager_instance_norm_act(h, w, None)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        p = (g.flatten(1).norm(dim=1) - 1).square().mean()
        return torch.autograd.grad(p, [w, *conv.parameters()])

    with record_backends() as ran:
        fused = penalty(True)
    assert {backend for _, backend in ran} == {impl}
    for got, want in zip(fused, penalty(False)):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def test_torch_compile_fullgraph():
    from gancore.nn import InstanceNormAct2d

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), InstanceNormAct2d(8, affine=True),
                                torch.nn.Conv2d(8, 1, 3))
    x = torch.randn(2, 3, 12, 12)
    compiled = torch.compile(model, fullgraph=True)
    with record_backends() as ran:
        out = compiled(x)
        out.sum().backward()
    assert ("instance_norm_act", "cpu") in ran
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback report")
def test_backends_report():
    report = __import__("gancore").ops.backends()["instance_norm_act"]
    assert report["cpu"]["impl"] == "cpu"
    assert report["cuda"]["impl"] == "ref" and "no CUDA device" in report["cuda"]["reason"]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_large_float32_with_odd_planes_matches_eager(impl, layout):
    """>= 16 MiB of float32 output is written with non-temporal stores by the AVX2 kernels; an odd
    plane size (191 x 193) puts plane starts off the 32-byte grid, so the scalar head and tail run too."""
    x, w, b, r = _inputs((2, 64, 191, 193), torch.float32, layout)
    assert x.numel() * 4 >= 16 << 20
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b, r)]
    grad = torch.empty_like(x).normal_(generator=torch.Generator().manual_seed(2))
    out = instance_norm_act(*leaves[:3], residual=leaves[3], impl=impl)
    dx = torch.autograd.grad(out, leaves[0], grad)[0]
    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, w, b, r)]
    expected = eager_instance_norm_act(*leaves64[:3], residual=leaves64[3])
    expected_dx = torch.autograd.grad(expected, leaves64[0], grad.double())[0]
    assert_close(out, expected, torch.float32, scale=2.0)
    assert_close(dx, expected_dx, torch.float32, scale=2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_return_stats_gives_the_biased_instance_statistics(impl, dtype, layout):
    x, w, b, _ = _inputs((2, 5, 6, 7), dtype, layout, offset=3.0)
    x.requires_grad_(True)
    eps = 1e-3
    with record_backends() as ran:
        out, mean, rstd = instance_norm_act(x, w, b, eps=eps, return_stats=True, impl=impl)
    assert ran == [("instance_norm_act", impl)]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert mean.shape == rstd.shape == (2, 5) and mean.dtype == rstd.dtype == acc
    assert not mean.requires_grad and not rstd.requires_grad and out.requires_grad
    x64 = x.detach().double()
    want_mean = x64.mean((2, 3))
    want_rstd = (x64.var((2, 3), unbiased=False) + eps).rsqrt()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(mean.double(), want_mean, rtol=tol, atol=tol)
    assert torch.allclose(rstd.double(), want_rstd, rtol=tol, atol=tol)
    assert torch.equal(out, instance_norm_act(x, w, b, eps=eps, impl=impl))
