"""GAN (Goodfellow et al., 2014): fully connected G and D, trained on D's cross-entropy.

`g_loss` picks the generator's loss: the paper's minimax log(1 - D(G(z))), or the non-saturating
-log D(G(z)) it recommends in practice (the default). The default data is the built-in ring of 8 Gaussians,
where the samples show in a scatter plot; any data works, flattened (images go through the MLPs as vectors).
With unit_range (trick 1) the networks work in [-1, 1]: the data's per-feature range, read from up to
4096 training samples of vector data (images are in [-1, 1] already), is mapped there by fixed buffers.
It is off by default here: on the ring, four of the eight modes then sit near the edges of [-1, 1], in
tanh's saturation, and runs kept collapsing onto exactly those four (the modes on the axes), while a linear
output spread over all eight. Defaults: a 2-D latent, 3 x 128 ReLU MLPs, Adam with D twice as fast as G.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gancore.families import BenchCase, register_family
from gancore.families.base import DataSpec, check_positive
from gancore.families.tricks import AdversarialFamily, TargetLoss, TrainingTricks
from gancore.models.gan import GANDiscriminator, GANGenerator

#: Samples read to find the range of vector data (trick 1).
RANGE_SAMPLES = 4096


@dataclass
class GANConfig(TrainingTricks):
    unit_range: bool = False  # see the module doc
    latent_dim: int = 2
    width: int = 128  # hidden units of both MLPs
    depth: int = 3  # hidden layers of both MLPs
    lr_g: float = 1e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.5, 0.999)
    betas_d: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("latent_dim", "width", "depth"):
            check_positive(f"model.{key}", getattr(self, key))


def data_range(dataset, key: str, n: int = RANGE_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (min, max) over the first n samples of `dataset[key]`, flattened."""
    samples = torch.stack([dataset[i][key].reshape(-1).float() for i in range(min(n, len(dataset)))])
    return samples.min(0).values, samples.max(0).values


@register_family
class GAN(AdversarialFamily):
    name = "gan"
    summary = "GAN (Goodfellow et al. 2014): MLP G/D, minimax or non-saturating loss; 2-D ring of 8 Gaussians"
    Config = GANConfig
    default_data = {"name": "ring"}
    # No EMA: the average of a G that still moves between modes puts samples between them.
    default_train = {"batch_size": 256, "ema_beta": 0.0}
    bench_cases = {"full": BenchCase("ring, width 512", ("model.width=512",), (256, 1024)),
                   "quick": BenchCase("ring, width 128", (), (64, 256))}

    def networks(self, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
        c = self.config
        g = GANGenerator(c.latent_dim, spec.shape, c.width, c.depth, unit_range=c.unit_range, noise_std=c.g_noise,
                         dropout=c.g_dropout)
        d = GANDiscriminator(spec.shape, c.width, c.depth)
        if c.unit_range and len(spec.shape) == 1 and self.dataset is not None:
            low, high = data_range(self.dataset, spec.key)
            g.to_data.set_range(low, high)
            d.from_data.set_range(low, high)
        return g, d

    def make_loss(self) -> TargetLoss:
        return TargetLoss("bce", g_loss=self.config.g_loss)
