"""Periodic work during training beyond the optimisation itself: metric evaluation.

A hook is any object with an `every` (steps) attribute, called as hook(trainer) on every process at
those steps, returning scalars to log (or None). Collectives are allowed: all processes call it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

import torch

from gancore import metrics
from gancore.errors import ConfigError
from gancore.metrics.inception import find_weights

if TYPE_CHECKING:
    from gancore.train.trainer import Trainer


class Hook(Protocol):
    """`check(trainer)`, when a hook has it, runs once before training starts."""

    every: int

    def __call__(self, trainer: Trainer) -> Mapping[str, float] | None: ...


class FrechetHook:
    """A Fréchet distance between generator samples and the training data, every `every` steps.

    kind "fd-builtin" uses gancore.metrics' built-in, offline feature extractor and logs
    `metrics/fd_builtin` (comparable between gancore runs, not with published FIDs); kind "fid" uses the
    FID InceptionV3 with user-supplied weights and logs `metrics/fid`. The real statistics are computed
    once; the fake ones at fixed latents each time. Every process extracts its share and the features are
    gathered, so all agree on the result. `check(trainer)` runs at start-up, so that a setting that cannot
    work fails before the first step rather than at the first evaluation."""

    def __init__(self, every: int, num_samples: int, kind: str = "fd-builtin", weights: str | None = None,
                 batch_size: int = 64) -> None:
        self.every, self.num_samples, self.kind, self.weights = every, num_samples, kind, weights
        self.batch_size = batch_size
        self.key = "metrics/fid" if kind == "fid" else "metrics/fd_builtin"
        self._extractor: torch.nn.Module | None = None
        self._real: tuple[torch.Tensor, torch.Tensor] | None = None

    def check(self, trainer: Trainer) -> None:
        shape = tuple(trainer.spec.shape)
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ConfigError(f"metrics.kind={self.kind} needs images (1 or 3, H, W); the data's "
                              f"'{trainer.spec.key}' has shape {shape}: set metrics.every=0")
        if self.kind == "fd-builtin" and min(shape[1:]) < 16:
            raise ConfigError(f"metrics.kind=fd-builtin needs images of at least 16x16; the data's are "
                              f"{shape[1]}x{shape[2]}")
        if self.num_samples < trainer.dist.world_size:
            raise ConfigError(f"metrics.num_samples={self.num_samples} leaves no sample to some of the "
                              f"{trainer.dist.world_size} processes")
        if self.kind == "fid":
            try:
                find_weights(self.weights)
            except FileNotFoundError as err:
                raise ConfigError(f"metrics.kind=fid: {err} (metrics.inception_weights=PATH in a config)") \
                    from None

    def __call__(self, trainer: Trainer) -> dict[str, float]:
        if self._extractor is None:
            if self.kind == "fid":
                self._extractor = metrics.load_fid_inception(self.weights, device=trainer.device)
            else:
                self._extractor = metrics.BuiltinExtractor().to(trainer.device).eval()
        if self._real is None:
            self._real = self._statistics(trainer, self._real_images(trainer))
        fake = self._statistics(trainer, self._fake_images(trainer))
        return {self.key: float(metrics.frechet_distance(*self._real, *fake))}

    def _shares(self, trainer: Trainer) -> Iterator[range]:
        """This process's sample numbers, in equal-sized batches on every process."""
        per_rank = self.num_samples // trainer.dist.world_size
        start = trainer.dist.rank * per_rank
        for first in range(start, start + per_rank, self.batch_size):
            yield range(first, min(first + self.batch_size, start + per_rank))

    def _real_images(self, trainer: Trainer) -> Iterator[torch.Tensor]:
        key, n = trainer.spec.key, len(trainer.dataset)
        for numbers in self._shares(trainer):
            yield torch.stack([trainer.dataset[i % n][key] for i in numbers]).to(trainer.device)

    def _fake_images(self, trainer: Trainer) -> Iterator[torch.Tensor]:
        generator = torch.Generator(trainer.device).manual_seed(trainer.train_config.seed + 3)
        for numbers in self._shares(trainer):
            latents = trainer.family.make_latents(len(numbers), generator, trainer.device)
            yield trainer.generate(latents)

    @torch.no_grad()
    def _statistics(self, trainer: Trainer, batches: Iterator[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        stats = None
        for images in batches:
            if images.dim() != 4 or images.shape[1] not in (1, 3):
                raise ConfigError(f"metrics.kind={self.kind} needs images (N, 1 or 3, H, W); the family makes "
                                  f"{tuple(images.shape)}")
            feats = trainer.dist.all_gather_rows(self._extractor(images.float()).float())
            if stats is None:
                stats = metrics.FeatureStats(feats.shape[1])
            stats.update(feats)
        return stats.mu, stats.sigma
