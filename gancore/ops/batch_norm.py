"""Fused batch normalisation + activation (+ residual): the norm of DCGAN, pix2pix's PatchGAN, SRGAN.

    out = act(F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)) + residual

including PyTorch's running-buffer updates (unbiased variance; momentum=None is the cumulative
average over num_batches_tracked). In eval mode the op is a per-channel scale and shift plus the
activation. Activations: leaky_relu, relu, identity (all a leaky slope) and prelu (1 or C weights).

Backends (same semantics): "ref" (PyTorch ops, the oracle), "cpu" (gancore._C), "triton"
(gancore.kernels.batch_norm), "cuda" (gancore._C built with CUDA). Each backend provides four steps,
stats / apply / grad_sums / grad_input; the CPU also fuses them into one call per direction.
Registered as the custom ops gancore::batch_norm_act_fwd (which updates the running buffers in place)
and _bwd, joined by an autograd.Function, so torch.compile keeps a model whole; the double backward
is the vector-Jacobian product of the reference backward (gancore.ops._vjp).

With process_group=..., training statistics are all-gathered as (count, mean, M2) and merged with
Chan's formula before normalising, and the backward all-reduces its two per-channel sums, as
torch.nn.SyncBatchNorm does (that path is differentiable once).
"""

from __future__ import annotations

import math
import types

import torch
import torch.distributed as dist

from gancore import _ext
from gancore.ops import _dispatch
from gancore.ops._checks import check_channel_vector, check_eps, check_residual, check_slope
from gancore.ops._vjp import vjp
from gancore.ops.instance_norm import _acc_dtype, _as_param, _dense, _like

OP = "batch_norm_act"
_dispatch.register_op(OP, cpu="batch_norm_act_forward_cpu", cuda="batch_norm_partial_stats_cuda", triton="batch_norm")

ACTIVATIONS = ("leaky_relu", "relu", "identity", "prelu")


def batch_norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    *,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    activation: str = "leaky_relu",
    negative_slope: float = 0.2,
    prelu_weight: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    num_batches_tracked: torch.Tensor | None = None,
    process_group: dist.ProcessGroup | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """act(batch_norm(x) * weight + bias) + residual over (N, *spatial) of x (N, C, *spatial) or (N, C).

    training=True: batch statistics (fp32, fp64 for fp64 inputs; Welford/Chan, no E[x^2] - E[x]^2),
    and the running buffers, when given, are updated in place like F.batch_norm. num_batches_tracked,
    when given with the running buffers, is incremented as nn.BatchNorm does; momentum=None needs it.
    training=False: the running statistics normalise. process_group: synchronise the training
    statistics over that group (None: this process only).
    """
    out = _lean_training_cpu(x, weight, bias, running_mean, running_var, training, momentum, eps, activation,
                             negative_slope, prelu_weight, residual, num_batches_tracked, process_group, impl)
    if out is not None:
        return out
    slope = _validate(x, weight, bias, running_mean, running_var, training, momentum, eps, activation,
                      negative_slope, prelu_weight, residual, num_batches_tracked)
    backend = _dispatch.choose(OP, impl, x.device)
    flat = x.dim() == 2  # (N, C): one spatial element
    if flat:
        x = x.unsqueeze(-1)
        residual = residual.unsqueeze(-1) if residual is not None else None
    x = _dense(x)
    if residual is not None:
        residual = _like(residual, x)
    acc = _acc_dtype(x.dtype)
    w, b, a = _as_param(weight, acc), _as_param(bias, acc), _as_param(prelu_weight, acc)
    factor = 0.0
    if training and running_mean is not None:
        if num_batches_tracked is not None:
            num_batches_tracked.add_(1)
        factor = 1.0 / float(num_batches_tracked) if momentum is None else float(momentum)
    sync = training and process_group is not None and dist.get_world_size(process_group) > 1
    if sync:
        out = _SyncBatchNormAct.apply(x, w, b, a, residual, running_mean, running_var, factor, float(eps), slope,
                                      backend, process_group)
    else:
        out = _run((x, w, b, a, residual, running_mean, running_var, bool(training), factor, float(eps), slope,
                    backend))
    return out.squeeze(-1) if flat else out


_CPU = torch.device("cpu")
_FIXED_SLOPES = {"relu": 0.0, "prelu": 0.0, "identity": 1.0}


