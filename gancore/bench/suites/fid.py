"""FID benchmarks: gancore.metrics against the methods of pytorch-fid and torchmetrics, in one run.

Cases (D = 2048 and 10,000 features a set; --quick: D = 256, 1,000 features):
- one FID: pytorch-fid's scipy.linalg.sqrtm(S1 @ S2) (the baseline), torchmetrics' and torch-fidelity's
  eigvals(S1 @ S2), gancore.metrics.frechet_distance; the note gives each one's relative difference
  from the baseline;
- 8 generated sets against one reference: 8 baseline calls, 8 eigvals calls, one batched gancore call;
- a tenth of the features (N < D) against reference statistics: the baseline forms their covariance
  and takes sqrtm; gancore takes the exact N x N route;
- feature statistics of 10,000 features: pytorch-fid's np.mean + np.cov (baseline), torchmetrics'
  raw float64 sums, gancore.metrics.FeatureStats in batches of 1,000; the note gives features/s.
scipy is needed here only (a benchmark dependency, never a runtime one).

Every contender, baseline included, is timed by the same ctx.time: the same warm-up and repeat
count (a call slower than a tenth of the time budget gets one warm-up and at least 3 samples).
"""

from __future__ import annotations

import numpy as np
import torch

from gancore.bench.timing import BenchContext
from gancore.metrics import FeatureStats, fid_from_features, frechet_distance

BASELINE = "pytorch-fid"
ALLOC_SENSITIVE = False

_SETS = 8


def _pytorch_fid(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's calculate_frechet_distance, without its retry-with-offset branch."""
    import scipy.linalg

    root = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if np.iscomplexobj(root):
        root = root.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def _eigvals_fid(mu1, sigma1, mu2, sigma2) -> float:
    """torchmetrics' _compute_fid, in float64."""
    diff = mu1 - mu2
    root = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * root)


