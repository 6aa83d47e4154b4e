"""Triton kernels: fused batch norm + activation (+ residual), the four steps of gancore.ops.batch_norm.

- partial_stats: per (sample, slice of the spatial dims) and block of channels, the chunk moments
  merged with Chan's formula (as the instance-norm kernel does per plane); the caller merges the
  (count, mean, M2) partials over samples and slices. Slicing keeps the GPU busy at batch 1.
- apply / grad_input: elementwise over (BLOCK_C, BLOCK_S) tiles of one sample, walked through
  strides like the reductions: NCHW one channel and a long run of the plane per program,
  channels-last 64 channels (coalesced) by 32 positions; no per-element index division.
- grad_sums: per (sample, slice) and block of channels, sums of dy, dy * xhat and, for PReLU,
  grad * min(y, 0) go to a staging buffer that is reduced in a fixed order (no atomics).
Statistics and sums in float32 (float64 for float64 inputs); int64 offsets.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .instance_norm import chunked_moments, strided_geometry


@triton.jit
def _slice_of_program(C, S, SPLITS, S_SPLIT, BLOCK_C: tl.constexpr):
    """This program's sample n, its slice [s_begin, s_end) of the spatial dims and its block of channels."""
    pid = tl.program_id(0)
    n = pid // SPLITS
    s_begin = (pid % SPLITS) * S_SPLIT
    s_end = tl.minimum(S, s_begin + S_SPLIT)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    return pid, n, s_begin, s_end, c, c < C


