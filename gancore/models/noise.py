"""Layers that the training tricks (gancore.families.tricks) put into generators: Gaussian noise after every
hidden layer, and dropout that stays on at test time.

Neither has parameters or buffers, and `hidden_activation` puts them in the activation's slot of a network,
so a network with a trick switched on has the same state_dict keys as one without, and gancore.nn.fuse still
finds the activation first in its slot and fuses it with the norm before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GaussianNoise(nn.Module):
    """x + std * N(0, 1), drawn afresh per call, in training mode only (the identity in eval mode)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class AlwaysDropout(nn.Module):
    """Dropout that is on in eval mode too: the generator's noise source of pix2pix and ganhacks."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True) if self.p else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def hidden_activation(activation: nn.Module, noise_std: float = 0.0, dropout: float = 0.0) -> nn.Module:
    """`activation`, or nn.Sequential(activation, GaussianNoise, AlwaysDropout) when a trick is on."""
    extras: list[nn.Module] = []
    if noise_std:
        extras.append(GaussianNoise(noise_std))
    if dropout:
        extras.append(AlwaysDropout(dropout))
    return nn.Sequential(activation, *extras) if extras else activation
