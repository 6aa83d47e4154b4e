"""The Fréchet distance between Gaussians, batched, and its low-rank form for raw features.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(sqrt(S1) S2 sqrt(S1))

The trace term uses the symmetric form: its eigenvalues are real and non-negative in exact arithmetic,
so they are clamped at 0 and the result can be neither complex nor NaN, unlike sqrtm(S1 S2). The clamp
only absorbs round-off: a sigma that is not symmetric, or has an eigenvalue below zero by more than
round-off, is no covariance and is refused (clamping would turn it into a silent wrong answer). Any factor
F with F F^T = S1 gives F^T S2 F the same eigenvalues as sqrt(S1) S2 sqrt(S1) (both are similar to
S1 S2); F is the Cholesky factor when S1 is positive definite (a third of the cost of an eigh, and its
triangle halves the two products) and V sqrt(L) from eigh otherwise. It is computed once per distinct
S1, so K generated sets against one reference cost one factorisation.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from gancore.metrics._common import (
    ArrayLike,
    answer,
    any_numpy,
    check_finite,
    features_2d,
    full_precision_matmul,
    to_tensor,
)
from gancore.metrics.stats import FeatureStats, batch_moments
from gancore.ops import fid as fid_ops

METHODS = ("auto", "eigh", "newton_schulz")

# Matrices multiplied and decomposed at once: on the CPU a few (one per thread and then some); on a GPU
# as many as fit in about 2 GiB with the six (D, D) buffers a Newton–Schulz step needs for each.
_CPU_CHUNK = 8
_GPU_CHUNK_BYTES = 2**31

# How far from symmetric and PSD a covariance may be, relative to its largest entry: round-off of a
# float32 computation or file (eps 1.2e-7, times a growth with D) stays far below; a real defect does not.
COVARIANCE_RTOL = 1e-4


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *,
                     method: str = "auto", dtype: torch.dtype = torch.float64, impl: str = "auto"):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), batched.

    mu (..., D) and sigma (..., D, D), numpy arrays or torch tensors; leading dimensions broadcast, so K
    generated sets against one reference is `frechet_distance(mu_ref, s_ref, mus (K, D), sigmas (K, D, D))`.
    Returns a float (numpy input) or a 0-d tensor for one pair, else an array/tensor of the batch shape.

    method: "eigh" (eigenvalues of the symmetric form; the CPU default), "newton_schulz" (matrix
    products only; the CUDA default, with eigvalsh for any matrix where it does not converge), "auto".
    dtype: working precision, float64 by default; TF32 is off either way. impl: backend of the fused
    GPU steps ("auto", "ref", "triton"). Equal covariances give exactly |mu1 - mu2|^2, and the result is
    never negative (rounding could otherwise make a tiny distance -1e-13).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    as_numpy = any_numpy(mu1, sigma1, mu2, sigma2)
    device = next((v.device for v in (mu1, sigma1, mu2, sigma2) if isinstance(v, torch.Tensor)), None)
    mu1, mu2 = (to_tensor(v, n, dtype=dtype, device=device) for v, n in ((mu1, "mu1"), (mu2, "mu2")))
    sigma1, sigma2 = (to_tensor(v, n, dtype=dtype, device=device)
                      for v, n in ((sigma1, "sigma1"), (sigma2, "sigma2")))
    dim = _check_moments(mu1, sigma1, "mu1", "sigma1")
    if _check_moments(mu2, sigma2, "mu2", "sigma2") != dim:
        raise ValueError(f"feature dimensions differ: mu1/sigma1 have D={dim}, mu2/sigma2 have "
                         f"D={mu2.shape[-1]} (shapes {tuple(sigma1.shape)} and {tuple(sigma2.shape)})")
    with full_precision_matmul():
        check_covariance(sigma1, "sigma1")
        check_covariance(sigma2, "sigma2")
        diff = mu1 - mu2
        mean_term = (diff * diff).sum(-1)
        cov_term = _covariance_term(sigma1, sigma2, method, impl)
    result = (mean_term + cov_term).clamp_min(0.0)
    return answer(result, as_numpy)


def _check_moments(mu: torch.Tensor, sigma: torch.Tensor, mu_name: str, sigma_name: str) -> int:
    if mu.dim() < 1:
        raise ValueError(f"{mu_name} must have shape (..., D), got {tuple(mu.shape)}")
    dim = mu.shape[-1]
    if sigma.dim() < 2 or sigma.shape[-2:] != (dim, dim):
        raise ValueError(f"{sigma_name} must have shape (..., {dim}, {dim}) to match {mu_name} "
                         f"{tuple(mu.shape)}, got {tuple(sigma.shape)}")
    check_finite(mu, mu_name)
    check_finite(sigma, sigma_name)
    return dim


def check_covariance(sigma: torch.Tensor, name: str) -> None:
    """ValueError unless every matrix of `sigma` (..., D, D) is symmetric and positive semi-definite up
    to COVARIANCE_RTOL times its largest entry. PSD is tested by a Cholesky factorisation of
    sigma + tol I, which succeeds exactly when no eigenvalue is below -tol (cheaper than an eigh)."""
    scale = sigma.abs().amax(dim=(-2, -1))
    tol = COVARIANCE_RTOL * scale
    asymmetry = (sigma - sigma.transpose(-1, -2)).abs().amax(dim=(-2, -1))
    bad = asymmetry > tol
    if bool(bad.any()):
        k = _first(bad)
        raise ValueError(f"{name}{_where(k)} is not symmetric: max |S - S^T| = {float(asymmetry[k]):.3g}, more "
                         f"than {COVARIANCE_RTOL:g} x its largest entry {float(scale[k]):.3g}; a covariance is "
                         "symmetric (symmetrise it, (S + S^T) / 2, if the asymmetry is round-off of your own)")
    eye = torch.eye(sigma.shape[-1], dtype=sigma.dtype, device=sigma.device)
    shifted = sigma + torch.where(scale > 0, tol, 1.0)[..., None, None] * eye  # an all-zero matrix is PSD
    bad = torch.linalg.cholesky_ex(shifted)[1] != 0
    if bool(bad.any()):
        k = _first(bad)
        lowest = float(torch.linalg.eigvalsh(sigma[k] if sigma.dim() > 2 else sigma)[0])
        raise ValueError(f"{name}{_where(k)} is not positive semi-definite: its smallest eigenvalue is "
                         f"{lowest:.3g}, below the round-off tolerance -{float(tol[k]):.3g} "
                         f"({COVARIANCE_RTOL:g} x its largest entry); it is not a covariance matrix")


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0]) if mask.dim() else ()


def _where(index: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, index))}]" if index else ""


def _covariance_term(sigma1: torch.Tensor, sigma2: torch.Tensor, method: str, impl: str) -> torch.Tensor:
    """tr(S1) + tr(S2) - 2 tr sqrt(sqrt(S1) S2 sqrt(S1)) over the broadcast batch; 0 where S1 == S2."""
    batch = torch.broadcast_shapes(sigma1.shape[:-2], sigma2.shape[:-2])
    equal = (sigma1 == sigma2).all(dim=-1).all(dim=-1).expand(batch)
    zero = torch.zeros((), dtype=sigma1.dtype, device=sigma1.device)
    if bool(equal.all()):
        return zero.expand(batch)
    root = trace_sqrt_product(sigma1, sigma2, method=method, impl=impl)
    term = _trace(sigma1) + _trace(sigma2) - 2.0 * root
    return torch.where(equal, zero, term)


def _trace(matrices: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(matrices, dim1=-2, dim2=-1).sum(-1)


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor, *, method: str = "auto",
                       impl: str = "auto") -> torch.Tensor:
    """tr sqrt(sqrt(S1) S2 sqrt(S1)) for (..., D, D) tensors with broadcasting batch dimensions.

    The expression is symmetric in S1 and S2, so the side with fewer distinct matrices is factored.
    """
    if sigma2.shape[:-2].numel() < sigma1.shape[:-2].numel():
        sigma1, sigma2 = sigma2, sigma1
    batch = torch.broadcast_shapes(sigma1.shape[:-2], sigma2.shape[:-2])
    dim = sigma1.shape[-1]
    if method == "auto":
        method = "newton_schulz" if sigma1.device.type == "cuda" else "eigh"
    factor, lower = _factor(sigma1)
    factors = factor.reshape(-1, dim, dim)
    others = sigma2.reshape(-1, dim, dim)
    which_factor = torch.arange(factors.shape[0]).reshape(sigma1.shape[:-2]).expand(batch).reshape(-1)
    which_other = torch.arange(others.shape[0]).reshape(sigma2.shape[:-2]).expand(batch).reshape(-1)
    total = which_other.numel()
    out = torch.empty(total, dtype=sigma1.dtype, device=sigma1.device)
    if sigma1.device.type == "cpu":
        chunk = _CPU_CHUNK
    else:
        chunk = max(1, _GPU_CHUNK_BYTES // (6 * dim * dim * sigma1.element_size()))
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        # A shared factor stays one (D, D) matrix that every product broadcasts against.
        f = factors[0] if factors.shape[0] == 1 else factors[which_factor[start:stop]]
        o = others[start:stop] if others.shape[0] == total else others[which_other[start:stop]]
        out[start:stop] = _trace_sqrt_psd(_congruence(f, o, lower), method, impl)
    return out.reshape(batch)


def _factor(sigma: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(F, F is lower triangular) with F F^T = sigma: Cholesky if every matrix is positive definite."""
    chol, info = torch.linalg.cholesky_ex(sigma)
    if not bool((info == 0).all()):
        values, vectors = torch.linalg.eigh(sigma)
        return vectors * values.clamp_min(0.0).sqrt()[..., None, :], False
    return chol, True