@triton.jit
def _partial_moments(X, MEAN, M2, C, S, SPLITS, S_SPLIT, stride_n, stride_c, stride_s,
                     BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    pid, n, s_begin, s_end, c, c_mask = _slice_of_program(C, S, SPLITS, S_SPLIT, BLOCK_C)
    row = n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c
    mean, m2 = chunked_moments(X, row, c_mask, s_begin, s_end, stride_s, BLOCK_C, BLOCK_S, ACC)
    tl.store(MEAN + pid * C + c, mean, mask=c_mask)
    tl.store(M2 + pid * C + c, m2, mask=c_mask)


@triton.jit
def _coefs(W, B, A, MEAN, RSTD, c, mask, slope, HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_A: tl.constexpr,
           A_PER_CHANNEL: tl.constexpr, ACC: tl.constexpr):
    """mean, rstd, scale = rstd * weight, shift = bias and the activation slope at channels c."""
    mean = tl.load(MEAN + c, mask=mask, other=0).to(ACC)
    rstd = tl.load(RSTD + c, mask=mask, other=0).to(ACC)
    scale = rstd
    if HAS_W:
        scale *= tl.load(W + c, mask=mask, other=1).to(ACC)
    shift = tl.zeros_like(mean)
    if HAS_B:
        shift += tl.load(B + c, mask=mask, other=0).to(ACC)
    k = tl.zeros_like(mean) + slope
    if HAS_A:
        if A_PER_CHANNEL:
            k = tl.load(A + c, mask=mask, other=0).to(ACC)
        else:
            k = tl.zeros_like(mean) + tl.load(A).to(ACC)
    return mean, rstd, scale, shift, k


@triton.jit
def _tile(C, S, S_BLOCKS, stride_n, stride_c, stride_s, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Channels, mask and offsets of this program's (BLOCK_C, BLOCK_S) tile of one sample."""
    pid = tl.program_id(0)
    n = pid // S_BLOCKS
    s = (pid % S_BLOCKS) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    mask = c_mask[:, None] & (s < S)[None, :]
    offs = n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c + s.to(tl.int64)[None, :] * stride_s
    return c, c_mask, mask, offs


@triton.jit
def _bn_apply(X, RES, W, B, A, MEAN, RSTD, OUT, C, S, S_BLOCKS, stride_n, stride_c, stride_s, slope,
              HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_A: tl.constexpr, A_PER_CHANNEL: tl.constexpr,
              HAS_RES: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    c, c_mask, mask, offs = _tile(C, S, S_BLOCKS, stride_n, stride_c, stride_s, BLOCK_C, BLOCK_S)
    mean, _, scale, shift, k = _coefs(W, B, A, MEAN, RSTD, c, c_mask, slope, HAS_W, HAS_B, HAS_A, A_PER_CHANNEL,
                                      ACC)
    y = (tl.load(X + offs, mask=mask, other=0).to(ACC) - mean[:, None]) * scale[:, None] + shift[:, None]
    y = tl.where(y > 0, y, y * k[:, None])
    if HAS_RES:
        y += tl.load(RES + offs, mask=mask, other=0).to(ACC)
    tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _bn_grad_sums(G, X, W, B, A, MEAN, RSTD, SUMS, C, S, SPLITS, S_SPLIT, P, stride_n, stride_c, stride_s, slope,
                  HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_A: tl.constexpr, A_PER_CHANNEL: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    pid, n, s_begin, s_end, c, c_mask = _slice_of_program(C, S, SPLITS, S_SPLIT, BLOCK_C)
    mean, rstd, scale, shift, k = _coefs(W, B, A, MEAN, RSTD, c, c_mask, slope, HAS_W, HAS_B, HAS_A, A_PER_CHANNEL,
                                         ACC)
    row = n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c
    s1 = tl.zeros([BLOCK_C], ACC)
    s2 = tl.zeros([BLOCK_C], ACC)
    s3 = tl.zeros([BLOCK_C], ACC)
    for s0 in range(s_begin, s_end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < s_end)[None, :]
        offs = row + s.to(tl.int64)[None, :] * stride_s
        centred = tl.load(X + offs, mask=mask, other=0).to(ACC) - mean[:, None]
        g = tl.load(G + offs, mask=mask, other=0).to(ACC)
        y = centred * scale[:, None] + shift[:, None]
        dy = tl.where(mask, tl.where(y > 0, g, g * k[:, None]), 0)
        s1 += tl.sum(dy, axis=1)
        s2 += tl.sum(dy * centred, axis=1)
        if HAS_A:
            s3 += tl.sum(tl.where(mask & (y <= 0), g * y, 0), axis=1)
    tl.store(SUMS + pid * C + c, s1, mask=c_mask)
    tl.store(SUMS + (P + pid) * C + c, s2 * rstd, mask=c_mask)
    tl.store(SUMS + (2 * P + pid) * C + c, s3, mask=c_mask)


@triton.jit
def _bn_grad_input(G, X, W, B, A, MEAN, RSTD, CDY, CDYX, DX, C, S, S_BLOCKS, stride_n, stride_c, stride_s, slope,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_A: tl.constexpr, A_PER_CHANNEL: tl.constexpr,
                   HAS_COEF: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, ACC: tl.constexpr):
    c, c_mask, mask, offs = _tile(C, S, S_BLOCKS, stride_n, stride_c, stride_s, BLOCK_C, BLOCK_S)
    mean, rstd, scale, shift, k = _coefs(W, B, A, MEAN, RSTD, c, c_mask, slope, HAS_W, HAS_B, HAS_A, A_PER_CHANNEL,
                                         ACC)
    centred = tl.load(X + offs, mask=mask, other=0).to(ACC) - mean[:, None]
    g = tl.load(G + offs, mask=mask, other=0).to(ACC)
    y = centred * scale[:, None] + shift[:, None]
    dy = tl.where(y > 0, g, g * k[:, None])
    if HAS_COEF:
        cdy = tl.load(CDY + c, mask=c_mask, other=0).to(ACC)
        cdyx = tl.load(CDYX + c, mask=c_mask, other=0).to(ACC) * rstd
        dy = dy - cdy[:, None] - centred * cdyx[:, None]
    tl.store(DX + offs, (scale[:, None] * dy).to(DX.dtype.element_ty), mask=mask)


# ---- launchers -----------------------------------------------------------------------------------

def _blocks(C: int, S: int, stride_s: int) -> tuple[int, int]:
    if stride_s == 1:  # NCHW: one channel per program, long vectors along the plane
        return 1, min(1024, triton.next_power_of_2(S))
    return min(64, triton.next_power_of_2(C)), min(32, triton.next_power_of_2(S))


def _splits(N: int, C: int, S: int, block_c: int, block_s: int) -> tuple[int, int]:
    """(slices per sample, elements per slice): about 512 programs, slices a multiple of block_s."""
    programs = N * triton.cdiv(C, block_c)
    splits = max(1, min(triton.cdiv(S, block_s), triton.cdiv(512, programs)))
    per = triton.cdiv(triton.cdiv(S, splits), block_s) * block_s
    return triton.cdiv(S, per), per


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def partial_stats(x):
    """(count (P,), mean (P, C), M2 (P, C)) of P = N * slices disjoint parts of the batch."""
    N, C, S, sn, sc, ss = strided_geometry(x)
    block_c, block_s = _blocks(C, S, ss)
    splits, per = _splits(N, C, S, block_c, block_s)
    P = N * splits
    mean = torch.empty((P, C), device=x.device, dtype=_stats_dtype(x))
    m2 = torch.empty_like(mean)
    _partial_moments[(P, triton.cdiv(C, block_c))](x, mean, m2, C, S, splits, per, sn, sc, ss, BLOCK_C=block_c,
                                                   BLOCK_S=block_s, ACC=_acc(x.dtype))
    sizes = torch.full((splits,), per, dtype=torch.float64, device=x.device)
    sizes[-1] = S - per * (splits - 1)
    return sizes.repeat(N), mean, m2


def _param_args(weight, bias, prelu, mean):
    dummy = mean
    return dict(W=weight if weight is not None else dummy, B=bias if bias is not None else dummy,
                A=prelu if prelu is not None else dummy), dict(
        HAS_W=weight is not None, HAS_B=bias is not None, HAS_A=prelu is not None,
        A_PER_CHANNEL=prelu is not None and prelu.numel() > 1)


def _elementwise_grid(x):
    N, C, S, sn, sc, ss = strided_geometry(x)
    block_c, block_s = _blocks(C, S, ss)
    s_blocks = triton.cdiv(S, block_s)
    return (N * s_blocks, triton.cdiv(C, block_c)), dict(C=C, S=S, S_BLOCKS=s_blocks, stride_n=sn, stride_c=sc,
                                                          stride_s=ss, BLOCK_C=block_c, BLOCK_S=block_s)


def apply(x, weight, bias, prelu, residual, mean, rstd, slope: float):
    out = torch.empty_like(x)
    tensors, flags = _param_args(weight, bias, prelu, mean)
    grid, geometry = _elementwise_grid(x)
    _bn_apply[grid](x, residual if residual is not None else x, tensors["W"], tensors["B"], tensors["A"], mean, rstd,
                    out, **geometry, slope=slope, **flags, HAS_RES=residual is not None, ACC=_acc(x.dtype))
    return out


def grad_sums(grad, x, weight, bias, prelu, mean, rstd, slope: float):
    """(3, C): sums of dy, dy * xhat and grad * min(y, 0) (zeros without PReLU)."""
    N, C, S, sn, sc, ss = strided_geometry(x)
    block_c, block_s = _blocks(C, S, ss)
    splits, per = _splits(N, C, S, block_c, block_s)
    P = N * splits
    sums = torch.empty((3, P, C), device=x.device, dtype=mean.dtype)
    tensors, flags = _param_args(weight, bias, prelu, mean)
    _bn_grad_sums[(P, triton.cdiv(C, block_c))](
        grad, x, tensors["W"], tensors["B"], tensors["A"], mean, rstd, sums, C, S, splits, per, P, sn, sc, ss, slope,
        **flags, BLOCK_C=block_c, BLOCK_S=block_s, ACC=_acc(x.dtype))
    return sums.sum(1)  # over the parts, in a fixed order


def grad_input(grad, x, weight, bias, prelu, mean, rstd, slope: float, coef_dy=None, coef_dyx=None):
    dx = torch.empty_like(x)
    tensors, flags = _param_args(weight, bias, prelu, mean)
    grid, geometry = _elementwise_grid(x)
    has_coef = coef_dy is not None
    _bn_grad_input[grid](grad, x, tensors["W"], tensors["B"], tensors["A"], mean, rstd,
                         coef_dy if has_coef else mean, coef_dyx if has_coef else mean, dx, **geometry, slope=slope,
                         **flags, HAS_COEF=has_coef, ACC=_acc(x.dtype))
    return dx


# ---- code-generation cases (gancore.utils.triton_codegen compiles them for sm_80 and sm_90) ------


def _ordered(kernel, signature: dict) -> dict:
    return {name: signature[name] for name in kernel.arg_names}


def _cases() -> list[dict]:
    cases = []
    flags = {"HAS_W": True, "HAS_B": True, "HAS_A": True, "A_PER_CHANNEL": True, "ACC": tl.float32}
    flag_sig = {name: "constexpr" for name in flags}
    for storage in ("fp32", "bf16"):
        params = {"W": "*fp32", "B": "*fp32", "A": "*fp32", "MEAN": "*fp32", "RSTD": "*fp32"}
        for layout, unit_stride, C in (("nchw", "stride_s", 64), ("channels_last", "stride_c", 64)):
            block_c, block_s = _blocks(C, 1 << 14, 1 if layout == "nchw" else C)
            reduce_sig = {"C": "i32", "S": "i64", "SPLITS": "i32", "S_SPLIT": "i64", "stride_n": "i64",
                          "stride_c": "i64", "stride_s": "i64", unit_stride: "constexpr", "BLOCK_C": "constexpr",
                          "BLOCK_S": "constexpr", "ACC": "constexpr"}
            consts = {unit_stride: 1, "BLOCK_C": block_c, "BLOCK_S": block_s, "ACC": tl.float32}
            cases.append({"name": f"stats_{layout}_{storage}", "fn": _partial_moments,
                          "signature": _ordered(_partial_moments, {"X": f"*{storage}", "MEAN": "*fp32",
                                                                   "M2": "*fp32", **reduce_sig}),
                          "constexprs": consts})
            sums_sig = {"G": f"*{storage}", "X": f"*{storage}", **params, "SUMS": "*fp32", **reduce_sig, "P": "i32",
                        "slope": "fp32", **flag_sig}
            cases.append({"name": f"grad_sums_{layout}_{storage}", "fn": _bn_grad_sums,
                          "signature": _ordered(_bn_grad_sums, sums_sig), "constexprs": {**consts, **flags}})
            elementwise = {"C": "i32", "S": "i64", "S_BLOCKS": "i32", "stride_n": "i64", "stride_c": "i64",
                           "stride_s": "i64", unit_stride: "constexpr", "slope": "fp32", **flag_sig,
                           "BLOCK_C": "constexpr", "BLOCK_S": "constexpr"}
            ew_consts = {**flags, unit_stride: 1, "BLOCK_C": block_c, "BLOCK_S": block_s}
            apply_sig = {"X": f"*{storage}", "RES": f"*{storage}", **params, "OUT": f"*{storage}", **elementwise,
                         "HAS_RES": "constexpr"}
            cases.append({"name": f"apply_{layout}_{storage}", "fn": _bn_apply,
                          "signature": _ordered(_bn_apply, apply_sig), "constexprs": {**ew_consts, "HAS_RES": True}})
            gi_sig = {"G": f"*{storage}", "X": f"*{storage}", **params, "CDY": "*fp32", "CDYX": "*fp32",
                      "DX": f"*{storage}", **elementwise, "HAS_COEF": "constexpr"}
            cases.append({"name": f"grad_input_{layout}_{storage}", "fn": _bn_grad_input,
                          "signature": _ordered(_bn_grad_input, gi_sig),
                          "constexprs": {**ew_consts, "HAS_COEF": True}})
    return cases


COMPILE_CASES = _cases()