def _lean_training_cpu(x, weight, bias, running_mean, running_var, training, momentum, eps, activation,
                       negative_slope, prelu_weight, residual, num_batches_tracked, process_group, impl):
    """The common call, a training step on the CPU, straight into the C++ autograd node; None for any
    other call, or when the node refuses its tensors. The node checks every tensor itself (device, shape,
    dtype, layout) before it touches one, so a refusal changes nothing, and the full path then converts
    what it can or says what is wrong (the residual, checked by the node only after it moved the running
    buffers, is checked here). The full path's checks cost about 13 us a call, twice the node's own call
    overhead: 5-7% of a layer's forward and backward in pix2pix's D at batch 1."""
    if (torch.compiler.is_compiling() or training is not True or process_group is not None
            or type(x) is not torch.Tensor or not x.is_cpu or x.dim() not in (3, 4, 5) or not x.is_floating_point()
            or (prelu_weight is None) == (activation == "prelu") or _dispatch.choose(OP, impl, _CPU) != "cpu"):
        return None
    slope = _FIXED_SLOPES.get(activation)
    if slope is None:
        if activation != "leaky_relu" or type(negative_slope) is not float or not math.isfinite(negative_slope):
            return None
        slope = negative_slope
    if type(eps) is not float or not 0.0 < eps < math.inf:
        return None
    if num_batches_tracked is not None and (running_mean is None or type(num_batches_tracked) is not torch.Tensor
                                            or num_batches_tracked.numel() != 1):
        return None
    factor = 0.0
    if running_mean is not None:
        if momentum is None:
            if num_batches_tracked is None:
                return None
            factor = 1.0 / (float(num_batches_tracked) + 1.0)
        elif type(momentum) is float and 0.0 <= momentum <= 1.0:
            factor = momentum
        else:
            return None
    # the node checks the residual only after the running buffers moved: a refusal must come before
    if residual is not None and (type(residual) is not torch.Tensor or residual.dtype != x.dtype
                                 or residual.shape != x.shape or residual.stride() != x.stride()
                                 or not residual.is_cpu):
        return None
    try:
        out = _ext._C.batch_norm_act_autograd_cpu(x, weight, bias, prelu_weight, residual, running_mean,
                                                  running_var, True, factor, eps, slope)
    except (RuntimeError, TypeError):  # refused by the node's checks: the full path explains or converts
        return None
    if running_mean is not None and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    _dispatch.note_ran(OP, "cpu")
    return out


def _validate(x, weight, bias, running_mean, running_var, training, momentum, eps, activation, negative_slope,
              prelu_weight, residual, num_batches_tracked) -> float:
    name = "batch_norm_act"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: x must be a tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3, 4, 5):
        raise ValueError(f"{name}: x must be (N, C) or (N, C, *spatial) with 1 to 3 spatial dims, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating-point tensor, got {x.dtype}")
    if x.shape[1] == 0 or x.numel() == 0:
        raise ValueError(f"{name}: x must not be empty, got shape {tuple(x.shape)}")
    if not isinstance(training, bool):
        raise TypeError(f"{name}: training must be a bool, got {type(training).__name__}")
    C = x.shape[1]
    for arg, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        check_channel_vector(name, arg, t, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{name}: running_mean and running_var must be given together (or both None)")
    if not training and running_mean is None:
        raise ValueError(f"{name}: training=False normalises with the running statistics; "
                         f"running_mean and running_var are None")
    if training and x.numel() // C <= 1:
        raise ValueError(f"{name}: training needs more than one value per channel, got x of shape {tuple(x.shape)}")
    if momentum is None:
        if training and running_mean is not None and num_batches_tracked is None:
            raise ValueError(f"{name}: momentum=None (cumulative average) needs num_batches_tracked")
    elif not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{name}: momentum must be a number in [0, 1] or None, got {momentum!r}")
    if num_batches_tracked is not None and (not isinstance(num_batches_tracked, torch.Tensor)
                                            or num_batches_tracked.numel() != 1):
        raise ValueError(f"{name}: num_batches_tracked must be a one-element tensor, got {num_batches_tracked!r}")
    check_residual(name, residual, x)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "prelu":
        if prelu_weight is None:
            raise ValueError(f"{name}: activation='prelu' needs prelu_weight (1 or {C} values)")
        if (not isinstance(prelu_weight, torch.Tensor) or prelu_weight.dim() != 1
                or prelu_weight.shape[0] not in (1, C)):
            shape = tuple(prelu_weight.shape) if isinstance(prelu_weight, torch.Tensor) else type(prelu_weight).__name__
            raise ValueError(f"{name}: prelu_weight must have shape (1,) or ({C},), got {shape}")
        if not prelu_weight.is_floating_point() or prelu_weight.device != x.device:
            raise ValueError(f"{name}: prelu_weight must be floating point on {x.device}, "
                             f"got {prelu_weight.dtype} on {prelu_weight.device}")
    elif prelu_weight is not None:
        raise ValueError(f"{name}: prelu_weight is only used with activation='prelu', got {activation!r}")
    check_eps(name, eps)
    if activation != "leaky_relu":
        return 0.0 if activation in ("relu", "prelu") else 1.0
    return check_slope(name, negative_slope)


# ---- reference formulas (the oracle, the "ref" backend's steps, the source of the double backward) ----


def _dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.dim()))


