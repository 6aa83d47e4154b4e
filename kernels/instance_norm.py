"""Triton kernels: fused instance norm + leaky activation (+ residual), forward and backward.

One kernel serves both layouts by walking (n, c, s) through strides: contiguous NCHW has
stride_s == 1 (one program per plane, BLOCK_C = 1), channels-last has stride_c == 1 (one program
per sample and block of channels, tiles coalesced along C). Triton specialises a stride equal to 1,
so each layout compiles to its own coalesced code.

Statistics: per chunk, the chunk mean and the sum of squares about it, merged across chunks with
Chan's formula; accumulated in float32 (float64 for float64 inputs). Offsets are int64, so tensors
beyond 2**31 elements index correctly. dweight/dbias: per-(n, c) sums go to a staging buffer that the
caller reduces over n, deterministic without atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def chunked_moments(X, row, c_mask, s_begin, s_end, stride_s,
                    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    """Mean and M2 (sum of squares about the mean) of positions [s_begin, s_end) of BLOCK_C channels
    (offsets `row`): per chunk the chunk mean and the squares about it, merged with Chan's formula."""
    count = tl.zeros([BLOCK_C], ACC)
    mean = tl.zeros([BLOCK_C], ACC)
    m2 = tl.zeros([BLOCK_C], ACC)
    for s0 in range(s_begin, s_end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < s_end)[None, :]
        x = tl.load(X + row + s.to(tl.int64)[None, :] * stride_s, mask=mask, other=0).to(ACC)
        nb = tl.minimum(s_end - s0, BLOCK_S).to(ACC)
        chunk_mean = tl.sum(x, axis=1) / nb
        d = tl.where(mask, x - chunk_mean[:, None], 0)
        total = count + nb
        delta = chunk_mean - mean
        mean += delta * (nb / total)
        m2 += tl.sum(d * d, axis=1) + delta * delta * (count * nb / total)
        count = total
    return mean, m2


@triton.jit
def _instance_norm_act_fwd(X, RES, W, B, OUT, MEAN, RSTD, C, S, stride_n, stride_c, stride_s, eps, slope,
                           HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_RES: tl.constexpr,
                           BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    row = n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c
    mean, m2 = chunked_moments(X, row, c_mask, 0, S, stride_s, BLOCK_C, BLOCK_S, ACC)
    rstd = 1 / tl.sqrt(m2 / S + eps)
    tl.store(MEAN + n * C + c, mean, mask=c_mask)
    tl.store(RSTD + n * C + c, rstd, mask=c_mask)
    scale = rstd
    if HAS_W:
        scale *= tl.load(W + c, mask=c_mask, other=1).to(ACC)
    shift = tl.zeros([BLOCK_C], ACC)
    if HAS_B:
        shift += tl.load(B + c, mask=c_mask, other=0).to(ACC)
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < S)[None, :]
        offs = row + s.to(tl.int64)[None, :] * stride_s
        x = tl.load(X + offs, mask=mask, other=0).to(ACC)
        y = (x - mean[:, None]) * scale[:, None] + shift[:, None]
        y = tl.where(y > 0, y, y * slope)
        if HAS_RES:
            y += tl.load(RES + offs, mask=mask, other=0).to(ACC)
        tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _grad_tile(G, X, offs, mask, mean, scale, shift, slope, ACC: tl.constexpr):
    """x - mean and dy = grad * leaky'(y) of one tile (0 outside the mask)."""
    centred = tl.load(X + offs, mask=mask, other=0).to(ACC) - mean[:, None]
    g = tl.load(G + offs, mask=mask, other=0).to(ACC)
    y = centred * scale[:, None] + shift[:, None]
    return centred, tl.where(mask, tl.where(y > 0, g, g * slope), 0)


@triton.jit
def _instance_norm_act_bwd(G, X, W, B, MEAN, RSTD, DX, SUM_DY, SUM_DY_XHAT, C, S, stride_n, stride_c, stride_s,
                           slope, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                           BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    row = n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c
    mean = tl.load(MEAN + n * C + c, mask=c_mask, other=0).to(ACC)
    rstd = tl.load(RSTD + n * C + c, mask=c_mask, other=0).to(ACC)
    scale = rstd
    if HAS_W:
        scale *= tl.load(W + c, mask=c_mask, other=1).to(ACC)
    shift = tl.zeros([BLOCK_C], ACC)
    if HAS_B:
        shift += tl.load(B + c, mask=c_mask, other=0).to(ACC)
    sum_dy = tl.zeros([BLOCK_C], ACC)
    sum_dy_xhat = tl.zeros([BLOCK_C], ACC)
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < S)[None, :]
        offs = row + s.to(tl.int64)[None, :] * stride_s
        centred, dy = _grad_tile(G, X, offs, mask, mean, scale, shift, slope, ACC)
        sum_dy += tl.sum(dy, axis=1)
        sum_dy_xhat += tl.sum(dy * centred, axis=1) * rstd
    tl.store(SUM_DY + n * C + c, sum_dy, mask=c_mask)
    tl.store(SUM_DY_XHAT + n * C + c, sum_dy_xhat, mask=c_mask)
    mean_dy = sum_dy / S
    mean_dy_xhat = sum_dy_xhat / S
    for s0 in range(0, S, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < S)[None, :]
        offs = row + s.to(tl.int64)[None, :] * stride_s
        centred, dy = _grad_tile(G, X, offs, mask, mean, scale, shift, slope, ACC)
        dx = scale[:, None] * (dy - mean_dy[:, None] - centred * (rstd * mean_dy_xhat)[:, None])
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


