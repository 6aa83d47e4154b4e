"""The two fused steps of the metrics engine and their backends (see gancore.ops._dispatch).

- fid_scatter: S += (X - m)^T (X - m) + c * delta delta^T, the Chan et al. merge of a feature batch
  into running statistics. ref: torch GEMMs; triton: kernels/fid.py scatter_update_kernel.
- fid_newton_schulz: the trace of the square root of a batch of symmetric PSD matrices by the coupled
  Newton–Schulz iteration. ref: torch bmm; triton: kernels/fid.py newton_schulz_*_kernel.

On CPU tensors the torch path is the intended one (MKL GEMMs, LAPACK): no fused CPU kernel exists, so
"auto" picks ref there without a fallback warning. Both backends keep only the upper triangle of each
symmetric matrix up to date; `symmetrize` mirrors it.
"""

from __future__ import annotations

import os
import warnings

import torch

from gancore.ops._dispatch import choose, note_ran, register_op

register_op("fid_scatter", triton="fid")
register_op("fid_newton_schulz", triton="fid")

# Column panel of the blocked symmetric product on the CPU: only panels on or above the diagonal are
# computed, so X^T X costs (1 + 1/P) / 2 of a full GEMM for P panels.
_CPU_PANEL = 256


def pick_backend(op: str, impl: str, device: torch.device) -> str:
    """The backend for `op`: on CPU tensors the torch path is these ops' CPU backend, so "auto" (and
    GANCORE_IMPL=cpu or ref) picks it quietly; anything else goes through the common dispatch."""
    forced = os.environ.get("GANCORE_IMPL", "")
    if impl == "auto" and device.type == "cpu" and forced in ("", "auto", "cpu", "ref"):
        return "ref"
    return choose(op, impl, device)


def symmetrize(upper: torch.Tensor) -> torch.Tensor:
    """The symmetric matrices whose upper triangles are those of `upper` (..., D, D)."""
    return torch.triu(upper) + torch.triu(upper, diagonal=1).transpose(-1, -2)


def scatter_update(scatter: torch.Tensor, x: torch.Tensor, batch_mean: torch.Tensor, delta: torch.Tensor,
                   coef: torch.Tensor, *, impl: str = "auto", fp64_products: bool = True) -> None:
    """scatter[k] += (x[k] - batch_mean[k])^T (x[k] - batch_mean[k]) + coef[k] delta[k] delta[k]^T.

    scatter (K, D, D) float64, updated in place on (at least) its upper triangle; x (K, N, D) in any
    float dtype; batch_mean and delta (K, D) float64; coef (K,) float64. With fp64_products=False the
    products of centred features are formed in float32 (never TF32) and summed into float64.
    """
    backend = pick_backend("fid_scatter", impl, x.device)
    if backend == "triton":
        _scatter_update_triton(scatter, x, batch_mean, delta, coef, fp64_products)
    else:
        _scatter_update_torch(scatter, x, batch_mean, delta, coef, fp64_products)
    note_ran("fid_scatter", backend)


def _scatter_update_torch(scatter, x, batch_mean, delta, coef, fp64_products):
    centred = x.to(torch.float64) - batch_mean[:, None, :]
    if not fp64_products:
        centred = centred.to(torch.float32)
    dim = x.shape[-1]
    if x.device.type == "cpu" and dim > 2 * _CPU_PANEL:
        for start in range(0, dim, _CPU_PANEL):
            stop = min(start + _CPU_PANEL, dim)
            panel = torch.bmm(centred[:, :, :stop].transpose(1, 2), centred[:, :, start:stop])
            scatter[:, :stop, start:stop] += panel.to(torch.float64)
    else:
        scatter += torch.bmm(centred.transpose(1, 2), centred).to(torch.float64)
    scatter.baddbmm_((delta * coef[:, None])[:, :, None], delta[:, None, :])  # rank one, in place


