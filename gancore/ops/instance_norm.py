"""Fused instance normalisation + activation (+ residual): the op every pix2pix, CycleGAN and StarGAN
block spends its normalisation time in.

    out = act(F.instance_norm(x, weight, bias, eps)) + residual

Backends (same semantics): "ref" (PyTorch ops, the oracle), "cpu" (gancore._C), "triton"
(gancore.kernels.instance_norm), "cuda" (gancore._C built with CUDA). Registered as the custom ops
gancore::instance_norm_act_fwd / _bwd, so torch.compile(fullgraph=True) keeps a model whole; eager
calls take the same kernels through plain autograd.Functions (see _dispatch.call).
The backward is a fused kernel too; the backward of the backward (WGAN-GP, R1) is computed from the
reference formulas through torch.autograd.grad (gancore.ops._vjp), differentiable to any order.
"""

from __future__ import annotations

import torch

from gancore import _ext
from gancore.ops import _dispatch
from gancore.ops._checks import check_channel_vector, check_eps, check_residual, check_slope
from gancore.ops._vjp import vjp

OP = "instance_norm_act"
_dispatch.register_op(OP, cpu="instance_norm_act_forward_cpu", cuda="instance_norm_act_forward_cuda",
                      triton="instance_norm")

# All three activations are leaky_relu with a slope: identity is slope 1 (exact), relu slope 0.
ACTIVATIONS = ("leaky_relu", "relu", "identity")


def instance_norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    eps: float = 1e-5,
    activation: str = "leaky_relu",
    negative_slope: float = 0.2,
    residual: torch.Tensor | None = None,
    impl: str = "auto",
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """act(instance_norm(x) * weight + bias) + residual over the spatial dims of (N, C, *spatial).

    Statistics are biased (like nn.InstanceNorm) and accumulated in float32 (float64 for float64
    inputs). Contiguous and channels-last inputs run without copies; other strides are copied once.
    With return_stats=True, returns (out, mean, rstd): the (N, C) per-instance statistics in the
    accumulation dtype, rstd = 1 / sqrt(biased_var + eps), detached (e.g. to update running
    buffers without a second pass over x).
    """
    slope = _validate(x, weight, bias, residual, eps, activation, negative_slope)
    backend = _dispatch.choose(OP, impl, x.device)
    x = _dense(x)
    if residual is not None:
        residual = _like(residual, x)
    acc = _acc_dtype(x.dtype)
    w = _as_param(weight, acc)
    b = _as_param(bias, acc)
    args = (x, w, b, residual, float(eps), slope, backend)
    out, mean, rstd = _dispatch.call(torch.ops.gancore.instance_norm_act_fwd, _InstanceNormAct, _forward_impl,
                                     args, (x, w, b, residual), _native_forward if backend == "cpu" else None)
    if return_stats:
        return out, mean.detach(), rstd.detach()
    return out