def _problem(dim: int, samples: int, seed: int = 0):
    """A reference (features, mean, covariance) and _SETS generated sets' moments.

    The generated sets are linear maps X M_k of the reference features plus a shift, so their exact
    sample covariances are M_k^T S M_k: covariances of `samples` features each, for two GEMMs apiece.
    """
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    mixing = torch.eye(dim, dtype=torch.float64) + noise / dim**0.5
    features = (torch.randn(samples, dim, generator=gen, dtype=torch.float64) @ mixing).relu()
    stats = FeatureStats(dim).update(features)
    mu, sigma = stats.mu, stats.sigma
    mus, sigmas = [], []
    for k in range(_SETS):
        warp = torch.eye(dim, dtype=torch.float64) + (0.05 + 0.02 * k) * torch.randn(
            dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
        mus.append(mu @ warp + 0.01 * k)
        sigmas.append(warp.T @ sigma @ warp)
    return features.float(), mu, sigma, torch.stack(mus), torch.stack(sigmas)


def _rel(value: float, reference: float) -> str:
    return f"rel. diff vs pytorch-fid {abs(float(value) - reference) / abs(reference):.1e}"


def run(ctx: BenchContext):
    dim, samples = (256, 1000) if ctx.quick else (2048, 10_000)
    features, mu, sigma, mus, sigmas = _problem(dim, samples)
    np_mu, np_sigma = mu.numpy(), sigma.numpy()
    np_mus, np_sigmas = mus.numpy(), sigmas.numpy()
    case = f"one FID, D={dim}, {samples} features"
    reference = _pytorch_fid(np_mu, np_sigma, np_mus[0], np_sigmas[0])
    timing = ctx.time(lambda: _pytorch_fid(np_mu, np_sigma, np_mus[0], np_sigmas[0]))
    yield {"case": case, "contender": "pytorch-fid", **timing, "note": "scipy.linalg.sqrtm(S1 @ S2)"}
    value = _eigvals_fid(mu, sigma, mus[0], sigmas[0])
    timing = ctx.time(lambda: _eigvals_fid(mu, sigma, mus[0], sigmas[0]))
    yield {"case": case, "contender": "eigvals", **timing, "note": _rel(value, reference)}
    value = frechet_distance(np_mu, np_sigma, np_mus[0], np_sigmas[0])
    yield {"case": case, "contender": "gancore", **ctx.time(lambda: frechet_distance(
        np_mu, np_sigma, np_mus[0], np_sigmas[0])), "note": _rel(value, reference)}
    if ctx.device.type == "cuda":
        on_gpu = [t.to(ctx.device) for t in (mu, sigma, mus[0], sigmas[0])]
        value = float(frechet_distance(*on_gpu))
        yield {"case": case, "contender": "gancore-cuda", **ctx.time(lambda: frechet_distance(*on_gpu)),
               "note": _rel(value, reference)}

    case = f"{_SETS} sets vs 1 reference, D={dim}"
    references = [_pytorch_fid(np_mu, np_sigma, np_mus[k], np_sigmas[k]) for k in range(_SETS)]
    timing = ctx.time(lambda: [_pytorch_fid(np_mu, np_sigma, np_mus[k], np_sigmas[k]) for k in range(_SETS)])
    yield {"case": case, "contender": "pytorch-fid", **timing, "note": f"{_SETS} sqrtm calls"}
    timing = ctx.time(lambda: [_eigvals_fid(mu, sigma, mus[k], sigmas[k]) for k in range(_SETS)])
    yield {"case": case, "contender": "eigvals", **timing, "note": f"{_SETS} eigvals calls"}
    values = frechet_distance(np_mu, np_sigma, np_mus, np_sigmas)
    worst = max(abs(v - r) / abs(r) for v, r in zip(values, references))
    yield {"case": case, "contender": "gancore", **ctx.time(lambda: frechet_distance(
        np_mu, np_sigma, np_mus, np_sigmas)), "note": f"one batched call; max rel. diff {worst:.1e}"}
    if ctx.device.type == "cuda":
        on_gpu = [t.to(ctx.device) for t in (mu, sigma, mus, sigmas)]
        yield {"case": case, "contender": "gancore-cuda", **ctx.time(lambda: frechet_distance(*on_gpu))}

    few = features[: samples // 10].double().numpy() * 1.1
    case = f"{len(few)} features vs reference stats, D={dim}"
    reference_stats = FeatureStats.from_moments(mu, sigma, count=samples)

    def pytorch_fid_few():
        return _pytorch_fid(np_mu, np_sigma, few.mean(0), np.cov(few, rowvar=False))

    reference = pytorch_fid_few()
    timing = ctx.time(pytorch_fid_few)
    yield {"case": case, "contender": "pytorch-fid", **timing, "note": "np.cov + sqrtm"}
    value = float(fid_from_features(reference_stats, few))
    yield {"case": case, "contender": "gancore", **ctx.time(lambda: fid_from_features(reference_stats, few)),
           "note": "exact N x N route; " + _rel(value, reference)}

    case = f"statistics of {samples} features, D={dim}"
    np_features = features.numpy()

    def pytorch_fid_stats():
        return np.mean(np_features, axis=0), np.cov(np_features, rowvar=False)

    def raw_sums():
        x = features.double()
        return x.sum(0), x.T @ x

    def streaming():
        stats = FeatureStats(dim)
        for batch in features.split(1000):
            stats.update(batch)
        return stats.sigma

    for contender, fn, note in (("pytorch-fid", pytorch_fid_stats, "np.cov"),
                                ("torchmetrics", raw_sums, "raw float64 sums (no centring)"),
                                ("gancore", streaming, "FeatureStats, batches of 1000")):
        timing = ctx.time(fn)
        rate = samples / (timing["ms"] / 1e3)
        yield {"case": case, "contender": contender, **timing, "note": f"{note}; {rate:,.0f} features/s"}
