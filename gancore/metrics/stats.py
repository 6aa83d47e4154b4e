"""Streaming feature statistics: count, mean and covariance in float64, mergeable across processes."""

from __future__ import annotations

import os

import numpy as np
import torch

from gancore.metrics._common import ArrayLike, check_finite, to_tensor
from gancore.ops import fid as fid_ops


class FeatureStats:
    """Count, mean and covariance (ddof=1, as np.cov) of a stream of feature batches, in float64.

    Each batch is centred on its own mean and merged with the pairwise update of Chan, Golub and LeVeque
    (1979): M = Ma + Mb + delta delta^T na nb / n, where M is the scatter matrix sum (x - mean)(x - mean)^T.
    No raw sum of squares is ever formed, so features offset by 1e4 lose no precision. Batches may be in
    any float dtype and on any device; the statistics live on the device of the first batch (or `device`).

    On CUDA the batch is merged by one fused Triton kernel (see docs/metrics.md); its products are
    float64 (DMMA tensor cores on A100/H100), or float32 without TF32 with fp64_products=False, for
    GPUs with slow float64; the running sums stay float64 either way.

    `save`/`load` use `.npz` files with keys `mu` and `sigma` (the pytorch-fid format, read and written),
    plus `count` and `extractor` when known. Statistics loaded without a count can be compared but not
    merged or updated.
    """

    def __init__(self, dim: int, *, device: torch.device | str | None = None, impl: str = "auto",
                 fp64_products: bool = True, extractor: str | None = None):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.impl = impl
        self.fp64_products = fp64_products
        self.extractor = extractor
        self.count: int | None = 0
        self._device = torch.device(device) if device is not None else None
        self._mean: torch.Tensor | None = None
        self._scatter: torch.Tensor | None = None  # upper triangle valid while _upper_only
        self._upper_only = False
        self._fixed_sigma: torch.Tensor | None = None  # for statistics loaded without a count

    # ----------------------------------------------------------------------------------- accumulation
    def update(self, features: ArrayLike) -> FeatureStats:
        """Adds a batch (N, dim) of features; returns self."""
        self._require_count("update")
        x = to_tensor(features, "features", dtype=None)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}), got {tuple(x.shape)}")
        check_finite(x, "features")
        if x.shape[0] == 0:
            return self
        self._allocate(x.device)
        x = x.to(self._device)
        n_b = x.shape[0]
        batch_mean = x.mean(0, dtype=torch.float64)
        n_a = self.count
        total = n_a + n_b
        delta = batch_mean - self._mean
        coef = torch.tensor([n_a * n_b / total], dtype=torch.float64, device=self._device)
        fid_ops.scatter_update(self._scatter[None], x[None], batch_mean[None], delta[None], coef,
                              impl=self.impl, fp64_products=self.fp64_products)
        self._upper_only = True
        self._mean = self._mean + delta * (n_b / total)
        self.count = total
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Adds the samples summarised by `other` (same dim); returns self."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"merge takes a FeatureStats, got {type(other).__name__}")
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dim {other.dim} into dim {self.dim}")
        self._require_count("merge")
        other._require_count("be merged")
        if other.count == 0:
            return self
        self._allocate(other._device)
        n_a, n_b = self.count, other.count
        total = n_a + n_b
        delta = other._mean.to(self._device) - self._mean
        self._scatter = (self.scatter + other.scatter.to(self._device)
                         + torch.outer(delta, delta) * (n_a * n_b / total))
        self._upper_only = False
        self._mean = self._mean + delta * (n_b / total)
        self.count = total
        return self

    def all_reduce(self, group=None) -> FeatureStats:
        """Combines the statistics of every rank of `group` (torch.distributed), in place on each rank.

        Counts and means are gathered (D numbers a rank), the global mean is formed identically on every
        rank, and then each rank's scatter re-centred on it, M_r + n_r d_r d_r^T with d_r = mean_r - mean,
        is summed: the parallel-axis theorem, exact up to rounding, with no sum of squares about 0.
        """
        import torch.distributed as dist

        self._require_count("all_reduce")
        device = self._device or _default_device(group)
        self._allocate(device)
        local = torch.cat([torch.tensor([float(self.count)], dtype=torch.float64, device=device), self._mean])
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, local, group=group)
        table = torch.stack(gathered)
        counts, means = table[:, 0], table[:, 1:]
        total = counts.sum()
        if float(total) == 0:
            return self
        mean = (counts[:, None] * means).sum(0) / total
        delta = self._mean - mean
        scatter = self.scatter + torch.outer(delta, delta) * float(self.count)
        dist.all_reduce(scatter, group=group)
        self._scatter, self._upper_only = scatter, False
        self._mean = mean
        self.count = int(round(float(total)))
        return self

    # ----------------------------------------------------------------------------------- results
    @property
    def mu(self) -> torch.Tensor:
        """Mean of the features, float64 (dim,)."""
        if self._mean is None:
            raise ValueError("FeatureStats is empty: update it with features first")
        return self._mean

    @property
    def scatter(self) -> torch.Tensor:
        """Sum of (x - mu)(x - mu)^T over the samples, float64 (dim, dim)."""
        self._require_count("give a scatter matrix")
        if self._scatter is None:
            raise ValueError("FeatureStats is empty: update it with features first")
        if self._upper_only:
            self._scatter = fid_ops.symmetrize(self._scatter)
            self._upper_only = False
        return self._scatter

    @property
    def sigma(self) -> torch.Tensor:
        """Unbiased covariance (ddof=1), float64 (dim, dim)."""
        if self._fixed_sigma is not None:
            return self._fixed_sigma
        if self.count is not None and self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.scatter / (self.count - 1)

    # ----------------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> None:
        """Writes mu and sigma (pytorch-fid's keys), plus count and extractor when known, to an .npz."""
        arrays = {"mu": self.mu.cpu().numpy(), "sigma": self.sigma.cpu().numpy()}
        if self.count is not None:
            arrays["count"] = np.asarray(self.count, dtype=np.int64)
        if self.extractor is not None:
            arrays["extractor"] = np.asarray(self.extractor)
        with open(path, "wb") as f:  # np.savez would append ".npz" to any other suffix
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str | None = "cpu") -> FeatureStats:
        """Reads an .npz with keys mu and sigma (pytorch-fid's, or gancore's with count and extractor)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable .npz statistics file ({exc})") from exc
        missing = [key for key in ("mu", "sigma") if key not in arrays]
        if missing:
            raise ValueError(f"{path}: statistics files need the keys 'mu' and 'sigma'; missing {missing} "
                             f"(found {sorted(arrays)})")
        mu, sigma = np.asarray(arrays["mu"]), np.asarray(arrays["sigma"])
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"{path}: mu must be (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}")
        count = int(arrays["count"]) if "count" in arrays else None
        extractor = str(arrays["extractor"]) if "extractor" in arrays else None
        return cls.from_moments(mu, sigma, count=count, device=device, extractor=extractor)

    @classmethod
    def from_moments(cls, mu: ArrayLike, sigma: ArrayLike, *, count: int | None = None,
                     device: torch.device | str | None = "cpu", extractor: str | None = None) -> FeatureStats:
        """Statistics from a mean and a covariance; without a count they cannot be merged or updated."""
        mu_t = to_tensor(mu, "mu", device=device)
        sigma_t = to_tensor(sigma, "sigma", device=device)
        if mu_t.dim() != 1 or sigma_t.shape != (mu_t.shape[0], mu_t.shape[0]):
            raise ValueError(f"mu must be (D,) and sigma (D, D), got {tuple(mu_t.shape)} and "
                             f"{tuple(sigma_t.shape)}")
        stats = cls(int(mu_t.shape[0]), device=mu_t.device, extractor=extractor)
        stats._mean = mu_t
        stats.count = count
        if count is None:
            stats._fixed_sigma = sigma_t
        elif count < 2:
            raise ValueError(f"count must be at least 2 for a covariance, got {count}")
        else:
            stats._scatter = sigma_t * (count - 1)
        return stats

    # ----------------------------------------------------------------------------------- helpers
    def _require_count(self, action: str) -> None:
        if self.count is None:
            raise ValueError(f"statistics loaded without a sample count cannot {action}; save them with "
                             "gancore (which stores 'count') to merge them later")

    def _allocate(self, device: torch.device) -> None:
        if self._mean is None:
            self._device = self._device or torch.device(device)
            self._mean = torch.zeros(self.dim, dtype=torch.float64, device=self._device)
            self._scatter = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self._device)

    def __repr__(self) -> str:
        return f"FeatureStats(dim={self.dim}, count={self.count}, extractor={self.extractor!r})"


def _default_device(group) -> torch.device:
    import torch.distributed as dist

    backend = dist.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def batch_moments(features: torch.Tensor, *, impl: str = "auto",
                  fp64_products: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (K, D), covariance (K, D, D)) of K equally sized sets (K, N, D), float64, in one pass.

    The batched form of FeatureStats.update: one launch of the fused scatter kernel covers every set.
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"features must have shape (K, N >= 2, D), got {tuple(features.shape)}")
    count, n, dim = features.shape
    mean = features.mean(1, dtype=torch.float64)
    scatter = torch.zeros(count, dim, dim, dtype=torch.float64, device=features.device)
    zeros = torch.zeros(count, dtype=torch.float64, device=features.device)
    fid_ops.scatter_update(scatter, features, mean, torch.zeros_like(mean), zeros, impl=impl,
                          fp64_products=fp64_products)
    return mean, fid_ops.symmetrize(scatter) / (n - 1)
