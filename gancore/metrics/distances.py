"""Two-sample distances on features: kernel MMD, KID and the Wasserstein distance (exact and sliced).

All computed in float64; every random choice (KID subsets, sliced projections) comes from `seed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gancore.metrics._assignment import min_cost_assignment
from gancore.metrics._common import ArrayLike, features_2d, generator, to_tensor


def _pair(x: ArrayLike, y: ArrayLike, min_samples: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = features_2d(x, "x"), features_2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same feature dimension, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    for name, t in (("x", a), ("y", b)):
        if t.shape[0] < min_samples:
            raise ValueError(f"{name} needs at least {min_samples} samples, got shape {tuple(t.shape)}")
    return a, b.to(a.device)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 for (N, D) and (M, D) (or batched (..., N, D)), clamped at 0 against rounding."""
    sq = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return sq.clamp_min(0.0)


def _mmd2_from_kernels(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor,
                       unbiased: bool) -> torch.Tensor:
    """MMD^2 from kernel matrices (batched over leading dims); unbiased drops the diagonals (U-statistic)."""
    n, m = kxx.shape[-1], kyy.shape[-1]
    if unbiased:
        sum_xx = kxx.sum((-2, -1)) - torch.diagonal(kxx, dim1=-2, dim2=-1).sum(-1)
        sum_yy = kyy.sum((-2, -1)) - torch.diagonal(kyy, dim1=-2, dim2=-1).sum(-1)
        return sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2 * kxy.sum((-2, -1)) / (n * m)
    return kxx.mean((-2, -1)) + kyy.mean((-2, -1)) - 2 * kxy.mean((-2, -1))


def mmd2(x: ArrayLike, y: ArrayLike, *, bandwidth: float | None = None, unbiased: bool = True) -> float:
    """Squared MMD with the Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)).

    bandwidth defaults to the median heuristic: the median distance between distinct pairs of the pooled
    samples. unbiased=True gives the U-statistic of Gretton et al. (2012), which can be slightly
    negative when the distributions agree; False gives the V-statistic (biased, >= 0).
    """
    a, b = _pair(x, y)
    dxx, dyy, dxy = squared_distances(a, a), squared_distances(b, b), squared_distances(a, b)
    if bandwidth is None:
        pooled = torch.cat([a, b])
        d = squared_distances(pooled, pooled)
        off_diagonal = d[~torch.eye(d.shape[0], dtype=torch.bool, device=d.device)]
        bandwidth = float(off_diagonal.median().sqrt())
        if bandwidth == 0:
            raise ValueError("the median heuristic gave bandwidth 0 (most samples coincide); pass bandwidth")
    elif bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    scale = -0.5 / bandwidth**2
    return float(_mmd2_from_kernels((dxx * scale).exp(), (dyy * scale).exp(), (dxy * scale).exp(), unbiased))


@dataclass
class KID:
    """Kernel Inception Distance: mean and population std (ddof=0) of the unbiased MMD^2 over subsets."""

    mean: float
    std: float
    subset_size: int
    subsets: np.ndarray  # MMD^2 of each subset