def _congruence(factor: torch.Tensor, sigma: torch.Tensor, lower: bool) -> torch.Tensor:
    """F^T S F for a batch S (K, D, D) and F (D, D) or (K, D, D); with F lower triangular on the CPU,
    only the nonzero panels are multiplied.

    (S F)[:, J] = S[:, J:] F[J:, J] and (F^T P)[I, I:] = F[I:, I]^T P[I:, I:], which is what a
    triangular multiply does: about 5/3 D^3 flops instead of 4 D^3. Only the upper triangle of the
    result is formed, which is all that eigvalsh(UPLO="U") and Newton–Schulz (symmetrised) read.
    """
    dim = factor.shape[-1]
    panel = fid_ops.CPU_PANEL
    if not (lower and factor.device.type == "cpu" and dim > 2 * panel):
        return factor.transpose(-1, -2) @ sigma @ factor
    product = torch.empty_like(sigma)
    for start in range(0, dim, panel):
        stop = min(start + panel, dim)
        product[:, :, start:stop] = sigma[:, :, start:] @ factor[..., start:, start:stop]
    result = torch.zeros_like(sigma)
    for start in range(0, dim, panel):
        stop = min(start + panel, dim)
        left = factor[..., start:, start:stop].transpose(-1, -2)
        result[:, start:stop, start:] = left @ product[:, start:, start:]
    return result


