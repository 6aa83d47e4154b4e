"""patchgan_loss on the CPU: the C++ backend (both instruction sets) and the reference path against
eager PyTorch (F.conv2d followed by the loss), values and gradients to h, weight and bias."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gancore import _ext
from gancore.ops import BackendUnavailable, _dispatch, patchgan_loss, record_backends
from tests.helpers import TOL, assert_close

pytestmark = pytest.mark.skipif(not _ext.has("patchgan_loss_forward_cpu"), reason=_ext.LOAD_ERROR or "")

LOSSES = ["lsgan", "bce", "hinge", "wgan"]


def _inputs(shape, dtype=torch.float32, layout="nchw", kernel=4, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if layout == "channels_last":
        h = h.contiguous(memory_format=torch.channels_last)
    C = shape[1]
    w = (torch.randn(1, C, kernel, kernel, generator=g, dtype=torch.float64) / (C * kernel * kernel) ** 0.5)
    b = torch.randn(1, generator=g, dtype=torch.float64) if bias else None
    w = w.to(dtype if dtype == torch.float64 else torch.float32)
    b = b.to(w.dtype) if b is not None else None
    return h, w, b


def eager_patchgan_loss(h, w, b, target, loss, stride=1, padding=1, reduction="mean"):
    """The eager PyTorch code a PatchGAN trainer runs, in float64."""
    z = F.conv2d(h.double(), w.double(), b.double() if b is not None else None, stride=stride, padding=padding)
    t = torch.as_tensor(target, dtype=torch.float64).expand_as(z)
    if loss == "lsgan":
        per_patch = F.mse_loss(z, t, reduction="none")
    elif loss == "bce":
        per_patch = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    elif loss == "hinge":
        per_patch = torch.where(t > 0.5, F.relu(1 - z), F.relu(1 + z))
    else:
        per_patch = torch.where(t > 0.5, -z, z)
    return per_patch.mean() if reduction == "mean" else per_patch.sum() if reduction == "sum" else per_patch


def _check(impl, h, w, b, target, loss, *, stride=1, padding=1, reduction="mean", dtype=torch.float32):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (h, w, b)]
    with record_backends() as ran:
        out = patchgan_loss(*leaves, target, loss=loss, stride=stride, padding=padding, reduction=reduction, impl=impl)
        grad = torch.rand_like(out) + 0.5
        grads = torch.autograd.grad(out, [t for t in leaves if t is not None], grad)
    assert ran == [("patchgan_loss", impl)] * 2
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    leaves64 = [t.detach().double().requires_grad_(True) if t is not None else None for t in (h, w, b)]
    target64 = target.double() if isinstance(target, torch.Tensor) else target
    expected = eager_patchgan_loss(*leaves64, target64, loss, stride, padding, reduction)
    expected_grads = torch.autograd.grad(expected, [t for t in leaves64 if t is not None], grad.double())
    assert out.shape == expected.shape
    # the loss and dweight/dbias sum over every patch: scale the tolerance with the patch count
    count_scale = max(1.0, expected.numel() ** 0.5 / 4, (h.numel() / h.shape[1]) ** 0.5 / 8)
    assert_close(out, expected, dtype if dtype != torch.bfloat16 else torch.float16, scale=count_scale)
    for name, got, want in zip(("h", "weight", "bias"), grads, expected_grads):
        assert got.dtype == (dtype if name == "h" else w.dtype), name
        # dweight/dbias are sums of terms of either sign: an entry that nearly cancels carries the
        # rounding of its largest neighbours, so their tolerance is scaled by the gradient's size
        if name == "h":
            assert_close(got, want, dtype)
        else:
            atol, rtol = TOL[dtype]
            magnitude = max(1.0, float(want.abs().max()))
            torch.testing.assert_close(got.double(), want.double(), atol=atol * count_scale * magnitude,
                                       rtol=rtol * count_scale)
    return grads


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_losses_and_reductions_match_eager(impl, loss, reduction, layout):
    h, w, b = _inputs((2, 16, 31, 31), layout=layout)
    target = 1.0 if loss in ("hinge", "wgan") else 0.9  # label smoothing where it applies
    _check(impl, h, w, b, target, loss, reduction=reduction)
    _check(impl, h, w, b, 0.0, loss, reduction=reduction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,stride,padding", [
    ((1, 8, 31, 31), 1, 1),  # batch 1, the classic 30x30 patch map
    ((2, 5, 63, 63), 1, 1),  # 62x62 patch map, odd channel count
    ((2, 3, 17, 12), 2, 1),  # strided, non-square
    ((3, 20, 6, 7), 1, 2),  # padding larger than usual
    ((1, 4, 4, 4), 1, 0),  # a single patch
    ((2, 2, 9, 10), 3, 0),  # stride 3
])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_shapes_dtypes_and_layouts(impl, dtype, shape, stride, padding, layout):
    h, w, b = _inputs(shape, dtype, layout)
    _check(impl, h, w, b, 1.0, "lsgan", stride=stride, padding=padding, dtype=dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_tensor_targets(impl, loss):
    h, w, b = _inputs((3, 6, 12, 12))
    per_sample = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1, 1)
    _check(impl, h, w, b, per_sample, loss)
    if loss in ("lsgan", "bce"):
        soft_map = torch.rand(3, 1, 11, 11, generator=torch.Generator().manual_seed(5))
        _check(impl, h, w, b, soft_map, loss)


def test_without_bias_and_other_kernel_sizes(impl):
    h, w, _ = _inputs((2, 6, 13, 11), kernel=3, bias=False)
    _check(impl, h, w, None, 1.0, "bce")
    h, w, b = _inputs((2, 6, 13, 11), kernel=1)
    _check(impl, h, w, b, 0.0, "hinge", padding=0)


def test_bce_is_stable_for_large_logits(impl):
    h, w, b = _inputs((2, 4, 8, 8))
    w = w * 1e3  # logits of several hundred
    for target in (0.0, 1.0):
        with record_backends() as ran:
            out = patchgan_loss(h, w, b, target, loss="bce", impl=impl)
        assert ran == [("patchgan_loss", impl)]
        assert torch.isfinite(out)
        torch.testing.assert_close(out.double(), eager_patchgan_loss(h, w, b, target, "bce"), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("impl_name", ["cpu", "ref"])
@pytest.mark.parametrize("loss,target", [("lsgan", 0.9), ("bce", 0.2), ("hinge", 1.0), ("wgan", 0.0)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradcheck_and_gradgradcheck_float64(impl_name, loss, target, layout):
    h, w, b = _inputs((2, 2, 5, 4), torch.float64, layout)
    inputs = tuple(t.requires_grad_(True) for t in (h, w, b))

    def fn(h, w, b):
        return patchgan_loss(h, w, b, target, loss=loss, impl=impl_name)

    with record_backends() as ran:
        assert torch.autograd.gradcheck(fn, inputs)
        if loss in ("lsgan", "bce"):  # hinge and wgan are piecewise linear: second derivative 0 a.e.
            # fast mode: a random projection of the second derivative, the full matrix takes minutes
            assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)
    assert {backend for _, backend in ran} == {impl_name}


def test_weight_gradient_is_deterministic(impl):
    for layout in ("nchw", "channels_last"):
        h, w, b = _inputs((4, 64, 31, 31), layout=layout)
        w.requires_grad_(True)
        with record_backends() as ran:
            first = torch.autograd.grad(patchgan_loss(h, w, b, 1.0, impl=impl), w)[0]
            for _ in range(2):
                assert torch.equal(torch.autograd.grad(patchgan_loss(h, w, b, 1.0, impl=impl), w)[0], first)
        assert ran == [("patchgan_loss", impl)] * 6


def test_non_dense_h_matches_eager(impl):
    base, w, b = _inputs((2, 8, 40, 40))
    h = base[:, :, ::2, 1::2]
    with record_backends() as ran:
        out = patchgan_loss(h, w, b, 1.0, impl=impl)
    assert ran == [("patchgan_loss", impl)]
    torch.testing.assert_close(out.double(), eager_patchgan_loss(h, w, b, 1.0, "lsgan"))


def test_weight_in_low_precision_gets_its_gradient_in_its_dtype(impl):
    h, w, b = _inputs((2, 4, 9, 9))
    w16 = w.to(torch.bfloat16).requires_grad_(True)
    with record_backends() as ran:
        (dw,) = torch.autograd.grad(patchgan_loss(h, w16, b, 1.0, impl=impl), w16)
    assert ran == [("patchgan_loss", impl)] * 2
    assert dw.dtype == torch.bfloat16


def test_multi_scale_is_the_sum_of_the_scales():
    scales = [_inputs((2, 8, s, s), seed=s) for s in (31, 15, 7)]
    hs, ws, bs = (list(t) for t in zip(*scales))
    with record_backends() as ran:
        total = patchgan_loss(hs, ws, bs, 1.0)
    assert ran == [("patchgan_loss", "cpu")] * 3
    expected = sum(patchgan_loss(h, w, b, 1.0) for h, w, b in scales)
    torch.testing.assert_close(total, expected)
    maps = patchgan_loss(hs, ws, None, [1.0, 0.0, 1.0], reduction="none")
    assert [tuple(m.shape) for m in maps] == [(2, 1, 30, 30), (2, 1, 14, 14), (2, 1, 6, 6)]
    with pytest.raises(ValueError, match="weight must be a sequence of 3"):
        patchgan_loss(hs, ws[:2], bs, 1.0)


def test_torch_compile_fullgraph():
    h, w, b = _inputs((2, 8, 15, 15))
    w.requires_grad_(True)

    def step(h, w, b):
        return patchgan_loss(h, w, b, 1.0, loss="bce")

    compiled = torch.compile(step, fullgraph=True)
    with record_backends() as ran:
        out = compiled(h, w, b)
        (dw,) = torch.autograd.grad(out, w)
    assert ("patchgan_loss", "cpu") in ran
    torch.testing.assert_close(out, step(h, w, b))
    torch.testing.assert_close(dw, torch.autograd.grad(step(h, w, b), w)[0])


def test_registered_ops_pass_opcheck():
    h, w, b = _inputs((2, 4, 9, 9))
    h.requires_grad_(True)
    target = torch.ones(()).expand(2, 1, 8, 8)[:, 0]
    dldz = torch.rand(2, 8, 8)
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    ops = torch.ops.gancore
    torch.library.opcheck(ops.patchgan_loss_fwd, (h, w, b, target, 1, 1, 1, 1, "cpu"), test_utils=tests)
    torch.library.opcheck(ops.patchgan_loss_bwd, (torch.tensor(1.0), h.detach(), w, b, target, dldz, 1, 1, 1, 1,
                                                  "cpu", True), test_utils=tests)


# ---- bad input ---------------------------------------------------------------------------------------


H, W, B = torch.randn(2, 8, 10, 10), torch.randn(1, 8, 4, 4), torch.randn(1)


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((H, torch.randn(2, 8, 4, 4), B, 1.0), {}, ValueError,
     r"weight must have shape \(1, 8, KH, KW\).*got \(2, 8, 4, 4\) \(PatchGAN scoring has one output channel\)"),
    ((H, torch.randn(1, 4, 4, 4), B, 1.0), {}, ValueError, r"weight must have shape \(1, 8, KH, KW\)"),
    ((H.long(), W, B, 1.0), {}, TypeError, "h must be a floating-point tensor, got torch.int64"),
    ((H, W.int(), B, 1.0), {}, TypeError, "weight must be floating point"),
    ((H[0], W, B, 1.0), {}, ValueError, r"h must be a \(N, C, H, W\) tensor, got \(8, 10, 10\)"),
    ((H, W, torch.randn(2), 1.0), {}, ValueError, r"bias must have shape \(1,\), got \(2,\)"),
    ((H, W, B, 1.0), {"loss": "mse"}, ValueError, "loss must be one of"),
    ((H, W, B, 1.0), {"reduction": "max"}, ValueError, "reduction must be one of"),
    ((H, W, B, 0.9), {"loss": "hinge"}, ValueError, "takes target 1 \\(real\\) or 0 \\(fake\\), got 0.9"),
    ((H, W, B, torch.tensor(0.5)), {"loss": "hinge"}, ValueError, "takes targets 1 .* tensor holding 0.5"),
    ((H, W, B, torch.tensor([[[[1.0]]], [[[2.0]]]])), {"loss": "wgan"}, ValueError, "tensor holding 2.0"),
    ((H, torch.randn(1, 8, 0, 0), B, 1.0), {}, ValueError, "kernel must be at least 1x1, got 0x0"),
    ((torch.randn(2, 8, 10, 0), W, B, 1.0), {"padding": 2}, ValueError, "non-empty plane, got \\(2, 8, 10, 0\\)"),
    ((H, W, B, torch.ones(3, 1, 1, 1)), {}, ValueError, r"target of shape \(3, 1, 1, 1\) does not broadcast"),
    ((H, W, B, "real"), {}, TypeError, "target must be a float or a tensor"),
    ((H, W, B, 1.0), {"stride": 0}, ValueError, "stride must be an int >= 1"),
    ((torch.randn(1, 8, 1, 1), W, B, 1.0), {"padding": 0}, ValueError, "smaller than the 4x4 kernel"),
    ((H, W.to("meta"), B, 1.0), {}, ValueError, "weight is on meta but h is on cpu"),
    ((H, W, B, torch.ones(1, device="meta")), {}, ValueError, "target is on meta"),
])
def test_bad_input_names_the_problem(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        patchgan_loss(*args, **kwargs)


def test_cpu_kernel_rejects_bad_arguments_without_crashing():
    target = torch.ones(()).expand(2, 9, 9)
    with pytest.raises(RuntimeError, match="weight must be a contiguous"):
        _ext._C.patchgan_loss_forward_cpu(H, W.double(), B, target, 0, 1, 1, 1)
    with pytest.raises(RuntimeError, match=r"target must be a \(2, 9, 9\) tensor"):
        _ext._C.patchgan_loss_forward_cpu(H, W, B, torch.ones(2, 8, 8), 0, 1, 1, 1)
    with pytest.raises(RuntimeError, match="contiguous or channels-last"):
        _ext._C.patchgan_loss_forward_cpu(H[:, :, ::2], W, B, target, 0, 1, 1, 1)
    with pytest.raises(RuntimeError, match="unknown loss kind"):
        _ext._C.patchgan_loss_forward_cpu(H, W, B, target, 9, 1, 1, 1)
    with pytest.raises(RuntimeError, match="dz must be a contiguous"):
        _ext._C.patchgan_loss_backward_cpu(torch.ones(2, 3, 3), H, W, 1, 1, True)


def test_fallback_without_extension_warns_and_is_correct(monkeypatch):
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "gancore._C did not load (simulated)")
    monkeypatch.setattr(_dispatch._OPS["patchgan_loss"], "warned", set())
    with pytest.warns(RuntimeWarning, match="patchgan_loss: falling back.*simulated"):
        with record_backends() as ran:
            out = patchgan_loss(H, W, B, 1.0)
    assert ran == [("patchgan_loss", "ref")]
    torch.testing.assert_close(out.double(), eager_patchgan_loss(H, W, B, 1.0, "lsgan"), rtol=1e-6, atol=1e-5)
    with pytest.raises(BackendUnavailable, match="'cpu' cannot run"):
        patchgan_loss(H, W, B, 1.0, impl="cpu")


def test_double_backward_leaves_no_reference_cycle():
    """The backward of the backward frees its residuals on return (no garbage for the cyclic gc)."""
    import gc

    h, w, _ = _inputs((2, 4, 9, 9))
    h.requires_grad_(True)

    def second_order():
        (dh,) = torch.autograd.grad(patchgan_loss(h, w, None, 0.9, loss="bce"), h, create_graph=True)
        dh.square().sum().backward()

    second_order()  # first calls create lasting objects (imports, caches)
    gc.collect()
    gc.disable()
    try:
        second_order()
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("loss", ["hinge", "wgan"])
def test_tensor_targets_of_zero_and_one_equal_float_targets(impl, loss):
    per_sample = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    with record_backends() as ran:
        mixed = patchgan_loss(H, W, B, per_sample, loss=loss, reduction="none", impl=impl)
        real = patchgan_loss(H, W, B, 1.0, loss=loss, reduction="none", impl=impl)
        fake = patchgan_loss(H, W, B, torch.tensor(0.0), loss=loss, reduction="none", impl=impl)
    assert {backend for _, backend in ran} == {impl}
    torch.testing.assert_close(mixed, torch.cat([real[:1], fake[1:]]))
