"""Class-conditional networks of CGAN (Mirza and Osindero, 2014), in the DCGAN layout.

The label enters G as a one-hot vector concatenated with z, as in the paper. D takes it either the same way,
as one-hot planes concatenated with the image channels (`ConcatDiscriminator`), or through the projection
of Miyato and Koyama (2018): D(x, y) = psi(phi(x)) + <embed(y), sum-pooled phi(x)> (`ProjectionDiscriminator`).
The layers are the public DCGAN networks of gancore.models.dcgan, so `gancore.nn.fuse` fuses their batch norms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gancore.models._common import check_ints
from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator


def _check_labels(labels: torch.Tensor, num_classes: int, batch: int) -> None:
    if labels.dtype not in (torch.int64, torch.int32) or labels.shape != (batch,):
        raise ValueError(f"labels must be integer class indices of shape ({batch},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")


class ConditionalGenerator(nn.Module):
    """(z (N, latent_dim), labels (N,)) -> images (N, channels, resolution, resolution) in [-1, 1]."""

    def __init__(self, latent_dim: int, num_classes: int, resolution: int = 32, channels: int = 3,
                 width: int = 64) -> None:
        super().__init__()
        check_ints(latent_dim=latent_dim, num_classes=num_classes, width=width)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.net = DCGANGenerator(latent_dim + num_classes, resolution, channels, width, "batch")

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.num_classes, z.shape[0])
        return self.net(torch.cat([z, F.one_hot(labels.long(), self.num_classes).to(z.dtype)], 1))


class ConcatDiscriminator(nn.Module):
    """(images, labels) -> one logit per image: the DCGAN discriminator on the image with the label's one-hot
    code appended as constant planes."""

    def __init__(self, num_classes: int, resolution: int = 32, channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_ints(num_classes=num_classes, width=width)
        self.num_classes = num_classes
        self.net = DCGANDiscriminator(resolution, channels + num_classes, width, "batch")

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.num_classes, x.shape[0])
        planes = F.one_hot(labels.long(), self.num_classes).to(x.dtype)[:, :, None, None]
        return self.net(torch.cat([x, planes.expand(-1, -1, *x.shape[2:])], 1))


class ProjectionDiscriminator(nn.Module):
    """(images, labels) -> one logit per image: psi(phi(x)) + <embed(y), sum over space of phi(x)>, phi the
    DCGAN discriminator up to its last hidden layer, psi its 4x4 output convolution."""

    def __init__(self, num_classes: int, resolution: int = 32, channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_ints(num_classes=num_classes, width=width)
        self.num_classes = num_classes
        self.net = DCGANDiscriminator(resolution, channels, width, "batch")
        head = self.net.net[-1]  # the DCGAN layout ends in the 4x4 output conv
        self.embed = nn.Embedding(num_classes, head.in_channels)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.num_classes, x.shape[0])
        layers = self.net.net
        h = x
        for layer in layers[:-1]:
            h = layer(h)
        unconditional = layers[-1](h).reshape(x.shape[0])
        return unconditional + (self.embed(labels.long()) * h.sum((2, 3))).sum(1)