def _trace_sqrt_psd(matrices: torch.Tensor, method: str, impl: str) -> torch.Tensor:
    """Sum of the square roots of the eigenvalues (clamped at 0) of symmetric matrices (upper triangles)."""
    if method == "eigh":
        return _eigvalsh(matrices).clamp_min(0.0).sqrt().sum(-1)
    values, converged = fid_ops.newton_schulz_trace_sqrt(fid_ops.symmetrize(matrices), impl=impl)
    if not bool(converged.all()):
        missing = ~converged
        fid_ops.warn_not_converged(int(missing.sum()), matrices.shape[0])
        fallback = _eigvalsh(matrices[missing]).clamp_min(0.0).sqrt().sum(-1)
        values = values.masked_scatter(missing, fallback)
    return values


def _eigvalsh(matrices: torch.Tensor) -> torch.Tensor:
    """eigvalsh of a batch (K, D, D) from upper triangles; on the CPU, one matrix per thread.

    LAPACK's tridiagonal reduction is a sequence of matrix-vector products with a barrier after each:
    threads inside one call help on free cores but collapse on shared ones (measured on a loaded 2-core
    machine: 10-25x slower with 2 threads than with 1 at D = 1024). Matrices of a batch are independent,
    so each worker thread takes its own share with one LAPACK thread, with no barriers; the caller's
    thread setting is untouched (it is per thread). A single matrix keeps torch's threading.
    """
    workers = min(torch.get_num_threads(), matrices.shape[0])
    if matrices.device.type != "cpu" or workers < 2:
        return torch.linalg.eigvalsh(matrices, UPLO="U")
    values = torch.empty(matrices.shape[:-1], dtype=matrices.dtype)

    def work(first: int) -> None:
        torch.set_num_threads(1)
        for k in range(first, matrices.shape[0], workers):
            values[k] = torch.linalg.eigvalsh(matrices[k], UPLO="U")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))
    return values


