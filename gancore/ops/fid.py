"""The two fused steps of gancore.metrics' FID engine, as ops with backends (see gancore.ops._dispatch).

- fid_scatter: S += (X - m)^T (X - m) + c * delta delta^T, the Chan et al. merge of a feature batch
  into running statistics. ref: one torch GEMM; cpu: torch GEMMs over the column panels on or above
  the diagonal (about half the FLOPs for large D); triton: kernels/fid.py scatter_update_kernel.
- fid_newton_schulz: the trace of the square root of a batch of symmetric PSD matrices by the coupled
  Newton–Schulz iteration. ref and cpu: torch bmm; triton: kernels/fid.py newton_schulz_*_kernel.

The cpu backend of both ops is torch itself (MKL GEMMs): no C++ kernel would beat them, so "auto" picks
it on CPU tensors without a fallback warning. Every backend keeps only the upper triangle of each
symmetric matrix up to date; `symmetrize` mirrors it.
"""

from __future__ import annotations

import warnings

import torch

from gancore.ops._dispatch import choose, note_ran, register_op

register_op("fid_scatter", cpu_torch=True, triton="fid")
register_op("fid_newton_schulz", cpu_torch=True, triton="fid")

# Column panel of the blocked symmetric product on the CPU: only panels on or above the diagonal are
# computed, so X^T X costs (1 + 1/P) / 2 of a full GEMM for P panels.
CPU_PANEL = 256


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
    backend = choose("fid_scatter", impl, x.device)
    if backend == "triton":
        from gancore.kernels import fid as kernels

        kernels.scatter_update(scatter, x, batch_mean, delta, coef, fp64_products)
    else:
        _scatter_update_torch(scatter, x, batch_mean, delta, coef, fp64_products, blocked=backend == "cpu")
    note_ran("fid_scatter", backend)


def _scatter_update_torch(scatter, x, batch_mean, delta, coef, fp64_products, blocked):
    centred = x.to(torch.float64) - batch_mean[:, None, :]
    if not fp64_products:
        centred = centred.to(torch.float32)
    dim = x.shape[-1]
    if blocked and dim > 2 * CPU_PANEL:
        for start in range(0, dim, CPU_PANEL):
            stop = min(start + CPU_PANEL, dim)
            panel = torch.bmm(centred[:, :, :stop].transpose(1, 2), centred[:, :, start:stop])
            scatter[:, :stop, start:stop] += panel.to(torch.float64)
    else:
        scatter += torch.bmm(centred.transpose(1, 2), centred).to(torch.float64)
    scatter.baddbmm_((delta * coef[:, None])[:, :, None], delta[:, None, :])  # rank one, in place


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
    backend = choose("fid_newton_schulz", impl, matrices.device)
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
        from gancore.kernels import fid as kernels

        step, buffers = kernels.newton_schulz_step, [torch.empty_like(y) for _ in range(3)]
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


def warn_not_converged(count: int, total: int) -> None:
    warnings.warn(
        f"gancore.metrics: Newton–Schulz did not converge for {count} of {total} "
        "matrices (singular or ill-conditioned covariances); their traces were computed with eigvalsh "
        "instead",
        RuntimeWarning,
        stacklevel=3,
    )
