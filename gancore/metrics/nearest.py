"""Nearest-neighbour metrics: the 1-NN two-sample test and k-NN precision and recall.

Distances are Euclidean, in float64, computed a block of rows at a time so that memory stays bounded
for tens of thousands of samples. Ties go to the lowest index (real samples come first in the pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gancore.metrics._common import ArrayLike
from gancore.metrics.distances import _pair, squared_distances

_ROWS = 1024  # rows of the distance matrix formed at once


@dataclass
class NearestNeighbourAccuracy:
    """Leave-one-out 1-NN classifier accuracy on the pooled real and generated samples.

    0.5 on both sides is ideal; real_accuracy near 1 with fake_accuracy near 1 means the sets are easily
    told apart; fake_accuracy well below 0.5 means generated samples sit on top of real ones
    (memorisation). Reported separately, as Xu et al. (2018) recommend.
    """

    real_accuracy: float
    fake_accuracy: float
    accuracy: float


def nearest_neighbour_accuracy(real: ArrayLike, fake: ArrayLike) -> NearestNeighbourAccuracy:
    """The 1-NN two-sample test (Lopez-Paz & Oquab 2017): each sample takes its nearest neighbour's label."""
    a, b = _pair(real, fake, min_samples=1)
    pool = torch.cat([a, b])
    is_real = torch.zeros(pool.shape[0], dtype=torch.bool, device=pool.device)
    is_real[: a.shape[0]] = True
    correct = torch.empty_like(is_real)
    for start in range(0, pool.shape[0], _ROWS):
        rows = pool[start:start + _ROWS]
        d = squared_distances(rows, pool)
        index = torch.arange(rows.shape[0], device=pool.device)
        d[index, index + start] = float("inf")  # leave one out
        correct[start:start + _ROWS] = is_real[d.argmin(1)] == is_real[start:start + _ROWS]
    real_acc = float(correct[: a.shape[0]].double().mean())
    fake_acc = float(correct[a.shape[0]:].double().mean())
    return NearestNeighbourAccuracy(real_acc, fake_acc, float(correct.double().mean()))


@dataclass
class PrecisionRecall:
    precision: float  # share of generated samples inside the real manifold
    recall: float  # share of real samples inside the generated manifold


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    radii = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], _ROWS):
        d = squared_distances(x[start:start + _ROWS], x)
        # The k+1 smallest include the row itself at distance 0.
        radii[start:start + _ROWS] = d.topk(k + 1, dim=1, largest=False).values[:, k].sqrt()
    return radii


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of `points` within radii[j] of some centre j (boundary included)."""
    inside = torch.empty(points.shape[0], dtype=torch.bool, device=points.device)
    for start in range(0, points.shape[0], _ROWS):
        d = squared_distances(points[start:start + _ROWS], centres).sqrt()
        inside[start:start + _ROWS] = (d <= radii[None, :]).any(1)
    return float(inside.double().mean())


def precision_recall(real: ArrayLike, fake: ArrayLike, *, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls as manifold estimates.

    Each sample's ball reaches its k-th nearest neighbour in its own set; precision is the share of
    generated samples inside some real ball, recall the share of real samples inside some generated one.
    """
    a, b = _pair(real, fake, min_samples=k + 1)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return PrecisionRecall(_coverage(b, a, _knn_radii(a, k)), _coverage(a, b, _knn_radii(b, k)))
