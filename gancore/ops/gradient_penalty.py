"""Gradient penalties for GAN critics: WGAN-GP (two-sided and one-sided), R1, R2 and DRAGAN.

Two fused ops do the work around the critic's own double backward:

    gp_interpolate(real, fake)         x_hat = alpha*real + (1-alpha)*fake, one alpha per sample
    gradient_norm_penalty(g, ...)      weight * mean_n p(||g_n||), p = (||g|| - center)^2, ...

`gradient_penalty(critic, real, fake)` puts them together: it builds the critic's input, runs the
critic, takes the input gradient with create_graph=True (so the penalty backpropagates into the
critic's parameters), and reduces it. The per-sample norm and the mean of the penalty are one
reduction kernel whose backward is the elementwise dg = coef[n] * g; that backward is a custom op
too, and its own backward (third order, for gradgradcheck) comes from the reference formulas.

Backends: "ref", "cpu" (gancore._C), "triton" (gancore.kernels.gradient_penalty), "cuda".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gancore import _ext
from gancore.ops import _dispatch
from gancore.ops._vjp import vjp
from gancore.ops.instance_norm import _acc_dtype, _dense, _like

INTERPOLATE = "gp_interpolate"
PENALTY = "gradient_norm_penalty"
_dispatch.register_op(INTERPOLATE, cpu="gp_interpolate_forward_cpu", cuda="gp_interpolate_forward_cuda",
                      triton="gradient_penalty")
_dispatch.register_op(PENALTY, cpu="gradient_norm_penalty_forward_cpu", cuda="gradient_norm_penalty_forward_cuda",
                      triton="gradient_penalty")

KINDS = ("wgan-gp", "wgan-gp-one-sided", "r1", "r2", "dragan")
# how the norm is penalised (numbers shared with csrc/common/gan_loss_math.h)
TWO_SIDED, ONE_SIDED, SQUARED_NORM = 0, 1, 2
_MODE = {"wgan-gp": TWO_SIDED, "wgan-gp-one-sided": ONE_SIDED, "r1": SQUARED_NORM, "r2": SQUARED_NORM,
         "dragan": TWO_SIDED}


# ---- public API ------------------------------------------------------------------------------------


def gp_interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None, *,
                   generator: torch.Generator | None = None, impl: str = "auto") -> torch.Tensor:
    """x_hat = alpha*real + (1-alpha)*fake with one alpha per sample, as a tensor that requires grad.

    alpha: N values (shape (N,) or (N, 1, ..., 1)); when None, drawn uniform in [0, 1) from
    `generator`. The output has real's layout (contiguous or channels-last) and dtype. Gradients
    flow to real, fake and alpha when they require grad; the output requires grad in any case,
    because the penalty differentiates the critic with respect to it.
    """
    _check_pair("gp_interpolate", real, fake)
    N = real.shape[0]
    acc = _acc_dtype(real.dtype)
    if alpha is None:
        alpha = torch.rand(N, generator=generator, device=real.device, dtype=acc)
    elif not isinstance(alpha, torch.Tensor) or alpha.numel() != N or (alpha.dim() > 1 and alpha.shape[0] != N):
        shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else type(alpha).__name__
        raise ValueError(f"gp_interpolate: alpha must hold one value per sample ({N},) or ({N}, 1, ...), "
                         f"got {shape}")
    elif alpha.device != real.device:
        raise ValueError(f"gp_interpolate: alpha is on {alpha.device} but real is on {real.device}")
    elif not alpha.is_floating_point():
        raise TypeError(f"gp_interpolate: alpha must be floating point, got {alpha.dtype}")
    backend = _dispatch.choose(INTERPOLATE, impl, real.device)
    real = _dense(real)
    fake = _like(fake, real)
    if alpha.dim() != 1 or alpha.dtype != acc or not alpha.is_contiguous():  # a no-op .to() costs ~1 µs
        alpha = alpha.reshape(N).to(acc).contiguous()  # expanded or strided alphas are fine: N values
    args = (real, fake, alpha, backend)
    out = _dispatch.call(torch.ops.gancore.gp_interpolate_fwd, _Interpolate, _interpolate_impl, args, args[:3])
    return out if out.requires_grad else out.requires_grad_()


def gradient_norm_penalty(grad: torch.Tensor, *, kind: str = "wgan-gp", weight: float = 10.0,
                          center: float = 1.0, inv_scale: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """The penalty of per-sample gradients `grad` (N, ...), fused: norm per sample, penalty, mean.

    wgan-gp / dragan: weight * mean (||g|| - center)^2; wgan-gp-one-sided: weight * mean
    max(||g|| - center, 0)^2; r1 / r2: weight/2 * mean ||g||^2 (weight is the gamma of Mescheder et
    al.; center does not apply). `inv_scale` unscales a gradient taken from a GradScaler-scaled
    output before the norm (g * inv_scale is what is penalised). Returns a 0-dim tensor in float32
    (float64 for float64 gradients) that backpropagates through `grad`.
    """
    if not isinstance(grad, torch.Tensor):
        raise TypeError(f"gradient_norm_penalty: grad must be a tensor, got {type(grad).__name__}")
    if grad.dim() < 1 or grad.shape[0] == 0 or grad.numel() == 0:
        raise ValueError(f"gradient_norm_penalty: grad must be (N, ...) with N >= 1 and elements, "
                         f"got shape {tuple(grad.shape)}")
    if not grad.is_floating_point():
        raise TypeError(f"gradient_norm_penalty: grad must be a floating-point tensor, got {grad.dtype}")
    mode = _mode_of(kind)
    if not inv_scale > 0:
        raise ValueError(f"gradient_norm_penalty: inv_scale must be positive, got {inv_scale}")
    if mode == SQUARED_NORM:
        weight = weight / 2
    backend = _dispatch.choose(PENALTY, impl, grad.device)
    grad = _dense(grad)
    args = (grad, mode, float(center), float(weight), float(inv_scale), backend)
    penalty, _ = _dispatch.call(torch.ops.gancore.gradient_norm_penalty_fwd, _Penalty, _penalty_impl, args, args[:1])
    return penalty


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    kind: str = "wgan-gp",
    weight: float = 10.0,
    center: float = 1.0,
    labels: Any = None,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """The weighted gradient penalty of `critic`, a scalar to add to the critic's loss.

    kind: "wgan-gp" (on interpolates of real and fake, Gulrajani et al.), "wgan-gp-one-sided",
    "r1" (on reals, Mescheder et al.), "r2" (on fakes), "dragan" (on reals perturbed by
    0.5 * std(real) * U[0, 1) noise and interpolated, Kodali et al.). See gradient_norm_penalty for
    the formulas and the meaning of `weight` and `center`.

    labels: passed to conditional critics, critic(x, labels); a tuple is unpacked, critic(x, *labels).
    The critic's output may be a score per sample or a patch map: its sum is differentiated.
    alpha: the per-sample mixing weights of wgan-gp and dragan, x = alpha*real + (1-alpha)*fake (see
    gp_interpolate); when None, drawn uniform in [0, 1) from `generator`. A distributed trainer
    passes its own so that N processes draw what one process with the global batch would.
    generator: draws alpha (and DRAGAN's noise). scaler: a GradScaler in use; the gradient is
    taken of the scaled output (so fp16 intermediates do not underflow) and unscaled before the norm.
    real and fake are detached: the penalty trains the critic only. Call it inside the same autocast
    context as the critic's loss; under DistributedDataParallel pass the wrapped critic.
    """
    if kind not in KINDS:
        raise ValueError(f"gradient_penalty: kind must be one of {KINDS}, got {kind!r}")
    if not callable(critic):
        raise TypeError(f"gradient_penalty: critic must be callable, got {type(critic).__name__}")
    _check_tensor("gradient_penalty", "real", real)
    if kind in ("wgan-gp", "wgan-gp-one-sided", "r2"):
        if fake is None:
            raise ValueError(f"gradient_penalty: kind {kind!r} needs fake samples")
        _check_pair("gradient_penalty", real, fake)
    if alpha is not None and kind in ("r1", "r2"):
        raise ValueError(f"gradient_penalty: alpha applies to interpolating kinds (wgan-gp, dragan), not {kind!r}")
    real = real.detach()
    if kind in ("wgan-gp", "wgan-gp-one-sided"):
        x = gp_interpolate(real, fake.detach(), alpha, generator=generator, impl=impl)
    elif kind == "dragan":
        noise = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype)
        x = gp_interpolate(real, real + 0.5 * real.std() * noise, alpha, generator=generator, impl=impl)
    else:
        x = (real if kind == "r1" else fake.detach()).clone().requires_grad_(True)

    extra = () if labels is None else tuple(labels) if isinstance(labels, tuple) else (labels,)
    with torch.enable_grad():
        scores = critic(x, *extra)
        if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
            got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise TypeError(f"gradient_penalty: the critic must return a floating-point tensor, got {got}")
        if not scores.requires_grad:
            raise ValueError(_independent_output(scores))
        total = scores.sum()
        inv_scale = 1.0
        if scaler is not None and scaler.is_enabled():
            total = scaler.scale(total)
            inv_scale = 1.0 / float(scaler.get_scale())
        (grad,) = torch.autograd.grad(total, x, create_graph=True, allow_unused=True)
    if grad is None:
        raise ValueError(_independent_output(scores))
    return gradient_norm_penalty(grad, kind=kind, weight=weight, center=center, inv_scale=inv_scale, impl=impl)


def _independent_output(scores: torch.Tensor) -> str:
    return (f"gradient_penalty: the critic's output (shape {tuple(scores.shape)}) does not depend on its input, "
            "so there is no gradient to penalise; check that the critic uses its input and is not run "
            "under torch.no_grad() or with frozen/detached paths")


def _mode_of(kind: str) -> int:
    if kind not in _MODE:
        raise ValueError(f"gradient_norm_penalty: kind must be one of {KINDS}, got {kind!r}")
    return _MODE[kind]


def _check_tensor(op: str, name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    if t.dim() < 1 or t.shape[0] == 0 or t.numel() == 0:
        raise ValueError(f"{op}: {name} must be a batch (N, ...) with N >= 1, got shape {tuple(t.shape)}")


def _check_pair(op: str, real: Any, fake: Any) -> None:
    _check_tensor(op, "real", real)
    _check_tensor(op, "fake", fake)
    if fake.shape != real.shape:
        raise ValueError(f"{op}: real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if fake.dtype != real.dtype:
        raise TypeError(f"{op}: real and fake must have the same dtype, got {real.dtype} and {fake.dtype}")
    if fake.device != real.device:
        raise ValueError(f"{op}: real is on {real.device} but fake is on {fake.device}")


# ---- reference formulas (the oracle, and the source of the higher-order gradients) -----------------


def _per_sample(t: torch.Tensor) -> tuple[int, ...]:
    return (-1, *([1] * (t.dim() - 1)))


def ref_interpolate(real, fake, alpha):
    a = alpha.view(_per_sample(real))
    return (a * real.to(alpha.dtype) + (1 - a) * fake.to(alpha.dtype)).to(real.dtype)


def ref_interpolate_backward(grad, real, fake, alpha):
    """(dreal, dfake, dalpha) in differentiable PyTorch ops."""
    a = alpha.view(_per_sample(real))
    g = grad.to(alpha.dtype)
    dalpha = (g * (real.to(alpha.dtype) - fake.to(alpha.dtype))).flatten(1).sum(1)
    return (g * a).to(real.dtype), (g * (1 - a)).to(real.dtype), dalpha


def _penalty_terms(g, mode: int, center: float, inv_scale: float):
    """Per sample: the penalty p(||g * inv_scale||) and dp/dg divided by g, differentiably."""
    acc = _acc_dtype(g.dtype)
    gs = g.to(acc).reshape(g.shape[0], -1) * inv_scale
    if mode == SQUARED_NORM:
        return gs.square().sum(1), torch.full((g.shape[0],), 2 * inv_scale**2, dtype=acc, device=g.device)
    norm = torch.linalg.vector_norm(gs, dim=1)
    d = norm - center
    if mode == ONE_SIDED:
        d = d.clamp_min(0)
    positive = norm > 0
    coef = torch.where(positive, 2 * d / torch.where(positive, norm, torch.ones_like(norm)), 0)
    return d.square(), coef * inv_scale**2


def ref_norm_penalty(g, mode: int, center: float, weight: float, inv_scale: float):
    """(penalty, coef) as the fused kernels return them."""
    p, coef = _penalty_terms(g, mode, center, inv_scale)
    N = g.shape[0]
    return weight * p.mean(), coef * (weight / N)


def ref_norm_penalty_backward(grad, g, mode: int, center: float, weight: float, inv_scale: float):
    _, coef = _penalty_terms(g, mode, center, inv_scale)
    scale = grad.to(coef.dtype) * coef * (weight / g.shape[0])
    return (g.to(coef.dtype) * scale.view(_per_sample(g))).to(g.dtype)


# ---- backends --------------------------------------------------------------------------------------


def _interpolate_impl(real, fake, alpha, impl):
    if impl == "ref":
        out = torch.empty_like(real).copy_(ref_interpolate(real, fake, alpha))
    elif impl in ("cpu", "cuda"):
        out = getattr(_ext._C, f"gp_interpolate_forward_{impl}")(real, fake, alpha)
    elif impl == "triton":
        from gancore.kernels import gradient_penalty as kernels

        out = kernels.interpolate(real, fake, alpha)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(INTERPOLATE, impl)
    return out


def _interpolate_backward_impl(grad, real, fake, alpha, need_real, need_fake, need_alpha, impl):
    grad = _like(grad, real)
    if impl == "ref":
        dreal, dfake, dalpha = ref_interpolate_backward(grad, real, fake, alpha)
        dreal, dfake = torch.empty_like(real).copy_(dreal), torch.empty_like(real).copy_(dfake)
    elif impl in ("cpu", "cuda"):
        fn = getattr(_ext._C, f"gp_interpolate_backward_{impl}")
        dreal, dfake, dalpha = fn(grad, real, fake, alpha, need_real, need_fake, need_alpha)
    elif impl == "triton":
        from gancore.kernels import gradient_penalty as kernels

        dreal, dfake, dalpha = kernels.interpolate_backward(grad, real, fake, alpha, need_real, need_fake,
                                                            need_alpha)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(INTERPOLATE, impl)
    # one fresh empty tensor per absent gradient: a custom op's outputs may not alias each other
    return (dreal if need_real else real.new_empty(0), dfake if need_fake else real.new_empty(0),
            dalpha if need_alpha else alpha.new_empty(0))


def _penalty_impl(g, mode, center, weight, inv_scale, impl):
    if impl == "ref":
        penalty, coef = ref_norm_penalty(g, mode, center, weight, inv_scale)
    elif impl in ("cpu", "cuda"):
        penalty, coef = getattr(_ext._C, f"gradient_norm_penalty_forward_{impl}")(g, mode, center, weight, inv_scale)
    elif impl == "triton":
        from gancore.kernels import gradient_penalty as kernels

        penalty, coef = kernels.norm_penalty(g, mode, center, weight, inv_scale)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(PENALTY, impl)
    return penalty, coef


def _penalty_backward_impl(grad, g, coef, mode, center, weight, inv_scale, impl):
    if impl == "ref":
        scale = grad.to(coef.dtype) * coef
        dg = torch.empty_like(g).copy_(g.to(coef.dtype) * scale.view(_per_sample(g)))
    elif impl in ("cpu", "cuda"):
        dg = getattr(_ext._C, f"gradient_norm_penalty_backward_{impl}")(grad, g, coef)
    elif impl == "triton":
        from gancore.kernels import gradient_penalty as kernels

        dg = kernels.norm_penalty_backward(grad, g, coef)
    else:
        raise ValueError(f"unknown backend {impl!r}")
    _dispatch.note_ran(PENALTY, impl)
    return dg


# ---- registration: custom ops with fake tensors and autograd ---------------------------------------


@torch.library.custom_op("gancore::gp_interpolate_fwd", mutates_args=())
def _interpolate_op(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, impl: str) -> torch.Tensor:
    return _interpolate_impl(real, fake, alpha, impl)


@_interpolate_op.register_fake
def _(real, fake, alpha, impl):
    return torch.empty_like(real)


def _interpolate_setup_context(ctx, inputs, output):
    real, fake, alpha, impl = inputs
    ctx.save_for_backward(real, fake, alpha)
    ctx.impl = impl


def _interpolate_backward(ctx, grad, eager: bool = False):
    real, fake, alpha = ctx.saved_tensors
    need_real, need_fake, need_alpha = ctx.needs_input_grad[:3]
    args = (grad, real, fake, alpha, need_real, need_fake, need_alpha, ctx.impl)
    op = torch.ops.gancore.gp_interpolate_bwd
    dreal, dfake, dalpha = _dispatch.call(op, _InterpolateBackward, _interpolate_backward_impl, args,
                                          args[:4]) if eager else op(*args)
    return (dreal if need_real else None, dfake if need_fake else None, dalpha if need_alpha else None, None)


_interpolate_op.register_autograd(_interpolate_backward, setup_context=_interpolate_setup_context)


class _Interpolate(torch.autograd.Function):
    """The eager twin of gancore::gp_interpolate_fwd (same kernels, less host work per call)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _interpolate_impl(*inputs)
        _interpolate_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad):
        return _interpolate_backward(ctx, grad, eager=True)


