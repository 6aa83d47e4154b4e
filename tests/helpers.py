"""Shared test helpers: the eager oracle and dtype tolerances."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (atol, rtol) for outputs and gradients of ops computed in the given storage dtype
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 2e-2),
}


def eager_instance_norm_act(x, weight=None, bias=None, *, eps=1e-5, activation="leaky_relu",
                            negative_slope=0.2, residual=None):
    """act(F.instance_norm(x)) + residual in float64 (F.instance_norm refuses H*W == 1 in training,
    so that case uses the same formula written out)."""
    x64 = x.double()
    w = weight.double() if weight is not None else None
    b = bias.double() if bias is not None else None
    if x.shape[2:].numel() > 1:
        y = F.instance_norm(x64, weight=w, bias=b, eps=eps)
    else:
        y = torch.zeros_like(x64)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = y * (w.view(shape) if w is not None else 1) + (b.view(shape) if b is not None else 0)
    if activation == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    elif activation == "relu":
        y = F.relu(y)
    if residual is not None:
        y = y + residual.double()
    return y


def assert_close(actual, expected, dtype, scale=1.0):
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol * scale, rtol=rtol * scale)
