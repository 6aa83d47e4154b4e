"""The C++ autograd nodes of the cpu backend's eager path (csrc/cpu/autograd.cpp) against the Python
autograd.Functions they replace: the same kernels, so bit-identical outputs, gradients and running
buffers; double backward through the registered backward op; backend records in both directions."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint

from gancore import _ext
from gancore.ops import batch_norm as bn_module
from gancore.ops import batch_norm_act, instance_norm_act, record_backends
from gancore.ops import instance_norm as in_module

pytestmark = pytest.mark.skipif(not _ext.has("batch_norm_act_autograd_cpu"), reason=_ext.LOAD_ERROR or "")


def _x(shape, layout="nchw", dtype=torch.float32, seed=0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype) * 1.5 + 0.3
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _channel(C, seed, shift=0.0):
    return torch.rand(C, generator=torch.Generator().manual_seed(seed)) + shift


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _assert_identical(got, want):
    for a, b in zip(got, want, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b) and a.stride() == b.stride()


def test_eager_cpu_calls_build_one_cpp_node_and_the_reference_a_python_one():
    x = _x((2, 4, 5, 5)).requires_grad_(True)
    rm, rv = torch.zeros(4), torch.ones(4)
    assert "InstanceNormActNode" in instance_norm_act(x, impl="cpu").grad_fn.name()
    assert "BatchNormActNode" in batch_norm_act(x, None, None, rm, rv, training=True, impl="cpu").grad_fn.name()
    assert "Node" not in instance_norm_act(x, impl="ref").grad_fn.name()
    # buffers the kernels cannot update in place go through the Python Function (and a temporary)
    half = batch_norm_act(x, None, None, rm.half(), rv.half(), training=True, impl="cpu")
    assert "Node" not in half.grad_fn.name()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation,prelu", [("leaky_relu", 0), ("relu", 0), ("prelu", 1), ("prelu", 6)])
def test_batch_norm_node_equals_the_python_function(layout, training, activation, prelu):
    shape = (3, 6, 5, 4)
    x, r = _x(shape, layout), _x(shape, layout, seed=1)
    w, b = _channel(6, 2, 0.5), _channel(6, 3, -0.5)
    a = torch.linspace(-0.2, 0.3, prelu) if prelu else None
    grad = _x(shape, seed=4)  # NCHW: for channels-last outputs the kernels take a copy
    results = []
    for native in (True, False):
        leaves = _leaves(x, w, b, r) + (_leaves(a) if a is not None else [])
        buffers = [_channel(6, 5), _channel(6, 6, 0.5)]
        args = (leaves[0], leaves[1], leaves[2], leaves[4] if a is not None else None, leaves[3], *buffers,
                training, 0.1, 1e-5, 0.2 if activation == "leaky_relu" else 0.0, "cpu")
        with record_backends() as ran:
            out = bn_module._run(args) if native else bn_module._BatchNormActFn.apply(*args)
            grads = torch.autograd.grad(out, leaves, grad)
        assert ran == [("batch_norm_act", "cpu")] * 2
        assert ("BatchNormActNode" in out.grad_fn.name()) == native
        results.append((out, *grads, *buffers))
    _assert_identical(*results)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("affine,residual", [(False, False), (True, False), (True, True)])
def test_instance_norm_node_equals_the_python_function(layout, affine, residual):
    shape = (2, 5, 6, 7)
    x, r = _x(shape, layout), _x(shape, layout, seed=1)
    w, b = _channel(5, 2, 0.5), _channel(5, 3, -0.5)
    grad = _x(shape, seed=4)
    results = []
    for native in (True, False):
        leaves = _leaves(x, *((w, b) if affine else ()), *((r,) if residual else ()))
        it = iter(leaves[1:])
        wl, bl = (next(it), next(it)) if affine else (None, None)
        rl = next(it) if residual else None
        args = (leaves[0], wl, bl, rl, 1e-5, 0.2, "cpu")
        with record_backends() as ran:
            out, mean, rstd = (in_module._native_forward(*args) if native
                               else in_module._InstanceNormAct.apply(*args))
            grads = torch.autograd.grad(out, leaves, grad)
        assert ran == [("instance_norm_act", "cpu")] * 2
        assert ("InstanceNormActNode" in out.grad_fn.name()) == native
        assert not mean.requires_grad and not rstd.requires_grad
        results.append((out, mean, rstd, *grads))
    _assert_identical(*results)


def test_gradients_of_a_sum_arrive_with_zero_strides_and_are_copied():
    x = _x((2, 3, 4, 4), "channels_last").requires_grad_(True)
    w = _channel(3, 1, 0.5).requires_grad_(True)
    instance_norm_act(x, w, impl="cpu").sum().backward()
    batch_norm_act(x, w, None, None, None, training=True, impl="cpu").sum().backward()
    x64, w64 = x.detach().double().requires_grad_(True), w.detach().double().requires_grad_(True)
    instance_norm_act(x64, w64, impl="ref").sum().backward()
    batch_norm_act(x64, w64, None, None, None, training=True, impl="ref").sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad.double(), w64.grad, atol=1e-4, rtol=1e-5)


def test_only_the_inputs_that_need_a_gradient_get_one():
    x = _x((2, 3, 4, 4))
    w = _channel(3, 1, 0.5).requires_grad_(True)
    (dw_in,) = torch.autograd.grad(instance_norm_act(x, w, impl="cpu").square().sum(), w)
    (dw_bn,) = torch.autograd.grad(batch_norm_act(x, w, None, None, None, training=True, impl="cpu").square().sum(), w)
    w64 = w.detach().double().requires_grad_(True)
    (want_in,) = torch.autograd.grad(instance_norm_act(x.double(), w64, impl="ref").square().sum(), w64)
    (want_bn,) = torch.autograd.grad(
        batch_norm_act(x.double(), w64, None, None, None, training=True, impl="ref").square().sum(), w64)
    torch.testing.assert_close(dw_in.double(), want_in, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(dw_bn.double(), want_bn, atol=1e-4, rtol=1e-5)


def _critic(norm):
    """A tiny critic whose norm is the fused op; its input gradient's norm is a WGAN-GP penalty."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    head = torch.nn.Linear(4 * 6 * 6, 1).double()

    def score(x, impl):
        h = conv(x)
        if norm == "instance":
            h = instance_norm_act(h, impl=impl)
        else:
            h = batch_norm_act(h, None, None, None, None, training=True, impl=impl)
        return head(h.flatten(1))

    return score, [conv.weight, conv.bias, head.weight]  # the penalty does not depend on head.bias


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_double_backward_goes_through_the_registered_op_and_matches_the_reference(norm):
    score, params = _critic(norm)
    x = _x((3, 3, 6, 6), dtype=torch.float64)
    penalties = []
    for impl in ("cpu", "ref"):
        xi = x.clone().requires_grad_(True)
        with record_backends() as ran:
            (g,) = torch.autograd.grad(score(xi, impl).sum(), xi, create_graph=True)
            penalty = (g.flatten(1).norm(dim=1) - 1).square().mean()
            grads = torch.autograd.grad(penalty, params)
        # the forward and the graph-building backward (the registered op; its own backward, the double
        # backward, is the reference formulas' vector-Jacobian product on every backend)
        assert {b for _, b in ran} == {impl} and len(ran) == 2
        penalties.append((penalty, *grads))
    for got, want in zip(*penalties):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def test_non_reentrant_checkpoint_recomputes_the_node_and_gives_the_same_gradients():
    x = _x((2, 4, 6, 6)).requires_grad_(True)
    w = _channel(4, 1, 0.5).requires_grad_(True)

    def block(t):
        return instance_norm_act(batch_norm_act(t, w, None, None, None, training=True, impl="cpu"), impl="cpu")

    plain = torch.autograd.grad(block(x).square().sum(), (x, w))
    checkpointed = torch.autograd.grad(
        torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False).square().sum(), (x, w))
    _assert_identical(plain, checkpointed)