@torch.library.custom_op("gancore::gp_interpolate_bwd", mutates_args=())
def _interpolate_bwd_op(grad: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                        need_real: bool, need_fake: bool, need_alpha: bool, impl: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _interpolate_backward_impl(grad, real, fake, alpha, need_real, need_fake, need_alpha, impl)


@_interpolate_bwd_op.register_fake
def _(grad, real, fake, alpha, need_real, need_fake, need_alpha, impl):
    return (torch.empty_like(real) if need_real else real.new_empty(0),
            torch.empty_like(real) if need_fake else real.new_empty(0),
            alpha.new_empty(alpha.shape[0] if need_alpha else 0))


def _interpolate_bwd_setup_context(ctx, inputs, output):
    grad, real, fake, alpha, need_real, need_fake, need_alpha, _impl = inputs
    ctx.save_for_backward(grad, real, fake, alpha)
    ctx.needed = (need_real, need_fake, need_alpha)


def _interpolate_bwd_backward(ctx, gg_real, gg_fake, gg_alpha):
    """The backward is bilinear in (grad, inputs): its vjp, from the reference formulas."""
    grad, real, fake, alpha = ctx.saved_tensors
    cotangents = [g if needed else None for g, needed in zip((gg_real, gg_fake, gg_alpha), ctx.needed)]
    d_grad, d_real, d_fake, d_alpha = vjp(ref_interpolate_backward, (grad, real, fake, alpha), cotangents)
    return d_grad, d_real, d_fake, d_alpha, None, None, None, None


_interpolate_bwd_op.register_autograd(_interpolate_bwd_backward, setup_context=_interpolate_bwd_setup_context)


class _InterpolateBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        output = _interpolate_backward_impl(*inputs)
        _interpolate_bwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _interpolate_bwd_backward(ctx, *grads)


@torch.library.custom_op("gancore::gradient_norm_penalty_fwd", mutates_args=())
def _penalty_op(g: torch.Tensor, mode: int, center: float, weight: float, inv_scale: float, impl: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    return _penalty_impl(g, mode, center, weight, inv_scale, impl)


@_penalty_op.register_fake
def _(g, mode, center, weight, inv_scale, impl):
    acc = _acc_dtype(g.dtype)
    return g.new_empty((), dtype=acc), g.new_empty(g.shape[0], dtype=acc)


def _penalty_setup_context(ctx, inputs, output):
    g, mode, center, weight, inv_scale, impl = inputs
    ctx.save_for_backward(g, output[1])
    ctx.args = (mode, center, weight, inv_scale, impl)


def _penalty_backward(ctx, grad, _grad_coef, eager: bool = False):
    g, coef = ctx.saved_tensors
    args = (grad, g, coef, *ctx.args)
    op = torch.ops.gancore.gradient_norm_penalty_bwd
    dg = _dispatch.call(op, _PenaltyBackward, _penalty_backward_impl, args, args[:2]) if eager else op(*args)
    return dg, None, None, None, None, None


_penalty_op.register_autograd(_penalty_backward, setup_context=_penalty_setup_context)


class _Penalty(torch.autograd.Function):
    """The eager twin of gancore::gradient_norm_penalty_fwd."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _penalty_impl(*inputs)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero tensor for coef's (absent) gradient
        _penalty_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad, _grad_coef):
        if grad is None:
            return (None,) * 6
        return _penalty_backward(ctx, grad, None, eager=True)


@torch.library.custom_op("gancore::gradient_norm_penalty_bwd", mutates_args=())
def _penalty_bwd_op(grad: torch.Tensor, g: torch.Tensor, coef: torch.Tensor, mode: int, center: float,
                    weight: float, inv_scale: float, impl: str) -> torch.Tensor:
    return _penalty_backward_impl(grad, g, coef, mode, center, weight, inv_scale, impl)


@_penalty_bwd_op.register_fake
def _(grad, g, coef, mode, center, weight, inv_scale, impl):
    return torch.empty_like(g)


def _penalty_bwd_setup_context(ctx, inputs, output):
    grad, g, _coef, mode, center, weight, inv_scale, _impl = inputs
    ctx.save_for_backward(grad, g)
    ctx.args = (mode, center, weight, inv_scale)


def _penalty_bwd_backward(ctx, gg):
    """Differentiates dg = grad * coef(g) * g again, from the reference formulas (coef recomputed)."""
    grad, g = ctx.saved_tensors
    d_grad, d_g = vjp(lambda grad, g: (ref_norm_penalty_backward(grad, g, *ctx.args),), (grad, g), (gg,))
    return d_grad, d_g, None, None, None, None, None, None


_penalty_bwd_op.register_autograd(_penalty_bwd_backward, setup_context=_penalty_bwd_setup_context)


class _PenaltyBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        output = _penalty_backward_impl(*inputs)
        _penalty_bwd_setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, gg):
        return _penalty_bwd_backward(ctx, gg)
