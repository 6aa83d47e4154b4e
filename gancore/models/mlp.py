"""Fully connected generator and critic for low-dimensional data (the 2-D toy sets of WGAN-GP and GAN)."""

from __future__ import annotations

import torch
from torch import nn

from gancore.models.noise import hidden_activation


def _mlp(d_in: int, d_out: int, width: int, depth: int, noise_std: float = 0.0, dropout: float = 0.0) -> nn.Sequential:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width),
                   hidden_activation(nn.ReLU(inplace=True), noise_std, dropout)]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (N, latent_dim) -> points (N, out_dim): unbounded (the toy data is not squashed), or in [-1, 1] with
    `tanh=True`. `noise_std` and `dropout` are the hidden-layer tricks of gancore.models.noise."""

    def __init__(self, latent_dim: int, out_dim: int, width: int = 512, depth: int = 3, *, tanh: bool = False,
                 noise_std: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = _mlp(latent_dim, out_dim, width, depth, noise_std, dropout)
        self.out = nn.Tanh() if tanh else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z))


class MLPCritic(nn.Module):
    """points (N, in_dim) -> one score per point, (N,). No normalisation, so a gradient penalty is exact."""

    def __init__(self, in_dim: int, width: int = 512, depth: int = 3) -> None:
        super().__init__()
        self.net = _mlp(in_dim, 1, width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])
