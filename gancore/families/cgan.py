"""CGAN (Mirza and Osindero, 2014): generator and discriminator both conditioned on the class label.

G sees z with the label's one-hot code appended; D sees the image with the code as extra input planes
(`discriminator: concat`, the paper's scheme) or through the projection discriminator of Miyato and Koyama
(2018) (`discriminator: projection`). The paper's networks are MLPs for MNIST; here both are the DCGAN
convolutional networks (as in most image CGANs since), with the DCGAN demo's optimiser settings so that a
few hundred steps on the built-in labelled shapes separate the classes. The default data is their simple
style, as DCGAN's demo (white, upright, near-centred shapes): `gancore train cgan --steps 600` then draws one
clean shape per tile, of the requested class (a 150-step run on the varied style, data.style=varied, had left
coloured blobs). Fakes take the labels of the real batch, so D sees the same class mix on both sides.
Sample grids put one class per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_image_spec,
    check_positive,
    check_power_of_two,
)
from gancore.losses import ADVERSARIAL_LOSSES, adversarial_losses
from gancore.models.cgan import ConcatDiscriminator, ConditionalGenerator, ProjectionDiscriminator
from gancore.nn import fuse
from gancore.utils.visual import save_image_grid

DISCRIMINATORS = {"concat": ConcatDiscriminator, "projection": ProjectionDiscriminator}


@dataclass
class CGANConfig:
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 100
    g_width: int = 32
    d_width: int = 32
    discriminator: str = "concat"  # concat (one-hot planes, the paper) or projection (Miyato and Koyama)
    loss: str = "bce"
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.5, 0.99)
    betas_d: tuple[float, float] = (0.5, 0.99)
    fused: bool = True  # batch norm + activation through gancore's fused op; false: plain torch.nn

    def __post_init__(self) -> None:
        check_choice("model.discriminator", self.discriminator, tuple(DISCRIMINATORS))
        check_choice("model.loss", self.loss, tuple(sorted(ADVERSARIAL_LOSSES)))
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "g_width", "d_width"):
            check_positive(f"model.{key}", getattr(self, key))


def class_labels(n: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n labels in contiguous blocks, class k for samples [k n / K, (k + 1) n / K): one row per class."""
    return torch.arange(n, device=device) * num_classes // n


@register_family
class CGAN(Family):
    name = "cgan"
    summary = "CGAN (Mirza & Osindero 2014): G and D conditioned on the class (one-hot, or projection D)"
    Config = CGANConfig
    default_data = {"name": "shapes", "style": "simple"}  # the demo's data (module doc)
    default_train = {"batch_size": 32}
    bench_cases = {"full": BenchCase("32x32", ("model.resolution=32",), (16, 64)),
                   "quick": BenchCase("16x16", ("model.resolution=16", "model.g_width=16", "model.d_width=16"),
                                      (8,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        if not spec.num_classes:
            raise ConfigError(f"{self.name} needs labelled data (samples with a 'label' and a dataset with "
                              f"num_classes), such as the built-in data.name=shapes")
        if self.dataset is not None and "label" not in self.dataset[0]:
            raise ConfigError(f"{self.name} needs samples with a 'label'; the data gives {sorted(self.dataset[0])}")
        self.spec = spec
        self.d_loss, self.g_loss = adversarial_losses(c.loss)
        g: nn.Module = ConditionalGenerator(c.latent_dim, spec.num_classes, c.resolution, c.channels, c.g_width)
        d: nn.Module = DISCRIMINATORS[c.discriminator](spec.num_classes, c.resolution, c.channels, c.d_width)
        if c.fused:
            g, d = fuse(g), fuse(d)
        return {"G": Network(g, lr=c.lr_g, betas=c.betas_g, ema=True),
                "D": Network(d, lr=c.lr_d, betas=c.betas_d)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real, labels = ctx.batch[self.spec.key], ctx.batch["label"]
        fake = ctx.nets["G"](ctx.randn(self.config.latent_dim), labels).detach()
        # Separate calls, so batch norm sees all-real and all-fake batches, as in DCGAN.
        real_score, fake_score = ctx.nets["D"](real, labels), ctx.nets["D"](fake, labels)
        return {"loss": self.d_loss(real_score, fake_score),
                "real_score": real_score.detach().float().mean(),
                "fake_score": fake_score.detach().float().mean()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        labels = ctx.batch["label"]
        return {"loss": self.g_loss(ctx.nets["D"](ctx.nets["G"](ctx.randn(self.config.latent_dim), labels),
                                                   labels))}

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """{"z": Gaussian latents, "label": the classes in contiguous blocks (class_labels)}."""
        return {"z": torch.randn(n, self.config.latent_dim, generator=generator, device=device),
                "label": class_labels(n, self.spec.num_classes, device)}

    def generate(self, nets: dict[str, nn.Module], latents: dict[str, torch.Tensor]) -> torch.Tensor:
        return nets["G"](latents["z"], latents["label"])

    def save_samples(self, samples: torch.Tensor, path: str) -> None:
        """One row per class (the blocks of make_latents), black where a class has fewer samples."""
        tiles = F.pad(samples.detach().float().cpu(), (1, 1, 1, 1), value=-1.0)  # 2-pixel black gaps
        labels = class_labels(len(tiles), self.spec.num_classes)
        blocks = [tiles[labels == k] for k in range(self.spec.num_classes)]
        rows = [torch.cat(list(block), dim=-1) for block in blocks if len(block)]
        width = max(r.shape[-1] for r in rows)
        mosaic = torch.cat([F.pad(r, (0, width - r.shape[-1]), value=-1.0) for r in rows], dim=-2)
        save_image_grid(mosaic[None], path)
