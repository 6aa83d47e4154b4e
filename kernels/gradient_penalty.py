"""Triton kernels: gradient-penalty interpolation and the fused per-sample gradient norm + penalty.

Every tensor is a batch of N samples whose S elements are one dense block (contiguous and
channels-last alike), so each program works on a range of one sample: grid (N, blocks of S).
Reductions write per-block partial sums to a staging buffer; a second small kernel (or a sum over a
fixed axis) finishes them in a fixed order: deterministic, no atomics. Offsets are int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096  # elements of one sample per program


@triton.jit
def _interpolate(REAL, FAKE, ALPHA, OUT, S, BLOCK: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < S
    base = n.to(tl.int64) * S
    a = tl.load(ALPHA + n).to(ACC)
    r = tl.load(REAL + base + offs, mask=mask, other=0).to(ACC)
    f = tl.load(FAKE + base + offs, mask=mask, other=0).to(ACC)
    tl.store(OUT + base + offs, (a * r + (1 - a) * f).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _interpolate_bwd(G, REAL, FAKE, ALPHA, DREAL, DFAKE, PARTIAL, S, BLOCKS, NEED_REAL: tl.constexpr,
                     NEED_FAKE: tl.constexpr, NEED_ALPHA: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    offs = b.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < S
    base = n.to(tl.int64) * S
    a = tl.load(ALPHA + n).to(ACC)
    g = tl.load(G + base + offs, mask=mask, other=0).to(ACC)
    if NEED_REAL:
        tl.store(DREAL + base + offs, (g * a).to(DREAL.dtype.element_ty), mask=mask)
    if NEED_FAKE:
        tl.store(DFAKE + base + offs, (g * (1 - a)).to(DFAKE.dtype.element_ty), mask=mask)
    if NEED_ALPHA:
        r = tl.load(REAL + base + offs, mask=mask, other=0).to(ACC)
        f = tl.load(FAKE + base + offs, mask=mask, other=0).to(ACC)
        tl.store(PARTIAL + n * BLOCKS + b, tl.sum(g * (r - f), axis=0))


@triton.jit
def _sum_squares(G, PARTIAL, S, BLOCKS, BLOCK: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    offs = b.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    g = tl.load(G + n.to(tl.int64) * S + offs, mask=offs < S, other=0).to(ACC)
    tl.store(PARTIAL + n * BLOCKS + b, tl.sum(g * g, axis=0))


@triton.jit
def _penalty(PARTIAL, PENALTY, COEF, N, BLOCKS, center, weight, inv2, MODE: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """One program: per-sample sums of squares -> penalty terms, coef[n] for the backward, the mean.

    The scalars arrive as fp32 kernel arguments: every product starts from an ACC tensor, so the
    arithmetic (the division by N included) happens in ACC.
    """
    total = tl.zeros([BLOCK_N], ACC)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < N
        sumsq = tl.zeros([BLOCK_N], ACC)
        for p0 in range(0, BLOCKS, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)
            mask = n_mask[:, None] & (p < BLOCKS)[None, :]
            sumsq += tl.sum(tl.load(PARTIAL + n[:, None] * BLOCKS + p[None, :], mask=mask, other=0), axis=1)
        sumsq = sumsq * inv2
        if MODE == 2:  # squared norm (R1, R2)
            pen = sumsq
            coef = tl.full([BLOCK_N], 2, ACC)
        else:
            norm = tl.sqrt(sumsq)
            d = norm - center
            if MODE == 1:  # one-sided
                d = tl.maximum(d, 0)
            pen = d * d
            coef = tl.where(norm > 0, 2 * d / tl.where(norm > 0, norm, 1), 0)
        tl.store(COEF + n, coef * weight * inv2 / N, mask=n_mask)
        total += tl.where(n_mask, pen, 0)
    tl.store(PENALTY, tl.sum(total, axis=0) * weight / N)


@triton.jit
def _scale_samples(G, SCALE, DG, S, BLOCK: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < S
    base = n.to(tl.int64) * S
    s = tl.load(SCALE + n).to(ACC)
    g = tl.load(G + base + offs, mask=mask, other=0).to(ACC)
    tl.store(DG + base + offs, (g * s).to(DG.dtype.element_ty), mask=mask)


# ---- launchers ---------------------------------------------------------------------------------


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _acc_torch(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grid(x: torch.Tensor) -> tuple[int, int, int]:
    N = x.shape[0]
    S = x.numel() // N
    return N, S, triton.cdiv(S, BLOCK)


def interpolate(real, fake, alpha):
    N, S, blocks = _grid(real)
    out = torch.empty_like(real)
    _interpolate[(N, blocks)](real, fake, alpha, out, S, BLOCK=BLOCK, ACC=_acc(real.dtype), num_warps=8)
    return out


def interpolate_backward(grad, real, fake, alpha, need_real: bool, need_fake: bool, need_alpha: bool):
    N, S, blocks = _grid(real)
    dreal = torch.empty_like(real) if need_real else None
    dfake = torch.empty_like(real) if need_fake else None
    partial = torch.empty((N, blocks), device=real.device, dtype=alpha.dtype) if need_alpha else None
    _interpolate_bwd[(N, blocks)](
        grad, real, fake, alpha, dreal if need_real else real, dfake if need_fake else real,
        partial if need_alpha else alpha, S, blocks, NEED_REAL=need_real, NEED_FAKE=need_fake,
        NEED_ALPHA=need_alpha, BLOCK=BLOCK, ACC=_acc(real.dtype), num_warps=8)
    return dreal, dfake, partial.sum(1) if need_alpha else None  # blocks summed along a fixed axis


def norm_penalty(g, mode: int, center: float, weight: float, inv_scale: float):
    N, S, blocks = _grid(g)
    acc = _acc_torch(g.dtype)
    partial = torch.empty((N, blocks), device=g.device, dtype=acc)
    _sum_squares[(N, blocks)](g, partial, S, blocks, BLOCK=BLOCK, ACC=_acc(g.dtype), num_warps=8)
    penalty = torch.empty((), device=g.device, dtype=acc)
    coef = torch.empty(N, device=g.device, dtype=acc)
    _penalty[(1,)](partial, penalty, coef, N, blocks, center, weight, inv_scale * inv_scale, MODE=mode,
                   BLOCK_N=min(64, triton.next_power_of_2(N)), BLOCK_P=min(64, triton.next_power_of_2(blocks)),
                   ACC=_acc(g.dtype), num_warps=4)
    return penalty, coef


def norm_penalty_backward(grad, g, coef):
    N, S, blocks = _grid(g)
    scale = (coef * grad.to(coef.dtype)).contiguous()
    dg = torch.empty_like(g)
    _scale_samples[(N, blocks)](g, scale, dg, S, BLOCK=BLOCK, ACC=_acc(g.dtype), num_warps=8)
    return dg


# ---- code-generation cases (gancore.utils.triton_codegen compiles them for sm_80 and sm_90) ------


def _ordered(kernel, signature: dict) -> dict:
    return {name: signature[name] for name in kernel.arg_names}


def _cases() -> list[dict]:
    cases = []
    for storage in ("fp32", "bf16"):
        consts = {"BLOCK": BLOCK, "ACC": tl.float32}
        cases.append({"name": f"gp_interpolate_{storage}", "fn": _interpolate, "constexprs": consts,
                      "signature": _ordered(_interpolate, {
                          "REAL": f"*{storage}", "FAKE": f"*{storage}", "ALPHA": "*fp32", "OUT": f"*{storage}",
                          "S": "i64", "BLOCK": "constexpr", "ACC": "constexpr"})})
        cases.append({"name": f"gp_interpolate_bwd_{storage}", "fn": _interpolate_bwd,
                      "constexprs": {**consts, "NEED_REAL": True, "NEED_FAKE": True, "NEED_ALPHA": True},
                      "signature": _ordered(_interpolate_bwd, {
                          "G": f"*{storage}", "REAL": f"*{storage}", "FAKE": f"*{storage}", "ALPHA": "*fp32",
                          "DREAL": f"*{storage}", "DFAKE": f"*{storage}", "PARTIAL": "*fp32", "S": "i64",
                          "BLOCKS": "i32", "NEED_REAL": "constexpr", "NEED_FAKE": "constexpr",
                          "NEED_ALPHA": "constexpr", "BLOCK": "constexpr", "ACC": "constexpr"})})
        cases.append({"name": f"gp_sum_squares_{storage}", "fn": _sum_squares, "constexprs": consts,
                      "signature": _ordered(_sum_squares, {
                          "G": f"*{storage}", "PARTIAL": "*fp32", "S": "i64", "BLOCKS": "i32",
                          "BLOCK": "constexpr", "ACC": "constexpr"})})
        cases.append({"name": f"gp_scale_samples_{storage}", "fn": _scale_samples, "constexprs": consts,
                      "signature": _ordered(_scale_samples, {
                          "G": f"*{storage}", "SCALE": "*fp32", "DG": f"*{storage}", "S": "i64",
                          "BLOCK": "constexpr", "ACC": "constexpr"})})
    for mode in (0, 1, 2):
        cases.append({"name": f"gp_penalty_mode{mode}", "fn": _penalty,
                      "constexprs": {"MODE": mode, "BLOCK_N": 64, "BLOCK_P": 64, "ACC": tl.float32},
                      "signature": _ordered(_penalty, {
                          "PARTIAL": "*fp32", "PENALTY": "*fp32", "COEF": "*fp32", "N": "i32", "BLOCKS": "i32",
                          "center": "fp32", "weight": "fp32", "inv2": "fp32", "MODE": "constexpr",
                          "BLOCK_N": "constexpr", "BLOCK_P": "constexpr", "ACC": "constexpr"})})
    return cases


COMPILE_CASES = _cases()
