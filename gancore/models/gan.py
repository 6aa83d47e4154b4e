"""The networks of the original GAN (Goodfellow et al. 2014): fully connected G and D on any sample shape
(flattened), working in [-1, 1] coordinates.

The paper's D used maxout and dropout; here both networks are the ReLU MLPs of gancore.models.mlp. With
`unit_range` (trick 1 of gancore.families.tricks) the data's per-feature range is mapped to [-1, 1] by fixed
buffers: D's first layer sees normalised inputs and G ends in tanh, then maps back, so G's samples and the
data live in the same (data) coordinates everywhere outside the networks. The buffers are in the
state_dict, so a checkpoint carries the map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gancore.models.mlp import MLPCritic, MLPGenerator


class RangeMap(nn.Module):
    """A fixed per-feature affine map between the data's range [low, high] and [-1, 1]: the identity until
    set_range() is called. `to_unit` picks the direction its forward goes."""

    def __init__(self, features: int, to_unit: bool) -> None:
        super().__init__()
        self.to_unit = to_unit
        self.register_buffer("center", torch.zeros(features))
        self.register_buffer("half_range", torch.ones(features))

    @torch.no_grad()
    def set_range(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Map [low, high] (per feature) onto [-1, 1]; a constant feature keeps a unit scale."""
        half = (high - low) / 2
        self.center.copy_((high + low) / 2)
        self.half_range.copy_(torch.where(half > 0, half, torch.ones_like(half)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_unit:
            return (x - self.center) / self.half_range
        return x * self.half_range + self.center

    def extra_repr(self) -> str:
        return "data -> [-1, 1]" if self.to_unit else "[-1, 1] -> data"


class GANGenerator(nn.Module):
    """z (N, latent_dim) -> samples (N, *shape): an MLP, with tanh and the map back to the data's range when
    `unit_range`."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], width: int = 256, depth: int = 3, *,
                 unit_range: bool = True, noise_std: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.latent_dim, self.shape = latent_dim, tuple(shape)
        features = math.prod(self.shape)
        self.mlp = MLPGenerator(latent_dim, features, width, depth, tanh=unit_range, noise_std=noise_std,
                                dropout=dropout)
        self.to_data = RangeMap(features, to_unit=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_data(self.mlp(z)).reshape(z.shape[0], *self.shape)


class GANDiscriminator(nn.Module):
    """samples (N, *shape) -> one logit per sample, (N,): the map to [-1, 1], then an MLP."""

    def __init__(self, shape: tuple[int, ...], width: int = 256, depth: int = 3) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.from_data = RangeMap(math.prod(self.shape), to_unit=True)
        self.mlp = MLPCritic(math.prod(self.shape), width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.from_data(x.reshape(x.shape[0], -1)))