def fid_from_features(features_a, features_b, *, method: str = "auto", impl: str = "auto"):
    """FID between two sets of features, through the cheapest exact route.

    Each argument is raw features (N, D) (numpy or torch) or a `FeatureStats`; features_b may also be
    a batch (K, N, D) of equally sized sets, each compared with features_a. With raw features and N < D
    a covariance is rank-deficient and the D x D problem has an exact N x N form (the FastFID idea):
    - both raw, both N < D: tr sqrt(...) = ||Xa Xb^T||_* / sqrt((Na - 1)(Nb - 1)) for centred Xa, Xb,
      the nuclear norm taken as sum sqrt(eigvalsh(G G^T)) on the smaller side of G = Xa Xb^T;
    - one raw set with N < D against statistics (mu, S): tr sqrt(...) = sum sqrt(eigvalsh(X S X^T)) /
      sqrt(N - 1), with no factorisation of S.
    Otherwise both covariances are formed and `frechet_distance` is used. The answer is numpy (a float
    for one set) when both arguments are numpy arrays, else torch.
    """
    as_numpy = all(isinstance(v, np.ndarray) for v in (features_a, features_b))
    if isinstance(features_b, FeatureStats):
        features_a, features_b = features_b, features_a
    if isinstance(features_b, FeatureStats):
        return frechet_distance(features_a.mu, features_a.sigma, features_b.mu, features_b.sigma,
                                method=method, impl=impl)
    xb = to_tensor(features_b, "features_b")
    if xb.dim() not in (2, 3):
        raise ValueError(f"features_b must have shape (N, D) or (K, N, D), got {tuple(xb.shape)}")
    check_finite(xb, "features_b")
    batched = xb.dim() == 3
    xb = xb if batched else xb[None]
    if xb.shape[1] < 2:
        raise ValueError(f"features_b needs at least 2 samples per set, got shape {tuple(xb.shape)}")
    dim = xb.shape[2]
    with full_precision_matmul():
        if isinstance(features_a, FeatureStats):
            _check_dim(features_a.dim, dim)
            mua, sigmaa, xa = features_a.mu.to(xb), features_a.sigma.to(xb), None
            check_covariance(sigmaa, "the statistics' sigma")
        else:
            xa = features_2d(features_a, "features_a").to(xb.device)
            _check_dim(xa.shape[1], dim)
            if xa.shape[0] < 2:
                raise ValueError(f"features_a needs at least 2 samples, got shape {tuple(xa.shape)}")
            mua = xa.mean(0)
            xa = xa - mua
            sigmaa = None
        mub = xb.mean(1)
        xb = xb - mub[:, None, :]
        small_a = xa is not None and xa.shape[0] < dim
        small_b = xb.shape[1] < dim
        if small_a and small_b:
            cov_term = _low_rank_both(xa, xb)
        elif small_b:
            sigmaa = sigmaa if sigmaa is not None else batch_moments(xa[None], impl=impl)[1][0]
            cov_term = _low_rank_one(sigmaa, xb)
        elif small_a:
            cov_term = _low_rank_one(batch_moments(xb, impl=impl)[1], xa[None])
        else:
            sigmaa = sigmaa if sigmaa is not None else batch_moments(xa[None], impl=impl)[1][0]
            cov_term = _covariance_term(sigmaa, batch_moments(xb, impl=impl)[1], method, impl)
        diff = mua - mub
        result = ((diff * diff).sum(-1) + cov_term).clamp_min(0.0)
    return answer(result if batched else result[0], as_numpy)


def _check_dim(dim_a: int, dim_b: int) -> None:
    if dim_a != dim_b:
        raise ValueError(f"feature dimensions differ: features_a has D={dim_a}, features_b has D={dim_b}")


def _low_rank_one(sigma: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
    """tr(S) + tr(Sx) - 2 tr sqrt(...) for statistics S against centred raw sets (K, N, D), N < D."""
    n = centred.shape[1]
    gram = centred @ sigma @ centred.transpose(-1, -2) / (n - 1)
    root = _eigvalsh(gram).clamp_min(0.0).sqrt().sum(-1)
    return _trace(sigma) + (centred * centred).sum((-2, -1)) / (n - 1) - 2.0 * root


def _low_rank_both(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """The same term from two centred raw sets, xa (Na, D) and xb (K, Nb, D), through Xa Xb^T."""
    na, nb = xa.shape[0], xb.shape[1]
    cross = xa @ xb.transpose(1, 2)  # (K, Na, Nb)
    gram = cross @ cross.transpose(1, 2) if na <= nb else cross.transpose(1, 2) @ cross
    nuclear = _eigvalsh(gram).clamp_min(0.0).sqrt().sum(-1)
    trace_a = (xa * xa).sum() / (na - 1)
    trace_b = (xb * xb).sum((1, 2)) / (nb - 1)
    return trace_a + trace_b - 2.0 * nuclear / math.sqrt((na - 1) * (nb - 1))
