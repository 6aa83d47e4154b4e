"""Feature extractors and the loop that runs one over images.

An extractor is anything that maps images (N, C, H, W) in [-1, 1] to features (N, D): the FID
InceptionV3, the built-in offline network below, any nn.Module or plain callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from gancore.metrics.stats import FeatureStats


class BuiltinExtractor(nn.Module):
    """A small feature extractor that needs no download: images (N, C, H, W) -> features (N, 256).

    Its weights are drawn from a fixed seed on a private CPU generator, so every instance built with
    the same seed (and torch version) is identical, offline. Its features are not comparable with
    Inception features; statistics carry the extractor's `name` so that they are not mixed up.

    Input: C = 1 or 3 (grey is repeated over 3 channels), any H, W >= 16, values in [-1, 1]. Images
    are resized to 32 x 32 (bilinear, antialiased). The features, each group scaled to the same weight:
    - layout (48): the image at 4 x 4, i.e. colour and coarse spatial structure;
    - texture (208): three stages of random 3 x 3 convolutions (16, 32, 56 channels; He-normal weights
      made zero-mean, so they respond to edges and texture rather than to brightness), leaky ReLU and
      2 x 2 average pooling; each stage is summarised by the spatial mean and standard deviation of
      its channels.
    """

    input_size = (32, 32)
    dim = 256
    _channels = (16, 32, 56)

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed
        self.name = f"gancore-builtin-v1/seed={seed}"
        gen = torch.Generator().manual_seed(seed)
        convs, cin = [], 3
        for cout in self._channels:
            conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")
            weight = torch.randn(conv.weight.shape, generator=gen) * (2.0 / (cin * 9)) ** 0.5
            with torch.no_grad():
                conv.weight.copy_(weight - weight.mean((2, 3), keepdim=True))
                conv.bias.zero_()
            convs.append(conv)
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (N, C, H, W), C = 1 or 3, got {tuple(images.shape)}")
        if images.shape[-1] < 16 or images.shape[-2] < 16:
            raise ValueError(f"images must be at least 16 x 16, got {tuple(images.shape[-2:])}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
        x = images.to(self.convs[0].weight.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        layout = F.adaptive_avg_pool2d(x, 4).flatten(1)
        groups = [layout * layout.shape[1] ** -0.5]
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            weight = (2 * x.shape[1]) ** -0.5
            groups += [x.mean((2, 3)) * weight, x.std((2, 3)) * weight]
            x = F.avg_pool2d(x, 2)
        return torch.cat(groups, 1)


Extractor = Callable[[torch.Tensor], torch.Tensor]


def _features(extractor: Extractor, images: torch.Tensor) -> torch.Tensor:
    """Runs the extractor and checks its answer: (N, D), or (N, D, 1, 1) as pytorch-fid's networks give."""
    out = extractor(images)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the feature extractor returned {type(out).__name__}, not a tensor")
    if out.dim() == 4 and out.shape[2:] == (1, 1):
        out = out[:, :, 0, 0]
    if out.dim() != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"the feature extractor must return (N, D) features for {images.shape[0]} images, "
                         f"got shape {tuple(out.shape)}")
    return out


def _batches(images: torch.Tensor | Iterable, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    for batch in images:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def compute_stats(extractor: Extractor, images: torch.Tensor | Iterable, *, batch_size: int = 50,
                  device: torch.device | str | None = None, keep_features: bool = False,
                  progress: Callable[[Iterable], Iterable] | None = None):
    """Feature statistics of `images` under `extractor`, streaming batch by batch.

    images: a tensor (N, C, H, W), split into batches of batch_size, or any iterable of image batches
    (a DataLoader; for (images, labels) pairs the first element is taken). device: where the extractor
    runs (default: where its parameters are, else CPU). progress: wraps the batch iterable (e.g. tqdm).
    Returns the FeatureStats, or (FeatureStats, features (N, D) on CPU) with keep_features.
    """
    if isinstance(extractor, nn.Module):
        param = next(extractor.parameters(), None)
        device = torch.device(device) if device is not None else (param.device if param is not None else None)
        if device is not None:
            extractor = extractor.to(device)
    device = torch.device(device) if device is not None else torch.device("cpu")
    stats: FeatureStats | None = None
    kept = []
    batches = _batches(images, batch_size)
    for batch in progress(batches) if progress is not None else batches:
        features = _features(extractor, batch.to(device))
        if stats is None:
            stats = FeatureStats(features.shape[1], extractor=getattr(extractor, "name", None))
        stats.update(features)
        if keep_features:
            kept.append(features.float().cpu())
    if stats is None:
        raise ValueError("no images were given: the image source yielded no batch")
    return (stats, torch.cat(kept)) if keep_features else stats