def kid(real: ArrayLike, fake: ArrayLike, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> KID:
    """KID (Bińkowski et al. 2018): unbiased MMD^2 with k(a, b) = (gamma a.b + coef0)^degree, gamma = 1/D.

    Each of `subsets` draws subset_size real and subset_size fake samples, each without replacement and
    independently of the other subsets, from a generator seeded with `seed`. subset_size is capped at the
    smaller set's size (the result records the size used).
    """
    a, b = _pair(real, fake)
    size = min(subset_size, a.shape[0], b.shape[0])
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, got {subsets}")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    gen = generator(seed)

    def kernel(u, v):
        return (gamma * (u @ v.transpose(-1, -2)) + coef0) ** degree

    values = []
    chunk = max(1, 2**24 // (size * size))  # three kernel matrices of a chunk take ~400 MiB
    for start in range(0, subsets, chunk):
        count = min(chunk, subsets - start)
        pick_a = torch.stack([torch.randperm(a.shape[0], generator=gen)[:size] for _ in range(count)])
        pick_b = torch.stack([torch.randperm(b.shape[0], generator=gen)[:size] for _ in range(count)])
        sa, sb = a[pick_a.to(a.device)], b[pick_b.to(b.device)]
        values.append(_mmd2_from_kernels(kernel(sa, sa), kernel(sb, sb), kernel(sa, sb), True).cpu())
    scores = torch.cat(values).numpy()
    return KID(float(scores.mean()), float(scores.std()), size, scores)


def _wasserstein_1d(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """W_p^p between the empirical distributions of the rows of x (P, N) and y (P, M), uniform weights.

    W_p^p = integral over u in (0, 1) of |F^-1(u) - G^-1(u)|^p; both quantile functions are step
    functions, constant between consecutive points of {i/N} and {j/M}, so the integral is a finite sum.
    """
    n, m = x.shape[-1], y.shape[-1]
    xs, ys = x.sort(-1).values, y.sort(-1).values
    steps = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                       torch.arange(1, m + 1, dtype=torch.float64) / m]).sort().values
    edges = torch.cat([torch.zeros(1, dtype=torch.float64), steps]).to(x.device)
    width = edges[1:] - edges[:-1]
    middle = (edges[1:] + edges[:-1]) / 2
    ix = (middle * n).floor().long().clamp_max(n - 1)
    iy = (middle * m).floor().long().clamp_max(m - 1)
    return ((xs[..., ix] - ys[..., iy]).abs() ** p * width).sum(-1)


def wasserstein_distance(x: ArrayLike, y: ArrayLike, *, p: float = 1.0, method: str = "auto",
                         projections: int = 256, seed: int = 0, exact_limit: int = 256) -> float:
    """W_p between the empirical distributions of x (N, D) and y (M, D) (1-D arrays are D = 1).

    "exact": for D = 1 by quantile functions (any N, M); for D > 1 as an assignment problem on the
    costs |x_i - y_j|^p (Hungarian method), with each sample repeated lcm(N, M)/N or /M times when the
    sizes differ, which is exact for uniform weights. "sliced": the sliced Wasserstein distance
    (E_theta W_p^p(theta.x, theta.y))^(1/p) over `projections` directions drawn uniformly on the sphere
    from `seed`; a different quantity from W_p (it is never larger). "auto": exact when D = 1 or
    lcm(N, M) <= exact_limit, else sliced.
    """
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    x_t, y_t = (to_tensor(v, name) for v, name in ((x, "x"), (y, "y")))
    x_t, y_t = (t[:, None] if t.dim() == 1 else t for t in (x_t, y_t))
    a, b = _pair(x_t, y_t, min_samples=1)
    n, m, dim = a.shape[0], b.shape[0], a.shape[1]
    size = math.lcm(n, m)
    if method == "auto":
        method = "exact" if dim == 1 or size <= exact_limit else "sliced"
    if method == "exact":
        if dim == 1:
            return float(_wasserstein_1d(a.T, b.T, p)[0] ** (1 / p))
        if size > 4096:
            raise ValueError(f"exact Wasserstein needs an assignment of lcm(N, M) = {size} samples; that is "
                             "too large (limit 4096): use method='sliced' or sets of equal size")
        a_rep = a.repeat_interleave(size // n, dim=0)
        b_rep = b.repeat_interleave(size // m, dim=0)
        cost = (squared_distances(a_rep, b_rep).sqrt() ** p).cpu().numpy()
        cols = min_cost_assignment(cost)
        return float(cost[np.arange(size), cols].mean() ** (1 / p))
    if method == "sliced":
        directions = torch.randn(dim, projections, generator=generator(seed), dtype=torch.float64)
        directions = directions.to(a.device)
        directions = directions / directions.norm(dim=0, keepdim=True)
        per_direction = _wasserstein_1d((a @ directions).T, (b @ directions).T, p)
        return float(per_direction.mean() ** (1 / p))
    raise ValueError(f"method must be 'auto', 'exact' or 'sliced', got {method!r}")
