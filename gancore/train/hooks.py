"""Periodic work during training beyond the optimisation itself: metric evaluation.

A hook is any object with an `every` (steps) attribute, called as hook(trainer) on every process at
those steps, returning scalars to log (or None). Collectives are allowed: all processes call it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import torch

from gancore.families.base import ConfigError

if TYPE_CHECKING:
    from gancore.train.trainer import Trainer


class Hook(Protocol):
    every: int

    def __call__(self, trainer: Trainer) -> Mapping[str, float] | None: ...


def _metrics_module() -> Any:
    try:
        return importlib.import_module("gancore.metrics")
    except ImportError as err:
        raise RuntimeError(f"metrics.every > 0 needs gancore.metrics, which cannot be imported: {err}") \
            from err


class FIDHook:
    """FID between generator samples and the training data, with gancore.metrics' built-in (offline)
    feature extractor: FeatureStats(dim).update(features) -> .mu, .sigma, then frechet_distance.
    The real statistics are computed once; the fake ones at fixed latents each time. Every process
    extracts its share and the features are gathered, so all agree on the result."""

    def __init__(self, every: int, num_samples: int, batch_size: int = 64) -> None:
        self.every, self.num_samples, self.batch_size = every, num_samples, batch_size
        self._extractor = None
        self._real: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, trainer: Trainer) -> dict[str, float]:
        metrics = _metrics_module()
        if self._extractor is None:
            self._extractor = metrics.BuiltinExtractor().to(trainer.device).eval()
        if self._real is None:
            self._real = self._statistics(metrics, trainer, self._real_images(trainer))
        fake = self._statistics(metrics, trainer, self._fake_images(trainer))
        return {"metrics/fid": float(metrics.frechet_distance(*self._real, *fake))}

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
    def _statistics(self, metrics: Any, trainer: Trainer,
                    batches: Iterator[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        stats = None
        for images in batches:
            if images.dim() != 4 or images.shape[1] not in (1, 3):
                raise ConfigError(f"metrics.kind=fid needs images (N, 1 or 3, H, W); the family makes "
                                  f"{tuple(images.shape)}")
            feats = trainer.dist.all_gather_rows(self._extractor(images.float()).float())
            if stats is None:
                stats = metrics.FeatureStats(feats.shape[1])
            stats.update(feats)
        if stats is None:
            raise ConfigError(f"metrics.num_samples={self.num_samples} leaves no sample per process")
        return stats.mu, stats.sigma