def _validate(x, weight, bias, residual, eps, activation, negative_slope) -> float:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"instance_norm_act: x must be a tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4, 5):
        raise ValueError(f"instance_norm_act: x must be (N, C, *spatial) with 1 to 3 spatial dims, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"instance_norm_act: x must be a floating-point tensor, got {x.dtype}")
    spatial = x.shape[2:].numel()
    if spatial == 0 or x.shape[1] == 0:
        raise ValueError(f"instance_norm_act: x needs at least one channel and one spatial element, "
                         f"got shape {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        check_channel_vector(OP, name, t, x)
    check_residual(OP, residual, x)
    if activation not in ACTIVATIONS:
        raise ValueError(f"instance_norm_act: activation must be one of {ACTIVATIONS}, got {activation!r}")
    check_eps(OP, eps)
    if activation != "leaky_relu":
        return 0.0 if activation == "relu" else 1.0
    return check_slope(OP, negative_slope)


def _as_param(t: torch.Tensor | None, acc: torch.dtype) -> torch.Tensor | None:
    """weight/bias as the kernels take them: contiguous, in the accumulation dtype (no-op when already)."""
    if t is None or (t.dtype == acc and t.is_contiguous()):
        return t
    return t.to(acc).contiguous()


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _channels_last_order(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.dim()), 1)


def is_channels_last(x: torch.Tensor) -> bool:
    """True when x is laid out (N, *spatial, C) contiguously (and not also plainly contiguous)."""
    return not x.is_contiguous() and x.permute(_channels_last_order(x)).is_contiguous()


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x itself when contiguous or channels-last; else one contiguous copy."""
    return x if x.is_contiguous() or is_channels_last(x) else x.contiguous()


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t with exactly x's strides (the kernels walk both with one index)."""
    if t.stride() == x.stride():
        return t
    return torch.empty_like(x).copy_(t)


# ---- reference formulas (the oracle, and the source of the double backward) -------------------


def _stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    dims = tuple(range(2, x.dim()))
    xf = x.to(_acc_dtype(x.dtype))
    mean = xf.mean(dims, keepdim=True)
    var = (xf - mean).square().mean(dims, keepdim=True)  # two-pass: no E[x^2] - E[x]^2
    return mean, torch.rsqrt(var + eps)


def _affine_shape(t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.view(1, -1, *([1] * (x.dim() - 2)))


def ref_forward(x, weight, bias, residual, eps: float, slope: float):
    mean, rstd = _stats(x, eps)
    y = (x.to(mean.dtype) - mean) * rstd
    if weight is not None:
        y = y * _affine_shape(weight, x)
    if bias is not None:
        y = y + _affine_shape(bias, x)
    y = torch.where(y > 0, y, y * slope)
    if residual is not None:
        y = y + residual.to(y.dtype)
    N, C = x.shape[:2]
    return y.to(x.dtype), mean.reshape(N, C), rstd.reshape(N, C)


def ref_backward(grad, x, weight, bias, eps: float, slope: float):
    """(dx, dweight, dbias) in differentiable PyTorch ops; statistics recomputed from x."""
    dims = tuple(range(2, x.dim()))
    mean, rstd = _stats(x, eps)
    xhat = (x.to(mean.dtype) - mean) * rstd
    w = _affine_shape(weight, x)
    y = xhat * w if w is not None else xhat
    if bias is not None:
        y = y + _affine_shape(bias, x)
    dy = grad.to(mean.dtype) * torch.where(y > 0, y.new_ones(()), y.new_full((), slope))
    mean_dy = dy.mean(dims, keepdim=True)
    mean_dy_xhat = (dy * xhat).mean(dims, keepdim=True)
    dx = dy - mean_dy - xhat * mean_dy_xhat
    dx = dx * rstd * w if w is not None else dx * rstd
    sum_dims = (0, *dims)
    dweight = (dy * xhat).sum(sum_dims) if weight is not None else x.new_zeros(0, dtype=mean.dtype)
    dbias = dy.sum(sum_dims) if bias is not None else x.new_zeros(0, dtype=mean.dtype)
    return dx.to(x.dtype), dweight, dbias


# ---- backends ------------------------------------------------------------------------------------


def _forward_impl(x, weight, bias, residual, eps, slope, impl):
    if impl == "ref":
        out, mean, rstd = ref_forward(x, weight, bias, residual, eps, slope)
        out = torch.empty_like(x).copy_(out)  # the kernels' layout: x's strides
    elif impl == "cpu":
        out, mean, rstd = _ext._C.instance_norm_act_forward_cpu(x, weight, bias, residual, eps, slope)
    elif impl == "cuda":
        out, mean, rstd = _ext._C.instance_norm_act_forward_cuda(x, weight, bias, residual, eps, slope)
    elif impl == "triton":
        from gancore.kernels import instance_norm as kernels

        out, mean, rstd = kernels.forward(x, weight, bias, residual, eps, slope)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(OP, impl)
    return out, mean, rstd


def _native_forward(x, weight, bias, residual, eps, slope, impl):
    """The cpu backend's eager path with gradients: one C++ autograd node (csrc/cpu/autograd.cpp),
    whose backward runs the same kernels as _InstanceNormAct's, or the backward custom op when a graph
    of the backward is built."""
    _dispatch.note_ran(OP, impl)
    return _ext._C.instance_norm_act_autograd_cpu(x, weight, bias, residual, eps, slope)


def _backward_kernels(grad, x, weight, bias, mean, rstd, eps, slope, impl):
    """(dx, dweight, dbias); None for an absent weight or bias."""
    grad = _like(grad, x)
    if impl == "ref":
        dx, dw, db = ref_backward(grad, x, weight, bias, eps, slope)
        dx = torch.empty_like(x).copy_(dx)
    elif impl in ("cpu", "cuda"):
        fn = _ext._C.instance_norm_act_backward_cpu if impl == "cpu" else _ext._C.instance_norm_act_backward_cuda
        dx, dw, db = fn(grad, x, weight, bias, mean, rstd, slope, True, weight is not None or bias is not None)
    elif impl == "triton":
        from gancore.kernels import instance_norm as kernels

        dx, dw, db = kernels.backward(grad, x, weight, bias, mean, rstd, slope)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(OP, impl)
    return dx, dw if weight is not None else None, db if bias is not None else None


def _backward_impl(grad, x, weight, bias, mean, rstd, eps, slope, impl):
    """_backward_kernels with empty tensors in place of None (a custom op returns tensors)."""
    dx, dw, db = _backward_kernels(grad, x, weight, bias, mean, rstd, eps, slope, impl)
    return (dx, dw if dw is not None else mean.new_empty(0), db if db is not None else mean.new_empty(0))


# ---- registration: custom ops with fake tensors and autograd ---------------------------------------


@torch.library.custom_op("gancore::instance_norm_act_fwd", mutates_args=())
def _fwd_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
            residual: torch.Tensor | None, eps: float, slope: float, impl: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward_impl(x, weight, bias, residual, eps, slope, impl)


@_fwd_op.register_fake
def _(x, weight, bias, residual, eps, slope, impl):
    stats = x.new_empty(x.shape[:2], dtype=_acc_dtype(x.dtype))
    return torch.empty_like(x), stats, torch.empty_like(stats)


def _fwd_setup_context(ctx, inputs, output):
    x, weight, bias, residual, eps, slope, impl = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.eps, ctx.slope, ctx.impl = eps, slope, impl
    ctx.has_residual = residual is not None


def _fwd_backward(ctx, grad_out, _grad_mean, _grad_rstd, eager: bool = False):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    args = (grad_out, x, weight, bias, mean, rstd, ctx.eps, ctx.slope, ctx.impl)
    if eager:
        dx, dw, db = _dispatch.call(torch.ops.gancore.instance_norm_act_bwd, _InstanceNormActBackward,
                                    _backward_kernels, args, args[:4])
    else:
        dx, dw, db = torch.ops.gancore.instance_norm_act_bwd(*args)
    return (dx, dw if weight is not None else None, db if bias is not None else None,
            grad_out if ctx.has_residual else None, None, None, None)


_fwd_op.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)


class _InstanceNormAct(torch.autograd.Function):
    """The eager twin of the custom op: same kernels, same saved tensors, less host work per call."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _forward_impl(*inputs)
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero tensors for the statistics' (absent) gradients
        _fwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_rstd):
        if grad_out is None:  # reached through a path that does not use the output
            return (None,) * 7
        return _fwd_backward(ctx, grad_out, None, None, eager=True)


@torch.library.custom_op("gancore::instance_norm_act_bwd", mutates_args=())
def _bwd_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
            mean: torch.Tensor, rstd: torch.Tensor, eps: float, slope: float, impl: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward_impl(grad, x, weight, bias, mean, rstd, eps, slope, impl)


@_bwd_op.register_fake
def _(grad, x, weight, bias, mean, rstd, eps, slope, impl):
    C = x.shape[1]
    return (torch.empty_like(x), mean.new_empty(C if weight is not None else 0),
            mean.new_empty(C if bias is not None else 0))


def _bwd_setup_context(ctx, inputs, output):
    grad, x, weight, bias, _mean, _rstd, eps, slope, _impl = inputs
    ctx.save_for_backward(grad, x, weight, bias)
    ctx.eps, ctx.slope = eps, slope


def _bwd_backward(ctx, gg_x, gg_weight, gg_bias):
    """Double backward: the vector-Jacobian product of ref_backward, differentiable again."""
    grad, x, weight, bias = ctx.saved_tensors
    primals = [grad, x] + [t for t in (weight, bias) if t is not None]

    def backward_of(grad, x, *affine):
        it = iter(affine)
        w = next(it) if weight is not None else None
        b = next(it) if bias is not None else None
        dx, dw, db = ref_backward(grad, x, w, b, ctx.eps, ctx.slope)
        return [dx] + [d for d, t in ((dw, w), (db, b)) if t is not None]

    cotangents = [gg_x] + [g for g, t in ((gg_weight, weight), (gg_bias, bias)) if t is not None]
    grads = iter(vjp(backward_of, primals, cotangents))
    d_grad, d_x = next(grads), next(grads)
    d_weight = next(grads) if weight is not None else None
    d_bias = next(grads) if bias is not None else None
    return d_grad, d_x, d_weight, d_bias, None, None, None, None, None


_bwd_op.register_autograd(_bwd_backward, setup_context=_bwd_setup_context)


class _InstanceNormActBackward(torch.autograd.Function):
    """The fused backward as a differentiable eager op (used only when a graph of it is built)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _backward_impl(*inputs)
        _bwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _bwd_backward(ctx, *grads)