# ---- launchers ---------------------------------------------------------------------------------


def strided_geometry(x: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """(N, C, S, stride_n, stride_c, stride_s) of a contiguous or channels-last (N, C, *spatial) x."""
    N, C = x.shape[:2]
    S = x.numel() // (N * C)
    if x.is_contiguous():
        return N, C, S, C * S, S, 1
    return N, C, S, C * S, 1, C


def _blocks(C: int, S: int, stride_s: int) -> tuple[int, int]:
    if stride_s == 1:  # planes: one program per (n, c), long vectors along the plane
        return 1, min(2048, triton.next_power_of_2(S))
    block_c = min(64, triton.next_power_of_2(C))  # 64 x 32 tiles: the backward fits in registers on sm_90
    return block_c, min(32, triton.next_power_of_2(S))


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def forward(x, weight, bias, residual, eps: float, slope: float):
    N, C, S, sn, sc, ss = strided_geometry(x)
    out = torch.empty_like(x)
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    mean = torch.empty((N, C), device=x.device, dtype=stats_dtype)
    rstd = torch.empty_like(mean)
    block_c, block_s = _blocks(C, S, ss)
    grid = (N, triton.cdiv(C, block_c))
    _instance_norm_act_fwd[grid](
        x, residual if residual is not None else x, weight if weight is not None else mean,
        bias if bias is not None else mean, out, mean, rstd, C, S, sn, sc, ss, eps, slope,
        HAS_W=weight is not None, HAS_B=bias is not None, HAS_RES=residual is not None,
        BLOCK_C=block_c, BLOCK_S=block_s, ACC=_acc(x.dtype), num_warps=4 if block_c * block_s <= 2048 else 8)
    return out, mean, rstd


def backward(grad, x, weight, bias, mean, rstd, slope: float):
    N, C, S, sn, sc, ss = strided_geometry(x)
    dx = torch.empty_like(x)
    sums = torch.empty((2, N, C), device=x.device, dtype=mean.dtype)
    block_c, block_s = _blocks(C, S, ss)
    grid = (N, triton.cdiv(C, block_c))
    _instance_norm_act_bwd[grid](
        grad, x, weight if weight is not None else mean, bias if bias is not None else mean, mean, rstd, dx,
        sums[0], sums[1], C, S, sn, sc, ss, slope, HAS_W=weight is not None, HAS_B=bias is not None,
        BLOCK_C=block_c, BLOCK_S=block_s, ACC=_acc(x.dtype), num_warps=4 if block_c * block_s <= 2048 else 8)
    return dx, sums[1].sum(0), sums[0].sum(0)  # dweight, dbias: reduced over n in a fixed order


# ---- code-generation cases (gancore.utils.triton_codegen compiles them for sm_80 and sm_90) ------


def _ordered(kernel, signature: dict) -> dict:
    return {name: signature[name] for name in kernel.arg_names}


def _cases() -> list[dict]:
    cases = []
    for storage in ("fp32", "bf16"):
        for layout, (block_c, block_s), unit_stride in (("nchw", _blocks(64, 1 << 14, 1), "stride_s"),
                                                        ("channels_last", _blocks(64, 1 << 14, 64), "stride_c")):
            common = {"C": "i32", "S": "i64", "stride_n": "i64", "stride_c": "i64", "stride_s": "i64",
                      unit_stride: "constexpr", "HAS_W": "constexpr", "HAS_B": "constexpr",
                      "BLOCK_C": "constexpr", "BLOCK_S": "constexpr", "ACC": "constexpr"}
            consts = {unit_stride: 1, "HAS_W": True, "HAS_B": True, "BLOCK_C": block_c, "BLOCK_S": block_s,
                      "ACC": tl.float32}
            fwd_sig = {"X": f"*{storage}", "RES": f"*{storage}", "W": "*fp32", "B": "*fp32",
                       "OUT": f"*{storage}", "MEAN": "*fp32", "RSTD": "*fp32", **common, "eps": "fp32",
                       "slope": "fp32", "HAS_RES": "constexpr"}
            cases.append({"name": f"fwd_{layout}_{storage}", "fn": _instance_norm_act_fwd,
                          "signature": _ordered(_instance_norm_act_fwd, fwd_sig),
                          "constexprs": {**consts, "HAS_RES": True}})
            bwd_sig = {"G": f"*{storage}", "X": f"*{storage}", "W": "*fp32", "B": "*fp32", "MEAN": "*fp32",
                       "RSTD": "*fp32", "DX": f"*{storage}", "SUM_DY": "*fp32", "SUM_DY_XHAT": "*fp32",
                       **common, "slope": "fp32"}
            cases.append({"name": f"bwd_{layout}_{storage}", "fn": _instance_norm_act_bwd,
                          "signature": _ordered(_instance_norm_act_bwd, bwd_sig), "constexprs": consts})
    return cases


COMPILE_CASES = _cases()
