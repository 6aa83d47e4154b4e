"""What the reference networks share: argument checks, and the residual add run inside a fused norm."""

from __future__ import annotations

import torch
from torch import nn

from gancore.nn import InstanceNormAct2d


def check_ints(minimum: int = 1, **values: int) -> None:
    """Each keyword must be an int >= minimum; the error names it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def add_residual(body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """x + body(x). When body ends in a fused instance norm, the addition is that op's `residual=`,
    which saves one full read and write of the activation; the module tree and keys stay the reference's.
    """
    last = body[-1]
    if not isinstance(last, InstanceNormAct2d):
        return x + body(x)
    h = x
    for i in range(len(body) - 1):
        h = body[i](h)
    return last(h, residual=x)