def _channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel (C,) tensor (or a (1,) one) shaped to broadcast against x."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def _ref_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and M2 (sum of squared deviations), two-pass, in the accumulation dtype."""
    xf = x.to(_acc_dtype(x.dtype))
    mean = xf.mean(_dims(x))
    m2 = (xf - _channel(mean, x)).square().sum(_dims(x))
    return mean, m2


def _slope_of(a: torch.Tensor | None, slope: float, x: torch.Tensor):
    return _channel(a, x) if a is not None else slope


def _ref_apply(x, weight, bias, a, residual, mean, rstd, slope):
    y = (x.to(mean.dtype) - _channel(mean, x)) * _channel(rstd, x)
    if weight is not None:
        y = y * _channel(weight, x)
    if bias is not None:
        y = y + _channel(bias, x)
    y = torch.where(y > 0, y, y * _slope_of(a, slope, x))
    if residual is not None:
        y = y + residual.to(y.dtype)
    return y.to(x.dtype)


def _pre_activation(x, weight, bias, mean, rstd):
    xhat = (x.to(mean.dtype) - _channel(mean, x)) * _channel(rstd, x)
    y = xhat * _channel(weight, x) if weight is not None else xhat
    return xhat, (y + _channel(bias, x) if bias is not None else y)


def _ref_grad_sums(grad, x, weight, bias, a, mean, rstd, slope):
    xhat, y = _pre_activation(x, weight, bias, mean, rstd)
    g = grad.to(mean.dtype)
    negative = y <= 0
    dy = torch.where(negative, g * _slope_of(a, slope, x), g)
    prelu = (g * y * negative).sum(_dims(x)) if a is not None else torch.zeros_like(mean)
    return torch.stack([dy.sum(_dims(x)), (dy * xhat).sum(_dims(x)), prelu])


def _ref_grad_input(grad, x, weight, bias, a, mean, rstd, slope, coef_dy, coef_dyx):
    xhat, y = _pre_activation(x, weight, bias, mean, rstd)
    g = grad.to(mean.dtype)
    dy = torch.where(y > 0, g, g * _slope_of(a, slope, x))
    if coef_dy is not None:
        dy = dy - _channel(coef_dy, x) - xhat * _channel(coef_dyx, x)
    scale = rstd * weight if weight is not None else rstd
    return (dy * _channel(scale, x)).to(x.dtype)


def ref_backward(grad, x, weight, bias, a, mean, rstd, training: bool, eps: float, slope: float):
    """(dx, dweight, dbias, dprelu) in differentiable PyTorch ops. In training the statistics are
    recomputed from x (they depend on it); in eval mean and rstd are the running statistics."""
    if training:
        m, m2 = _ref_stats(x)
        count = x.numel() // x.shape[1]
        mean, rstd = m, torch.rsqrt(m2 / count + eps)
    sums = _ref_grad_sums(grad, x, weight, bias, a, mean, rstd, slope)
    count = x.numel() // x.shape[1]
    coefs = (sums[0] / count, sums[1] / count) if training else (None, None)
    dx = _ref_grad_input(grad, x, weight, bias, a, mean, rstd, slope, *coefs)
    return (dx, *_param_grads(sums, weight, bias, a))


def _param_grads(sums, weight, bias, a):
    """(dweight, dbias, dprelu) from the (3, C) sums; a distinct empty tensor for each absent parameter."""
    dprelu = sums.new_zeros(0) if a is None else (sums[2] if a.numel() > 1 else sums[2].sum(0, keepdim=True))
    return (sums[1] if weight is not None else sums.new_zeros(0), sums[0] if bias is not None else sums.new_zeros(0),
            dprelu)


