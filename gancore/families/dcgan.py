"""DCGAN (Radford, Metz and Chintala, 2016): all-convolutional G and D with batch norm.

The defaults are sized for the README's first run, `gancore train dcgan --steps 600`: about two minutes of
one CPU core for 32x32 networks of width 32, batch 32 and Adam(2e-3, (0.5, 0.99)), on the simple style of
the built-in shapes (data.style=simple: white, upright, near-centred circles, squares, triangles and
crosses on black). In 600 steps it learns those outlines; on the varied style (any colour, angle and
place: data.style=varied) it still draws blobs after 600 steps, and at the paper's lr (below) grey noise
after 200. The paper's setting is model.resolution=64, g_width=64, d_width=64, lr 2e-4, betas (0.5, 0.999),
train.batch_size=64.

Two phases: D on real images and fresh fakes, then G through the frozen D (every model.d_steps steps).
`loss` swaps the non-saturating BCE of the paper for hinge, least squares or Wasserstein. The training
tricks of gancore.families.tricks are model keys too. `fused` (the default) runs batch norm + activation
as one fused op (gancore.nn.fuse), with the plain network's state_dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gancore.families import BenchCase, register_family
from gancore.families.base import DataSpec, check_choice, check_image_spec, check_positive, check_power_of_two
from gancore.families.tricks import AdversarialFamily, PairLoss, TargetLoss, TrainingTricks, check_label_tricks
from gancore.losses import ADVERSARIAL_LOSSES
from gancore.models.dcgan import NORMS, DCGANDiscriminator, DCGANGenerator

#: The losses with label targets (the label tricks apply to them); the others come from gancore.losses.
TARGET_LOSSES = ("bce", "lsgan")


@dataclass
class ConvGANConfig(TrainingTricks):
    """The DCGAN networks and their optimisers, shared by dcgan and lsgan."""

    # Not the paper's 64 / 64 / 2e-4 / 0.999: ten times its learning rate, with a shorter second-moment
    # memory, is what lets a few hundred CPU steps draw shapes rather than grey noise (see the module doc).
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 100
    g_width: int = 32  # channels of G's last hidden layer; doubled per layer towards 4x4
    d_width: int = 32  # channels of D's first layer
    norm: str = "batch"  # normalisation in both networks: batch (the paper), layer, instance or none
    fused: bool = True  # gancore's fused norm + activation; false builds the same networks from plain torch.nn
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.5, 0.99)
    betas_d: tuple[float, float] = (0.5, 0.99)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "g_width", "d_width"):
            check_positive(f"model.{key}", getattr(self, key))


@dataclass
class DCGANConfig(ConvGANConfig):
    loss: str = "bce"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.loss", self.loss, tuple(sorted(ADVERSARIAL_LOSSES)))
        check_label_tricks(self, self.loss, TARGET_LOSSES)


@register_family
class DCGAN(AdversarialFamily):
    name = "dcgan"
    summary = "DCGAN (Radford et al. 2016): conv G/D with batch norm, BCE loss; 32x32 demo defaults"
    Config = DCGANConfig
    default_data = {"name": "shapes", "style": "simple"}  # the demo's data (module doc)
    default_train = {"batch_size": 32}  # the demo: half the paper's 64 halves the time per step
    bench_cases = {"full": BenchCase("64x64", ("model.resolution=64", "model.g_width=64", "model.d_width=64"),
                                     (16, 64)),
                   "quick": BenchCase("32x32", ("model.g_width=16", "model.d_width=16"), (8, 32))}

    def networks(self, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        g = DCGANGenerator(c.latent_dim, c.resolution, c.channels, c.g_width, c.norm, fused=c.fused,
                           tanh=c.unit_range, noise_std=c.g_noise, dropout=c.g_dropout)
        return g, DCGANDiscriminator(c.resolution, c.channels, c.d_width, c.norm, fused=c.fused)

    def make_loss(self) -> TargetLoss | PairLoss:
        c = self.config
        if c.loss == "bce":
            return TargetLoss("bce", g_loss=c.g_loss)
        if c.loss == "lsgan":
            return TargetLoss("least_squares", (0.0, 1.0, 1.0), g_loss=c.g_loss)
        return PairLoss(*ADVERSARIAL_LOSSES[c.loss])
