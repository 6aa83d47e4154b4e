"""LSGAN (Mao et al., 2017): least-squares losses in place of the cross-entropy, on DCGAN's networks.

D minimises 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] and G minimises 1/2 E[(D(G(z)) - c)^2], with the
paper's two codings: `coding=0-1-1` (a=0, b=1, c=1: G pushes its fakes to where D puts the real data) and
`coding=-1-1-0` (a=-1, b=1, c=0: the choice for which minimising the loss minimises the Pearson chi^2
divergence). The networks, the demo-sized defaults and the training tricks are DCGAN's
(gancore.families.dcgan); the label tricks act on unit labels that the coding maps to a + t (b - a).
"""

from __future__ import annotations

from dataclasses import dataclass

from gancore.families import register_family
from gancore.families.base import check_choice
from gancore.families.dcgan import DCGAN, ConvGANConfig
from gancore.families.tricks import TargetLoss

#: The paper's a-b-c codings (a: fake label, b: real label, c: G's target for its fakes).
CODINGS = {"0-1-1": (0.0, 1.0, 1.0), "-1-1-0": (-1.0, 1.0, 0.0)}


@dataclass
class LSGANConfig(ConvGANConfig):
    coding: str = "0-1-1"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.coding", self.coding, tuple(CODINGS))


@register_family
class LSGAN(DCGAN):
    name = "lsgan"
    summary = "LSGAN (Mao et al. 2017): least-squares losses, a-b-c coding 0-1-1 or -1-1-0; DCGAN's networks"
    Config = LSGANConfig  # bench_cases: DCGAN's
    default_data = {"name": "shapes"}  # the varied shapes, not DCGAN's simple demo style

    def make_loss(self) -> TargetLoss:
        return TargetLoss("least_squares", CODINGS[self.config.coding], g_loss=self.config.g_loss)