# ---- backends: each provides the four steps -----------------------------------------------------------

_REF_STEPS = types.SimpleNamespace(stats=_ref_stats, apply=_ref_apply, grad_sums=_ref_grad_sums,
                                   grad_input=_ref_grad_input)


def _steps(impl: str):
    if impl == "ref":
        return _REF_STEPS
    if impl == "cpu":
        C = _ext._C
        return types.SimpleNamespace(stats=C.batch_norm_stats_cpu, apply=C.batch_norm_act_apply_cpu,
                                     grad_sums=C.batch_norm_act_grad_sums_cpu,
                                     grad_input=C.batch_norm_act_grad_input_cpu)
    if impl == "cuda":
        C = _ext._C
        return types.SimpleNamespace(stats=lambda x: _merged(x, C.batch_norm_partial_stats_cuda(x)),
                                     apply=C.batch_norm_act_apply_cuda, grad_sums=C.batch_norm_act_grad_sums_cuda,
                                     grad_input=C.batch_norm_act_grad_input_cuda)
    if impl == "triton":
        from gancore.kernels import batch_norm as kernels

        return types.SimpleNamespace(stats=lambda x: _merged(x, kernels.partial_stats(x)), apply=kernels.apply,
                                     grad_sums=kernels.grad_sums, grad_input=kernels.grad_input)
    raise ValueError(f"unknown backend {impl!r}")


def _merged(x: torch.Tensor, partials) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, M2) of the whole batch from the GPU kernels' per-part moments."""
    _, mean, m2 = _merge_moments(*partials)
    return mean.to(_acc_dtype(x.dtype)), m2.to(_acc_dtype(x.dtype))


def _update_running(running_mean, running_var, mean, m2, count, factor: float) -> None:
    """The PyTorch update, in place, in the buffers' own dtype (the C++ path does the same per channel)."""
    if running_mean is None:
        return
    with torch.no_grad():
        running_mean.copy_((1 - factor) * running_mean.to(mean.dtype) + factor * mean)
        running_var.copy_((1 - factor) * running_var.to(m2.dtype) + factor * (m2 / (count - 1)))


def _forward_impl(x, weight, bias, a, residual, running_mean, running_var, training, factor, eps, slope, impl):
    acc = _acc_dtype(x.dtype)
    if not training:
        mean = running_mean.detach().to(acc, copy=True)
        rstd = torch.rsqrt(running_var.detach().to(acc) + eps)
        out = _steps(impl).apply(x, weight, bias, a, residual, mean, rstd, slope)
    elif impl == "cpu":
        # the kernel updates acc-dtype contiguous buffers in place; others through a temporary
        rm, rv = running_mean, running_var
        direct = _buffers_in_place(x, rm, rv)
        if not direct:
            rm, rv = rm.to(acc, copy=True).contiguous(), rv.to(acc, copy=True).contiguous()
        out, mean, rstd = _ext._C.batch_norm_act_forward_cpu(x, weight, bias, a, residual, rm, rv, factor, eps, slope)
        if not direct:
            running_mean.copy_(rm)
            running_var.copy_(rv)
    else:
        steps = _steps(impl)
        mean, m2 = steps.stats(x)
        count = x.numel() // x.shape[1]
        rstd = torch.rsqrt(m2 / count + eps)
        _update_running(running_mean, running_var, mean, m2, count, factor)
        out = steps.apply(x, weight, bias, a, residual, mean, rstd, slope)
    if impl == "ref":
        out = torch.empty_like(x).copy_(out)  # the kernels' layout: x's strides
    _dispatch.note_ran(OP, impl)
    return out, mean, rstd


def _backward_kernels(grad, x, weight, bias, a, mean, rstd, training, eps, slope, impl):
    """(dx, dweight, dbias, dprelu); empty tensors for absent parameters."""
    grad = _like(grad, x)
    count = x.numel() // x.shape[1]
    if impl == "cpu":
        dx, sums = _ext._C.batch_norm_act_backward_cpu(grad, x, weight, bias, a, mean, rstd, slope, training, True)
    else:
        steps = _steps(impl)
        sums = steps.grad_sums(grad, x, weight, bias, a, mean, rstd, slope)
        coefs = (sums[0] / count, sums[1] / count) if training else (None, None)
        dx = steps.grad_input(grad, x, weight, bias, a, mean, rstd, slope, *coefs)
        if impl == "ref":
            dx = torch.empty_like(x).copy_(dx)
    _dispatch.note_ran(OP, impl)
    return (dx, *_param_grads(sums, weight, bias, a))


