"""Argument checks shared by the fused ops: each error names the op, the argument and what it got."""

from __future__ import annotations

import math

import torch


def _shape_or_type(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def check_channel_vector(op: str, arg: str, t: torch.Tensor | None, x: torch.Tensor) -> None:
    """`t` is None or a floating-point (C,) tensor on x's device, C = x.shape[1]."""
    if t is None:
        return
    C = x.shape[1]
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != C:
        raise ValueError(f"{op}: {arg} must have shape ({C},) to match the {C} channels of x {tuple(x.shape)}, "
                         f"got {_shape_or_type(t)}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {arg} must be floating point, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{op}: {arg} is on {t.device} but x is on {x.device}")


def check_residual(op: str, residual: torch.Tensor | None, x: torch.Tensor) -> None:
    """`residual` is None or a tensor of x's shape, dtype and device."""
    if residual is None:
        return
    if not isinstance(residual, torch.Tensor) or residual.shape != x.shape:
        raise ValueError(f"{op}: residual must have the shape of x {tuple(x.shape)}, got {_shape_or_type(residual)}")
    if residual.dtype != x.dtype:
        raise TypeError(f"{op}: residual dtype {residual.dtype} differs from x dtype {x.dtype}")
    if residual.device != x.device:
        raise ValueError(f"{op}: residual is on {residual.device} but x is on {x.device}")


def check_eps(op: str, eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"{op}: eps must be a number, got {type(eps).__name__} {eps!r}")
    if not eps > 0 or eps == math.inf:
        raise ValueError(f"{op}: eps must be positive and finite, got {eps}")
    return float(eps)


def check_slope(op: str, negative_slope: object) -> float:
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        raise TypeError(f"{op}: negative_slope must be a number, got {type(negative_slope).__name__} "
                        f"{negative_slope!r}")
    if not math.isfinite(negative_slope):
        raise ValueError(f"{op}: negative_slope must be finite, got {negative_slope}")
    return float(negative_slope)
