"""FID variants built on the batched Fréchet distance: per class, many sets, bootstrap, FID-infinity.

Each one forms all the statistics it needs first and then makes one batched `frechet_distance` call,
so a reference covariance is factored once however many sets it is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gancore.metrics._common import ArrayLike, features_2d, generator
from gancore.metrics.frechet import fid_from_features, frechet_distance
from gancore.metrics.stats import FeatureStats

# Memory for the resampled sets formed at once by fid_bootstrap.
_RESAMPLE_BYTES = 2**29


def _stats(value: FeatureStats | ArrayLike, name: str) -> FeatureStats:
    if isinstance(value, FeatureStats):
        return value
    features = features_2d(value, name)
    return FeatureStats(features.shape[1]).update(features)


def fid_many(reference: FeatureStats | ArrayLike, sets: Sequence[FeatureStats | ArrayLike]) -> np.ndarray:
    """FID of each set (e.g. each checkpoint's samples) against one reference, in one batched call."""
    if len(sets) == 0:
        raise ValueError("sets is empty: give at least one FeatureStats or feature array")
    ref = _stats(reference, "reference")
    stats = [_stats(s, f"sets[{k}]") for k, s in enumerate(sets)]
    for k, s in enumerate(stats):
        if s.dim != ref.dim:
            raise ValueError(f"sets[{k}] has dim {s.dim}, the reference has dim {ref.dim}")
    device = ref.mu.device
    mus = torch.stack([s.mu.to(device) for s in stats])
    sigmas = torch.stack([s.sigma.to(device) for s in stats])
    return frechet_distance(ref.mu, ref.sigma, mus, sigmas).cpu().numpy()


@dataclass
class IntraFID:
    """Per-class FID of a conditional generator (Miyato & Koyama 2018) and its mean over classes."""

    per_class: dict[int, float]
    mean: float


def intra_fid(real_features: ArrayLike, real_labels: ArrayLike, fake_features: ArrayLike,
              fake_labels: ArrayLike) -> IntraFID:
    """FID between real and generated features of each class present in real_labels, batched over classes.

    Every class of the real set must have at least 2 samples on both sides.
    """
    real = features_2d(real_features, "real_features")
    fake = features_2d(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {tuple(real.shape)}, fake {tuple(fake.shape)}")
    real_y = _labels(real_labels, real.shape[0], "real_labels")
    fake_y = _labels(fake_labels, fake.shape[0], "fake_labels")
    classes = sorted(set(real_y.tolist()))
    moments = []
    for features, labels, side in ((real, real_y, "real"), (fake, fake_y, "fake")):
        mus, sigmas = [], []
        for c in classes:
            members = features[labels == c]
            if members.shape[0] < 2:
                raise ValueError(f"class {c} has {members.shape[0]} {side} samples; intra-FID needs 2")
            stats = FeatureStats(features.shape[1]).update(members)
            mus.append(stats.mu)
            sigmas.append(stats.sigma)
        moments += [torch.stack(mus), torch.stack(sigmas)]
    values = frechet_distance(*moments).tolist()
    return IntraFID(per_class=dict(zip(classes, values)), mean=float(np.mean(values)))


def _labels(labels: ArrayLike, count: int, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if tensor.shape != (count,) or tensor.is_floating_point():
        raise ValueError(f"{name} must be {count} integer labels, got dtype {tensor.dtype} shape "
                         f"{tuple(tensor.shape)}")
    return tensor.cpu()


@dataclass
class BootstrapFID:
    """FID of all generated samples and a bootstrap confidence interval around it."""

    fid: float
    low: float
    high: float
    confidence: float
    bias: float  # mean of the resampled FIDs minus fid
    samples: np.ndarray  # the FID of each resampled set


def fid_bootstrap(reference: FeatureStats | ArrayLike, features: ArrayLike, *, resamples: int = 100,
                  confidence: float = 0.95, seed: int = 0) -> BootstrapFID:
    """Bootstrap confidence interval of FID: the generated set is resampled with replacement.

    The reference is held fixed (its statistics usually come from a far larger set). A resampled set
    repeats samples, so its effective size is smaller and its FID biased upward (FID grows as 1/N): the
    raw percentile interval would often miss the point estimate. The interval is therefore the
    percentile interval of the resampled FIDs shifted down by their bootstrap bias (their mean minus
    the point estimate). Seeded: the same seed gives the same interval.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2, got {resamples}")
    ref = _stats(reference, "reference")
    x = features_2d(features, "features")
    n = x.shape[0]
    point = float(fid_from_features(ref, x))
    gen = generator(seed)
    values = []
    chunk = max(1, min(8, _RESAMPLE_BYTES // (x.numel() * x.element_size())))
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        index = torch.randint(0, n, (count, n), generator=gen)
        values.append(torch.as_tensor(fid_from_features(ref, x[index.to(x.device)])).reshape(-1).cpu())
    samples = torch.cat(values).numpy()
    bias = float(samples.mean()) - point
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail]) - bias
    return BootstrapFID(point, float(low), float(high), confidence, bias, samples)


@dataclass
class FIDInfinity:
    """FID extrapolated to infinitely many samples (Chong & Forsyth 2020), with the fit behind it."""

    fid_infinity: float
    slope: float  # FID_N = fid_infinity + slope / N
    sizes: np.ndarray
    fids: np.ndarray


def fid_infinity(reference: FeatureStats | ArrayLike, features: ArrayLike, *, points: int = 15,
                 min_size: int | None = None, seed: int = 0) -> FIDInfinity:
    """FID-infinity: FID is linear in 1/N, so FID of random subsets of N in [min_size, len] is fitted by
    least squares and the line evaluated at 1/N = 0.

    As in the paper, each size draws its own random subset (seeded) and the sizes are evenly spaced;
    min_size defaults to a fifth of the samples (the paper uses 5,000 to 50,000).
    """
    ref = _stats(reference, "reference")
    x = features_2d(features, "features")
    n = x.shape[0]
    min_size = max(2, n // 5) if min_size is None else min_size
    if points < 2 or not 2 <= min_size < n:
        raise ValueError(f"need points >= 2 and 2 <= min_size < {n} (the number of features), "
                         f"got points={points}, min_size={min_size}")
    sizes = np.unique(np.linspace(min_size, n, points).astype(np.int64))
    gen = generator(seed)
    mus, sigmas = [], []
    for size in sizes:
        subset = x[torch.randperm(n, generator=gen)[:size]]
        stats = FeatureStats(x.shape[1]).update(subset)
        mus.append(stats.mu)
        sigmas.append(stats.sigma)
    device = ref.mu.device
    fids = frechet_distance(ref.mu, ref.sigma, torch.stack(mus).to(device), torch.stack(sigmas).to(device))
    fids = fids.cpu().numpy()
    slope, intercept = np.polyfit(1.0 / sizes, fids, deg=1)
    return FIDInfinity(float(intercept), float(slope), sizes, fids)