def _backward_impl(grad, x, weight, bias, a, mean, rstd, training, eps, slope, impl):
    # rows of one tensor alias each other, which a custom op may not return
    return tuple(t.clone() if i and t.numel() else t
                 for i, t in enumerate(_backward_kernels(grad, x, weight, bias, a, mean, rstd, training, eps, slope,
                                                         impl)))


# ---- registration: custom ops with fake tensors and autograd ---------------------------------------------


@torch.library.custom_op("gancore::batch_norm_act_fwd", mutates_args=("running_mean", "running_var"))
def _fwd_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, prelu: torch.Tensor | None,
            residual: torch.Tensor | None, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
            training: bool, factor: float, eps: float, slope: float, impl: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward_impl(x, weight, bias, prelu, residual, running_mean, running_var, training, factor, eps, slope,
                         impl)


@_fwd_op.register_fake
def _(x, weight, bias, prelu, residual, running_mean, running_var, training, factor, eps, slope, impl):
    stats = x.new_empty(x.shape[1], dtype=_acc_dtype(x.dtype))
    return torch.empty_like(x), stats, torch.empty_like(stats)


def _run(args: tuple) -> torch.Tensor:
    """The cheapest correct way in: the kernels directly when no gradient is needed, else in eager mode
    on the cpu backend a C++ autograd node (csrc/cpu/autograd.cpp; same kernels, and the backward op
    when a graph of the backward is built), else the autograd.Function (which torch.compile traces,
    custom ops inside)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:5]):
        if args[-1] == "cpu" and not torch.compiler.is_compiling() and _buffers_in_place(args[0], *args[5:7]):
            _dispatch.note_ran(OP, "cpu")
            return _ext._C.batch_norm_act_autograd_cpu(*args[:-1])
        return _BatchNormActFn.apply(*args)
    if torch.compiler.is_compiling():
        return torch.ops.gancore.batch_norm_act_fwd(*args)[0]
    return _forward_impl(*args)[0]


def _buffers_in_place(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None) -> bool:
    """Whether the cpu kernels can update the running buffers in place: contiguous, in the acc dtype (the C++
    node takes only such buffers; the Python path updates others through a temporary)."""
    acc = _acc_dtype(x.dtype)
    return running_mean is None or all(t.dtype == acc and t.is_contiguous() for t in (running_mean, running_var))


class _BatchNormActFn(torch.autograd.Function):
    """Autograd around the forward: a custom op that mutates its inputs (the running buffers) cannot
    carry a registered autograd formula, and torch.compile traces an autograd.Function whole. Eager
    calls skip the custom-op machinery; the backward goes through the (differentiable) backward op
    only when a graph of it is built (double backward) or under torch.compile."""

    @staticmethod
    def forward(ctx, x, weight, bias, prelu, residual, running_mean, running_var, training, factor, eps, slope,
                impl):
        args = (x, weight, bias, prelu, residual, running_mean, running_var, training, factor, eps, slope, impl)
        fwd = torch.ops.gancore.batch_norm_act_fwd if torch.compiler.is_compiling() else _forward_impl
        out, mean, rstd = fwd(*args)
        ctx.save_for_backward(x, weight, bias, prelu, mean, rstd)
        ctx.training, ctx.eps, ctx.slope, ctx.impl = training, eps, slope, impl
        ctx.has_residual = residual is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, prelu, mean, rstd = ctx.saved_tensors
        args = (grad_out, x, weight, bias, prelu, mean, rstd, ctx.training, ctx.eps, ctx.slope, ctx.impl)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            dx, dw, db, da = torch.ops.gancore.batch_norm_act_bwd(*args)
        else:
            dx, dw, db, da = _backward_kernels(*args)
        return (dx, dw if weight is not None else None, db if bias is not None else None,
                da if prelu is not None else None, grad_out if ctx.has_residual else None,
                None, None, None, None, None, None, None)


@torch.library.custom_op("gancore::batch_norm_act_bwd", mutates_args=())
def _bwd_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
            prelu: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor, training: bool, eps: float,
            slope: float, impl: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward_impl(grad, x, weight, bias, prelu, mean, rstd, training, eps, slope, impl)


@_bwd_op.register_fake
def _(grad, x, weight, bias, prelu, mean, rstd, training, eps, slope, impl):
    C = x.shape[1]
    return (torch.empty_like(x), mean.new_empty(C if weight is not None else 0),
            mean.new_empty(C if bias is not None else 0), mean.new_empty(prelu.shape[0] if prelu is not None else 0))


def _bwd_setup_context(ctx, inputs, output):
    grad, x, weight, bias, prelu, mean, rstd, training, eps, slope, _impl = inputs
    ctx.save_for_backward(grad, x, weight, bias, prelu, mean, rstd)
    ctx.training, ctx.eps, ctx.slope = training, eps, slope


def _bwd_backward(ctx, gg_x, gg_weight, gg_bias, gg_prelu):
    """Double backward: the vector-Jacobian product of ref_backward, differentiable again."""
    grad, x, weight, bias, prelu, mean, rstd = ctx.saved_tensors
    present = [t is not None for t in (weight, bias, prelu)]
    primals = [grad, x] + [t for t in (weight, bias, prelu) if t is not None]

    def backward_of(grad, x, *params):
        it = iter(params)
        w, b, a = (next(it) if p else None for p in present)
        dx, dw, db, da = ref_backward(grad, x, w, b, a, mean, rstd, ctx.training, ctx.eps, ctx.slope)
        return [dx] + [d for d, p in zip((dw, db, da), present) if p]

    cotangents = [gg_x] + [g for g, p in zip((gg_weight, gg_bias, gg_prelu), present) if p]
    grads = iter(vjp(backward_of, primals, cotangents))
    d_grad, d_x = next(grads), next(grads)
    d_w, d_b, d_a = (next(grads) if p else None for p in present)
    return d_grad, d_x, d_w, d_b, d_a, None, None, None, None, None, None


_bwd_op.register_autograd(_bwd_backward, setup_context=_bwd_setup_context)


# ---- cross-process statistics (SyncBatchNorm-like) ------------------------------------------------------


def _merge_moments(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor):
    """Chan's merge of k sets given as (k,) counts and (k, C) means and M2s, in float64."""
    count, mean, m2 = count.double(), mean.double(), m2.double()
    total = count.sum()
    merged_mean = (count[:, None] * mean).sum(0) / total
    merged_m2 = (m2 + count[:, None] * (mean - merged_mean).square()).sum(0)
    return total, merged_mean, merged_m2


