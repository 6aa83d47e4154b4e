"""PatchGAN scoring: the discriminator's last convolution (C -> 1 channel, 4x4 kernel) fused with the
GAN loss of every patch and its reduction.

    loss = reduce(l(conv2d(h, weight, bias, stride, padding), target))

Eager PyTorch runs a convolution with one output channel (poorly suited to GEMM libraries), writes
the logit map, runs the loss and its reduction, and in the backward reads the map back twice. The
fused forward computes each logit as a direct C*KH*KW-tap dot product, applies the loss and keeps
only dl/dz per patch; the fused backward produces dh, dweight and dbias from it in one pass over h.
Its own backward (should anything differentiate the loss twice) comes from the reference formulas.

Backends: "ref", "cpu" (gancore._C), "triton" (gancore.kernels.patchgan), "cuda".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gancore import _ext
from gancore.ops import _dispatch
from gancore.ops._vjp import vjp
from gancore.ops.instance_norm import _acc_dtype, _as_param

OP = "patchgan_loss"
_dispatch.register_op(OP, cpu="patchgan_loss_forward_cpu", cuda="patchgan_loss_forward_cuda", triton="patchgan")

LOSSES = ("lsgan", "bce", "hinge", "wgan")  # numbered as csrc/common/gan_loss_math.h
REDUCTIONS = ("none", "mean", "sum")  # numbered as csrc/cpu/patchgan.cpp

Target = float | torch.Tensor


def patchgan_loss(
    h: torch.Tensor | Sequence[torch.Tensor],
    weight: torch.Tensor | Sequence[torch.Tensor],
    bias: torch.Tensor | None | Sequence[torch.Tensor | None],
    target: Target | Sequence[Target],
    *,
    loss: str = "lsgan",
    stride: int = 1,
    padding: int = 1,
    reduction: str = "mean",
    impl: str = "auto",
) -> torch.Tensor | list[torch.Tensor]:
    """The GAN loss of every patch logit z = conv2d(h, weight, bias, stride, padding), reduced.

    h: (N, C, H, W), contiguous or channels-last, any float dtype. weight: (1, C, KH, KW) (one output
    channel); bias: (1,) or None. target: a float (1.0 real, 0.0 fake, smoothed labels such as 0.9
    allowed for lsgan/bce) or a tensor broadcastable to the logits (N, 1, OH, OW), e.g. (N, 1, 1, 1)
    per sample; targets get no gradient. Losses per patch: "lsgan" (z - t)^2, "bce" binary cross
    entropy with logits (stable for any z), "hinge" relu(1 - z) for real (t = 1) and relu(1 + z)
    for fake (t = 0), "wgan" -z for real and +z for fake (so the mean is the critic's loss).
    reduction: "mean" over all patches, "sum", or "none" (the (N, 1, OH, OW) loss map).
    The loss is float32 (float64 for float64 h); gradients reach h, weight and bias.

    Multi-scale discriminators (pix2pixHD): pass sequences of h, weight and bias (and optionally of
    targets), one per scale; the result is the sum of the per-scale losses (a list of maps for "none").
    """
    if isinstance(h, (list, tuple)):
        return _multi_scale(h, weight, bias, target, loss=loss, stride=stride, padding=padding,
                            reduction=reduction, impl=impl)
    kind, red = _validate(h, weight, bias, loss, stride, padding, reduction)
    N = h.shape[0]
    OH = (h.shape[2] + 2 * padding - weight.shape[2]) // stride + 1
    OW = (h.shape[3] + 2 * padding - weight.shape[3]) // stride + 1
    acc = _acc_dtype(h.dtype)
    t = _target_map(target, loss, (N, 1, OH, OW), acc, h.device)
    backend = _dispatch.choose(OP, impl, h.device)
    if not (h.is_contiguous() or h.is_contiguous(memory_format=torch.channels_last)):
        h = h.contiguous()
    w = _as_param(weight, acc)
    b = bias.to(acc).reshape(1) if bias is not None else None
    args = (h, w, b, t, kind, stride, padding, red, backend)
    out, _ = _dispatch.call(torch.ops.gancore.patchgan_loss_fwd, _PatchGANLoss, _forward_impl, args, args[:3])
    return out.view(N, 1, OH, OW) if reduction == "none" else out


def _multi_scale(hs, weights, biases, targets, **kwargs) -> torch.Tensor | list[torch.Tensor]:
    scales = len(hs)
    if biases is None:
        biases = [None] * scales
    if not isinstance(targets, (list, tuple)):
        targets = [targets] * scales
    for name, seq in (("weight", weights), ("bias", biases), ("target", targets)):
        if not isinstance(seq, (list, tuple)) or len(seq) != scales:
            got = len(seq) if isinstance(seq, (list, tuple)) else type(seq).__name__
            raise ValueError(f"patchgan_loss: with {scales} scales of h, {name} must be a sequence of {scales}, "
                             f"got {got}")
    if scales == 0:
        raise ValueError("patchgan_loss: h is an empty sequence")
    losses = [patchgan_loss(h, w, b, t, **kwargs) for h, w, b, t in zip(hs, weights, biases, targets)]
    return losses if kwargs["reduction"] == "none" else torch.stack(losses).sum()


def _validate(h, weight, bias, loss, stride, padding, reduction) -> tuple[int, int]:
    if not isinstance(h, torch.Tensor) or h.dim() != 4:
        got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ValueError(f"patchgan_loss: h must be a (N, C, H, W) tensor, got {got}")
    if not h.is_floating_point():
        raise TypeError(f"patchgan_loss: h must be a floating-point tensor, got {h.dtype}")
    N, C, H, W = h.shape
    if N == 0 or C == 0 or H == 0 or W == 0:
        raise ValueError(f"patchgan_loss: h needs at least one sample, one channel and a non-empty plane, "
                         f"got {tuple(h.shape)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[1] != C or weight.shape[0] != 1:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        extra = (" (PatchGAN scoring has one output channel)"
                 if isinstance(weight, torch.Tensor) and weight.dim() == 4 and weight.shape[0] != 1 else "")
        raise ValueError(f"patchgan_loss: weight must have shape (1, {C}, KH, KW) for h {tuple(h.shape)}, "
                         f"got {got}{extra}")
    if not weight.is_floating_point():
        raise TypeError(f"patchgan_loss: weight must be floating point, got {weight.dtype}")
    if weight.device != h.device:
        raise ValueError(f"patchgan_loss: weight is on {weight.device} but h is on {h.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.numel() != 1:
            got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"patchgan_loss: bias must have shape (1,), got {got}")
        if not bias.is_floating_point():
            raise TypeError(f"patchgan_loss: bias must be floating point, got {bias.dtype}")
        if bias.device != h.device:
            raise ValueError(f"patchgan_loss: bias is on {bias.device} but h is on {h.device}")
    if loss not in LOSSES:
        raise ValueError(f"patchgan_loss: loss must be one of {LOSSES}, got {loss!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"patchgan_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(stride, int) or stride < 1 or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"patchgan_loss: stride must be an int >= 1 and padding an int >= 0, "
                         f"got stride={stride!r}, padding={padding!r}")
    KH, KW = weight.shape[2:]
    if KH == 0 or KW == 0:
        raise ValueError(f"patchgan_loss: weight's kernel must be at least 1x1, got {KH}x{KW}")
    if H + 2 * padding < KH or W + 2 * padding < KW:
        raise ValueError(f"patchgan_loss: h {tuple(h.shape)} with padding {padding} is smaller than the "
                         f"{KH}x{KW} kernel")
    return LOSSES.index(loss), REDUCTIONS.index(reduction)


def _target_map(target: Target, loss: str, shape: tuple[int, int, int, int], acc: torch.dtype,
                device: torch.device) -> torch.Tensor:
    """The target as an (N, OH, OW) tensor of the accumulation dtype, broadcast through zero strides."""
    if isinstance(target, torch.Tensor):
        if target.device != device:
            raise ValueError(f"patchgan_loss: target is on {target.device} but h is on {device}")
        if target.is_complex():
            raise TypeError(f"patchgan_loss: target must be real, got {target.dtype}")
        t = target.detach().to(acc)
        if loss in ("hinge", "wgan") and not ((t == 0) | (t == 1)).all():
            bad = t[(t != 0) & (t != 1)].flatten()[0].item()
            raise ValueError(f"patchgan_loss: loss {loss!r} takes targets 1 (real) or 0 (fake), got a target "
                             f"tensor holding {bad}")
    elif isinstance(target, (bool, int, float)):
        value = float(target)
        if loss in ("hinge", "wgan") and value not in (0.0, 1.0):
            raise ValueError(f"patchgan_loss: loss {loss!r} takes target 1 (real) or 0 (fake), got {target}")
        t = _constant(value, acc, device)
    else:
        raise TypeError(f"patchgan_loss: target must be a float or a tensor, got {type(target).__name__}")
    try:
        return t.expand(shape)[:, 0]
    except RuntimeError:
        raise ValueError(f"patchgan_loss: target of shape {tuple(t.shape)} does not broadcast to the logits "
                         f"{shape}") from None


_constants: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}


def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim target, made once per (value, dtype, device): building it cost more than a small kernel."""
    key = (value, dtype, device)
    t = _constants.get(key)
    if t is None:
        if len(_constants) >= 64:  # e.g. a label-smoothing value drawn per step
            _constants.clear()
        t = _constants[key] = torch.tensor(value, dtype=dtype, device=device)
    return t


# ---- reference formulas (the oracle, and the source of the double backward) -----------------------


def ref_logits(h, weight, bias, stride: int, padding: int) -> torch.Tensor:
    return F.conv2d(h.to(weight.dtype), weight, bias, stride=stride, padding=padding)


def ref_patch_losses(z: torch.Tensor, t: torch.Tensor, kind: int) -> torch.Tensor:
    if LOSSES[kind] == "lsgan":
        return (z - t).square()
    if LOSSES[kind] == "bce":
        return F.binary_cross_entropy_with_logits(z, t.expand_as(z), reduction="none")
    sign = 2 * t - 1
    return F.relu(1 - sign * z) if LOSSES[kind] == "hinge" else -sign * z


def _dldz(z, t, kind: int) -> torch.Tensor:
    name = LOSSES[kind]
    if name == "lsgan":
        return 2 * (z - t)
    if name == "bce":
        return torch.sigmoid(z) - t
    sign = 2 * t - 1
    return torch.where(1 - sign * z > 0, -sign, 0) if name == "hinge" else -sign.expand_as(z)


def _reduce(losses: torch.Tensor, reduction: int) -> torch.Tensor:
    name = REDUCTIONS[reduction]
    return losses.mean() if name == "mean" else losses.sum() if name == "sum" else losses


def ref_forward(h, weight, bias, target, kind: int, stride: int, padding: int, reduction: int):
    """(loss, dldz) as the fused kernels return them: the map (N, OH, OW) for "none"."""
    z = ref_logits(h, weight, bias, stride, padding)[:, 0]
    losses = ref_patch_losses(z, target, kind)
    factor = 1.0 / z.numel() if REDUCTIONS[reduction] == "mean" else 1.0
    return _reduce(losses, reduction), (_dldz(z, target, kind) * factor).contiguous()


def ref_loss(h, weight, bias, target, kind: int, stride: int, padding: int, reduction: int):
    z = ref_logits(h, weight, bias, stride, padding)[:, 0]
    return _reduce(ref_patch_losses(z, target, kind), reduction)


def ref_backward(grad, h, weight, bias, target, kind: int, stride: int, padding: int, reduction: int):
    """(dh, dweight, dbias) from the reference loss; differentiable again under grad mode
    (dbias None without a bias)."""
    primals = (h, weight) if bias is None else (h, weight, bias)

    def loss_of(h, weight, *maybe_bias):
        return (ref_loss(h, weight, maybe_bias[0] if maybe_bias else None, target, kind, stride, padding,
                         reduction),)

    grads = vjp(loss_of, primals, (grad.to(weight.dtype),))
    return grads[0].to(h.dtype), grads[1], grads[2] if bias is not None else None


# ---- backends --------------------------------------------------------------------------------------


def _forward_impl(h, weight, bias, target, kind, stride, padding, reduction, impl):
    if impl == "ref":
        loss, dldz = ref_forward(h, weight, bias, target, kind, stride, padding, reduction)
    elif impl in ("cpu", "cuda"):
        fn = getattr(_ext._C, f"patchgan_loss_forward_{impl}")
        loss, dldz = fn(h, weight, bias, target, kind, stride, padding, reduction)
    elif impl == "triton":
        from gancore.kernels import patchgan as kernels

        loss, dldz = kernels.forward(h, weight, bias, target, kind, stride, padding, reduction)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(OP, impl)
    return loss, dldz


def _backward_impl(dz, h, weight, bias, stride, padding, need_input, impl):
    if impl == "ref":
        h_acc = h.to(weight.dtype)
        dz4 = dz.unsqueeze(1)
        dh = torch.nn.grad.conv2d_input(h.shape, weight, dz4, stride=stride, padding=padding) if need_input else None
        dw = torch.nn.grad.conv2d_weight(h_acc, weight.shape, dz4, stride=stride, padding=padding)
        db = dz.sum().reshape(1)
        dh = torch.empty_like(h).copy_(dh) if need_input else None
    elif impl in ("cpu", "cuda"):
        fn = getattr(_ext._C, f"patchgan_loss_backward_{impl}")
        dh, dw, db = fn(dz, h, weight, stride, padding, need_input)
    elif impl == "triton":
        from gancore.kernels import patchgan as kernels

        dh, dw, db = kernels.backward(dz, h, weight, stride, padding, need_input)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(OP, impl)
    return (dh if need_input else h.new_empty(0)), dw, (db if bias is not None else weight.new_empty(0))


# ---- registration: custom ops with fake tensors and autograd ---------------------------------------


@torch.library.custom_op("gancore::patchgan_loss_fwd", mutates_args=())
def _fwd_op(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor, kind: int,
            stride: int, padding: int, reduction: int, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward_impl(h, weight, bias, target, kind, stride, padding, reduction, impl)


@_fwd_op.register_fake
def _(h, weight, bias, target, kind, stride, padding, reduction, impl):
    dldz = h.new_empty(target.shape, dtype=weight.dtype)
    return (dldz.new_empty(()) if REDUCTIONS[reduction] != "none" else torch.empty_like(dldz)), dldz


def _fwd_setup_context(ctx, inputs, output):
    h, weight, bias, target, kind, stride, padding, reduction, impl = inputs
    ctx.save_for_backward(h, weight, bias, target, output[1])
    ctx.args = (kind, stride, padding, reduction, impl)


def _fwd_backward(ctx, grad_loss, _grad_dldz, eager: bool = False):
    h, weight, bias, target, dldz = ctx.saved_tensors
    args = (grad_loss, h, weight, bias, target, dldz, *ctx.args, ctx.needs_input_grad[0])
    op = torch.ops.gancore.patchgan_loss_bwd
    dh, dw, db = _dispatch.call(op, _PatchGANLossBackward, _bwd_kernels, args, args[:4]) if eager else op(*args)
    return (dh if ctx.needs_input_grad[0] else None, dw, db if bias is not None else None,
            None, None, None, None, None, None)


_fwd_op.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)


class _PatchGANLoss(torch.autograd.Function):
    """The eager twin of gancore::patchgan_loss_fwd (same kernels, less host work per call)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _forward_impl(*inputs)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero tensor for dldz's (absent) gradient
        _fwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad_loss, _grad_dldz):
        if grad_loss is None:
            return (None,) * 9
        return _fwd_backward(ctx, grad_loss, None, eager=True)


def _bwd_kernels(grad, h, weight, bias, target, dldz, kind, stride, padding, reduction, impl, need_input):
    dz = (dldz * grad.to(dldz.dtype).reshape(grad.shape if grad.dim() == 0 else dldz.shape)).contiguous()
    return _backward_impl(dz, h, weight, bias, stride, padding, need_input, impl)


@torch.library.custom_op("gancore::patchgan_loss_bwd", mutates_args=())
def _bwd_op(grad: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            target: torch.Tensor, dldz: torch.Tensor, kind: int, stride: int, padding: int, reduction: int,
            impl: str, need_input: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _bwd_kernels(grad, h, weight, bias, target, dldz, kind, stride, padding, reduction, impl, need_input)


@_bwd_op.register_fake
def _(grad, h, weight, bias, target, dldz, kind, stride, padding, reduction, impl, need_input):
    return (torch.empty_like(h) if need_input else h.new_empty(0), torch.empty_like(weight),
            weight.new_empty(1 if bias is not None else 0))


def _bwd_setup_context(ctx, inputs, output):
    grad, h, weight, bias, target, _dldz, kind, stride, padding, reduction, _impl, need_input = inputs
    ctx.save_for_backward(grad, h, weight, bias, target)
    ctx.args = (kind, stride, padding, reduction)
    ctx.need_input = need_input


def _bwd_backward(ctx, gg_h, gg_weight, gg_bias):
    """Double backward: the vector-Jacobian product of ref_backward (logits recomputed from h)."""
    grad, h, weight, bias, target = ctx.saved_tensors
    has_bias = bias is not None

    def backward_of(grad, h, weight, *maybe_bias):
        dh, dw, db = ref_backward(grad, h, weight, maybe_bias[0] if has_bias else None, target, *ctx.args)
        return (dh, dw, db) if has_bias else (dh, dw)

    primals = (grad, h, weight, bias) if has_bias else (grad, h, weight)
    grads = vjp(backward_of, primals, (gg_h if ctx.need_input else None, gg_weight, gg_bias))
    return (grads[0], grads[1], grads[2], grads[3] if has_bias else None,
            None, None, None, None, None, None, None, None)


_bwd_op.register_autograd(_bwd_backward, setup_context=_bwd_setup_context)



class _PatchGANLossBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        output = _bwd_kernels(*inputs)
        _bwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _bwd_backward(ctx, *grads)