def _scatter_update_triton(scatter, x, batch_mean, delta, coef, fp64_products):
    from gancore.kernels import fid as kernels

    if x.stride(-1) != 1:
        x = x.contiguous()
    if scatter.stride(-1) != 1 or scatter.dtype != torch.float64:
        raise ValueError(f"scatter must be float64 with unit column stride, got {scatter.dtype} "
                         f"with strides {scatter.stride()}")
    count, n, dim = x.shape
    tiles = _cdiv(dim, kernels.BLOCK)
    kernels.scatter_update_kernel[(tiles, tiles, count)](
        x, batch_mean.contiguous(), delta.contiguous(), coef.contiguous(), scatter, n, dim,
        x.stride(0), x.stride(1), x.stride(2), scatter.stride(0), scatter.stride(1),
        BLOCK=kernels.BLOCK, BLOCK_N=kernels.BLOCK_N, FP64=fp64_products,
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def newton_schulz_trace_sqrt(matrices: torch.Tensor, *, impl: str = "auto",
                             max_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(trace of sqrt(A_k), converged_k) for a batch (K, D, D) of symmetric PSD matrices.

    Coupled Newton–Schulz (Higham, Functions of Matrices, 6.7): Y0 = B, Z0 = I, T = (3I - Z Y)/2,
    Y <- Y T, Z <- T Z, with Y -> sqrt(B) and Z -> B^-1/2 when the spectrum of B lies in (0, 2).
    B = A/tr(A) + eps I: the trace puts the spectrum in [0, 1], and the shift eps = 16 unit roundoffs
    lifts eigenvalues that rounding left slightly negative, on which the iteration diverges. The
    shift's first-order effect, eps tr(B^-1/2) / 2, is subtracted from tr(Y).

    Only traces are needed, so a matrix counts as converged once the relative change of tr(Y) falls
    below tol, and its trace is frozen then. A singular A does not converge: Z grows like eps^-1/2 on its
    null space and rounding noise keeps tr(Y) moving; such matrices, and any not converged within
    max_iter, report False and the caller computes them another way. The matrices' dtype (float64 or
    float32) is the working precision.
    """
    backend = pick_backend("fid_newton_schulz", impl, matrices.device)
    dtype = matrices.dtype
    eps = torch.finfo(dtype).eps
    shift = 16 * eps
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    if max_iter is None:
        max_iter = 50 if dtype == torch.float64 else 25
    count, dim = matrices.shape[0], matrices.shape[-1]
    scale = torch.diagonal(matrices, dim1=-2, dim2=-1).sum(-1).clamp_min(torch.finfo(dtype).tiny)
    eye = torch.eye(dim, dtype=dtype, device=matrices.device)
    y = (matrices / scale[:, None, None] + shift * eye).contiguous()
    z = eye.expand(count, dim, dim).contiguous()
    if backend == "triton":
        step, buffers = _ns_step_triton, [torch.empty_like(y) for _ in range(3)]
    else:
        step, buffers = _ns_step_torch, None
    trace = torch.diagonal(y, dim1=-2, dim2=-1).sum(-1)
    result = torch.zeros_like(trace)
    converged = torch.zeros(count, dtype=torch.bool, device=matrices.device)
    for _ in range(max_iter):
        y, z = step(y, z, buffers)
        new_trace = torch.diagonal(y, dim1=-2, dim2=-1).sum(-1)
        done = ~converged & ((new_trace - trace).abs() <= tol * new_trace.abs())
        corrected = new_trace - 0.5 * shift * torch.diagonal(z, dim1=-2, dim2=-1).sum(-1)
        result = torch.where(done, corrected, result)
        converged |= done
        trace = new_trace
        if bool(converged.all()):
            break
    note_ran("fid_newton_schulz", backend)
    return result * scale.sqrt(), converged


def _ns_step_torch(y, z, _buffers):
    eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
    t = torch.baddbmm(1.5 * eye, z, y, alpha=-0.5)
    return torch.bmm(y, t), torch.bmm(t, z)


def _ns_step_triton(y, z, buffers):
    from gancore.kernels import fid as kernels

    t, y_out, z_out = buffers
    count, dim = y.shape[0], y.shape[-1]
    tiles = _cdiv(dim, kernels.BLOCK)
    fp64 = y.dtype == torch.float64
    grid = (tiles, tiles, count)
    kernels.newton_schulz_t_kernel[grid](y, z, t, dim, y.stride(0), y.stride(1),
                                         BLOCK=kernels.BLOCK, FP64=fp64)
    kernels.newton_schulz_yz_kernel[grid](y, z, t, y_out, z_out, dim, y.stride(0), y.stride(1),
                                          BLOCK=kernels.BLOCK, FP64=fp64)
    buffers[1], buffers[2] = y, z
    return y_out, z_out


def warn_not_converged(count: int, total: int) -> None:
    warnings.warn(
        f"gancore.metrics: Newton–Schulz did not converge for {count} of {total} "
        "matrices (singular or ill-conditioned covariances); their traces were computed with eigvalsh "
        "instead",
        RuntimeWarning,
        stacklevel=3,
    )