class _SyncBatchNormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, a, residual, running_mean, running_var, factor, eps, slope, impl, group):
        steps = _steps(impl)
        mean, m2 = steps.stats(x)
        acc = mean.dtype
        count = float(x.numel() // x.shape[1])
        local = torch.cat([mean.new_full((1,), count), mean, m2]).double()
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, local, group=group)
        table = torch.stack(gathered)
        C = x.shape[1]
        total, mean64, m2_64 = _merge_moments(table[:, 0], table[:, 1:1 + C], table[:, 1 + C:])
        total = float(total)
        mean, m2 = mean64.to(acc), m2_64.to(acc)
        rstd = torch.rsqrt(m2 / total + eps)
        _update_running(running_mean, running_var, mean, m2, total, factor)
        out = steps.apply(x, weight, bias, a, residual, mean, rstd, slope)
        _dispatch.note_ran(OP, impl)
        ctx.save_for_backward(x, weight, bias, a, mean, rstd)
        ctx.slope, ctx.impl, ctx.group, ctx.total = slope, impl, group, total
        ctx.has_residual = residual is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, bias, a, mean, rstd = ctx.saved_tensors
        steps = _steps(ctx.impl)
        grad = _like(grad, x)
        sums = steps.grad_sums(grad, x, weight, bias, a, mean, rstd, ctx.slope)
        # dx needs the group's sums; the parameters' gradients stay local (DDP averages them)
        both = sums[:2].clone()
        dist.all_reduce(both, group=ctx.group)
        dx = steps.grad_input(grad, x, weight, bias, a, mean, rstd, ctx.slope, both[0] / ctx.total,
                              both[1] / ctx.total)
        _dispatch.note_ran(OP, ctx.impl)
        dw, db, da = _param_grads(sums, weight, bias, a)
        return (dx, dw if weight is not None else None, db if bias is not None else None,
                da if a is not None else None, grad if ctx.has_residual else None,
                None, None, None, None, None, None, None)
