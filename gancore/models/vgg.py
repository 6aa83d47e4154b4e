"""VGG19's convolutional part, for perceptual losses (pix2pixHD's VGG loss, SRGAN's VGG54 content loss).

The module is `features`, an nn.Sequential with torchvision's vgg19 layer list, so its keys are
torchvision's `features.N.weight` / `features.N.bias`: a file saved from torchvision's vgg19 state_dict
loads as it is (its `classifier.*` entries are ignored). Weights come only from a file the user names;
nothing is downloaded. torchvision is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

# torchvision's configuration "E" (VGG19): output channels of each 3x3 conv, "M" a 2x2 max-pool.
_VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                 512, 512, 512, 512, "M")

PIX2PIXHD_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _vgg19_layers() -> tuple[list[nn.Module], dict[str, int]]:
    """torchvision's vgg19().features, and the index of each named layer (conv3_1, relu3_1, pool3, ...)."""
    layers: list[nn.Module] = []
    index: dict[str, int] = {}
    block, conv, c_in = 1, 1, 3
    for item in _VGG19_CONFIG:
        if item == "M":
            index[f"pool{block}"] = len(layers)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            block, conv = block + 1, 1
            continue
        index[f"conv{block}_{conv}"] = len(layers)
        layers.append(nn.Conv2d(c_in, item, kernel_size=3, padding=1))
        index[f"relu{block}_{conv}"] = len(layers)
        layers.append(nn.ReLU())  # not in place: a requested conv output must survive its ReLU
        c_in, conv = item, conv + 1
    return layers, index


class VGG19Features(nn.Module):
    """Frozen VGG19 features: forward(x) returns the outputs of `layers` (names such as relu1_1, relu5_4
    or conv5_4), in that order, running only as deep as the deepest of them.

    The input goes in as given: pix2pixHD feeds its [-1, 1] images unnormalised; a caller that wants
    ImageNet statistics applies them before the call.
    """

    def __init__(self, weights: str | os.PathLike, layers: Sequence[str] = PIX2PIXHD_LAYERS) -> None:
        super().__init__()
        with torch.device("meta"):  # every value comes from the file: skip the random initialisation
            modules, index = _vgg19_layers()
        if isinstance(layers, str) or not layers:
            raise ValueError(f"VGG19Features: layers must be a non-empty sequence of layer names, got {layers!r}")
        unknown = [name for name in layers if name not in index]
        if unknown:
            raise ValueError(f"VGG19Features: unknown layers {unknown}; known: {', '.join(index)}")
        self.layers = tuple(layers)
        self._indices = [index[name] for name in self.layers]
        self.features = nn.Sequential(*modules)
        self._load(weights)
        self.requires_grad_(False)
        self.eval()

    def _load(self, weights: str | os.PathLike) -> None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"VGG19Features: weights must be the path of a torchvision vgg19 state_dict file, "
                            f"got {type(weights).__name__}")
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"VGG19Features: weights file {path!r} not found; pass a file saved from "
                                    f"torchvision's vgg19().state_dict() (keys features.N.weight/bias)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a corrupt or non-torch file: say which one
            raise ValueError(f"VGG19Features: cannot read weights file {path!r}: {e}") from e
        if not isinstance(state, dict):
            raise ValueError(f"VGG19Features: weights file {path!r} holds a {type(state).__name__}, "
                             f"not a state_dict")
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.load_state_dict(features, strict=True, assign=True)
        except RuntimeError as e:
            raise ValueError(f"VGG19Features: weights file {path!r} is not a torchvision vgg19 state_dict: {e}") \
                from e

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # a fixed feature extractor: stays in eval mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        wanted = set(self._indices)
        outputs = {}
        for i in range(max(wanted) + 1):
            x = self.features[i](x)
            if i in wanted:
                outputs[i] = x
        return [outputs[i] for i in self._indices]
