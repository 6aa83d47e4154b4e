"""Losses on feature maps: discriminator feature matching (pix2pixHD) and the VGG19 perceptual loss
(pix2pixHD's VGGLoss; SRGAN's VGG content loss is the same module with other layers and MSE).

Both reduce to float32 means, whatever precision the features were computed in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gancore.models.vgg import PIX2PIXHD_LAYERS, VGG19Features

#: pix2pixHD's weights of relu1_1 .. relu5_1.
PIX2PIXHD_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
CRITERIA = {"l1": F.l1_loss, "mse": F.mse_loss}


def feature_matching_loss(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]],
                          n_layers: int) -> torch.Tensor:
    """pix2pixHD's GAN feature loss: L1 between the discriminators' intermediate features on fake and real
    inputs (every stage but the logits), weighted 4 / (n_layers + 1) per layer and 1 / num_D per scale.
    `fake` / `real` are MultiscaleDiscriminator outputs (one list per scale); real features are targets."""
    if len(fake) != len(real):
        raise ValueError(f"feature_matching_loss: {len(fake)} scales of fake features, {len(real)} of real")
    layer_weight, scale_weight = 4.0 / (n_layers + 1), 1.0 / len(fake)
    total = fake[0][-1].new_zeros((), dtype=torch.float32)
    for fake_scale, real_scale in zip(fake, real):
        for f, r in zip(fake_scale[:-1], real_scale[:-1]):
            total = total + scale_weight * layer_weight * F.l1_loss(f.float(), r.detach().float())
    return total


class VGGLoss(nn.Module):
    """sum_i w_i * criterion(VGG19_i(x), VGG19_i(y)) over the named layers, y a fixed target (no graph).

    Weights come from a torchvision-layout vgg19 state_dict file (gancore.models.vgg.VGG19Features); the
    defaults are pix2pixHD's: relu1_1..relu5_1 with weights 1/32 .. 1, L1, on the unnormalised images.
    """

    def __init__(self, weights: str | os.PathLike, layers: Sequence[str] = PIX2PIXHD_LAYERS,
                 layer_weights: Sequence[float] = PIX2PIXHD_LAYER_WEIGHTS, criterion: str = "l1") -> None:
        super().__init__()
        if len(layer_weights) != len(layers):
            raise ValueError(f"VGGLoss: {len(layers)} layers but {len(layer_weights)} layer_weights")
        if criterion not in CRITERIA:
            raise ValueError(f"VGGLoss: criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        self.vgg = VGG19Features(weights, layers)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.criterion = CRITERIA[criterion]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.vgg(y)
        total = x.new_zeros((), dtype=torch.float32)
        for w, a, b in zip(self.layer_weights, self.vgg(x), targets):
            total = total + w * self.criterion(a.float(), b.float())
        return total
