"""Triton kernels: PatchGAN scoring (conv C -> 1, KH x KW) fused with the per-patch GAN loss.

h is walked through its strides, so contiguous (N, C, H, W) and channels-last share one kernel.
Forward: one program per (sample, block of output pixels) accumulates the logits over channel
blocks and the KH*KW taps, applies the loss, stores dl/dz and a partial loss sum (finished by a sum
over a fixed axis: deterministic). Backward: one program per (sample, block of input pixels,
block of channels) loads its tile of h once, scatters dh = sum over taps of w * dz, and writes the
tile's share of dweight for every tap to a staging buffer summed afterwards (no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LSGAN, BCE, HINGE, WGAN = 0, 1, 2, 3  # as gancore.ops.patchgan.LOSSES
NONE, MEAN = 0, 1  # reductions, as gancore.ops.patchgan.REDUCTIONS (2 is sum)


@triton.jit
def _patch_forward(H_PTR, W_PTR, B_PTR, T_PTR, DLDZ, LOSS_MAP, PARTIAL, C, H, W, OH, OW, stride_n, stride_c,
                   stride_h, stride_w, t_n, t_y, t_x, factor, stride, pad, HAS_BIAS: tl.constexpr,
                   LOSS: tl.constexpr, STORE_MAP: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    pb = tl.program_id(1)
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    p_mask = p < OH * OW
    oy = p // OW
    ox = p % OW
    base = n.to(tl.int64) * stride_n
    z = tl.zeros([BLOCK_P], ACC)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_mask = c < C
        c_off = c.to(tl.int64)[:, None] * stride_c
        for ky in tl.static_range(KH):
            iy = oy * stride - pad + ky
            for kx in tl.static_range(KW):
                ix = ox * stride - pad + kx
                valid = p_mask & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
                pix = iy.to(tl.int64) * stride_h + ix.to(tl.int64) * stride_w
                x = tl.load(H_PTR + base + c_off + pix[None, :], mask=c_mask[:, None] & valid[None, :], other=0)
                w = tl.load(W_PTR + c * (KH * KW) + (ky * KW + kx), mask=c_mask, other=0).to(ACC)
                z += tl.sum(w[:, None] * x.to(ACC), axis=0)
    if HAS_BIAS:
        z += tl.load(B_PTR).to(ACC)
    t = tl.load(T_PTR + n * t_n + oy * t_y + ox * t_x, mask=p_mask, other=0).to(ACC)
    if LOSS == 0:  # lsgan
        d = z - t
        loss = d * d
        grad = 2 * d
    elif LOSS == 1:  # bce with logits: max(z, 0) - z t + log(1 + exp(-|z|))
        e = tl.exp(-tl.abs(z))
        loss = tl.maximum(z, 0) - z * t + tl.log(1 + e)
        grad = tl.where(z >= 0, 1 / (1 + e), e / (1 + e)) - t
    elif LOSS == 2:  # hinge: relu(1 - s z), s = 2t - 1
        s = 2 * t - 1
        margin = 1 - s * z
        loss = tl.maximum(margin, 0)
        grad = tl.where(margin > 0, -s, 0)
    else:  # wgan: -s z
        s = 2 * t - 1
        loss = -s * z
        grad = -s
    tl.store(DLDZ + n * OH * OW + p, grad * factor, mask=p_mask)
    if STORE_MAP:
        tl.store(LOSS_MAP + n * OH * OW + p, loss, mask=p_mask)
    tl.store(PARTIAL + n * tl.num_programs(1) + pb, tl.sum(tl.where(p_mask, loss, 0), axis=0))


@triton.jit
def _patch_backward(H_PTR, W_PTR, DZ, DH, STAGING, C, H, W, OH, OW, stride_n, stride_c, stride_h, stride_w,
                    stride, pad, NEED_INPUT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                    BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0)
    qb = tl.program_id(1)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_mask = q < H * W
    iy = q // W
    ix = q % W
    offs = (n.to(tl.int64) * stride_n + c.to(tl.int64)[:, None] * stride_c
            + (iy.to(tl.int64) * stride_h + ix.to(tl.int64) * stride_w)[None, :])
    mask = c_mask[:, None] & q_mask[None, :]
    x = tl.load(H_PTR + offs, mask=mask, other=0).to(ACC)
    dh = tl.zeros([BLOCK_C, BLOCK_Q], ACC)
    row = (n * tl.num_programs(1) + qb).to(tl.int64) * (KH * KW) * C
    for ky in tl.static_range(KH):
        ty = iy + pad - ky
        oy = ty // stride
        for kx in tl.static_range(KW):
            tx = ix + pad - kx
            ox = tx // stride
            valid = (q_mask & (ty >= 0) & (tx >= 0) & (ty % stride == 0) & (tx % stride == 0) & (oy < OH)
                     & (ox < OW))
            d = tl.load(DZ + n * OH * OW + oy * OW + ox, mask=valid, other=0).to(ACC)
            if NEED_INPUT:
                w = tl.load(W_PTR + c * (KH * KW) + (ky * KW + kx), mask=c_mask, other=0).to(ACC)
                dh += w[:, None] * d[None, :]
            tl.store(STAGING + row + (ky * KW + kx) * C + c, tl.sum(x * d[None, :], axis=1), mask=c_mask)
    if NEED_INPUT:
        tl.store(DH + offs, dh.to(DH.dtype.element_ty), mask=mask)


# ---- launchers ---------------------------------------------------------------------------------


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _geometry(h, weight, stride: int, padding: int):
    N, C, H, W = h.shape
    KH, KW = weight.shape[2:]
    return N, C, H, W, KH, KW, (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1


def forward(h, weight, bias, target, kind: int, stride: int, padding: int, reduction: int):
    N, C, H, W, KH, KW, OH, OW = _geometry(h, weight, stride, padding)
    acc = weight.dtype
    block_p = min(64, triton.next_power_of_2(OH * OW))
    blocks = triton.cdiv(OH * OW, block_p)
    dldz = torch.empty((N, OH, OW), device=h.device, dtype=acc)
    loss_map = torch.empty_like(dldz) if reduction == NONE else dldz
    partial = torch.empty((N, blocks), device=h.device, dtype=acc)
    factor = 1.0 / (N * OH * OW) if reduction == MEAN else 1.0
    _patch_forward[(N, blocks)](
        h, weight, bias if bias is not None else weight, target, dldz, loss_map, partial, C, H, W, OH, OW,
        *h.stride(), *target.stride(), factor, stride, padding, HAS_BIAS=bias is not None, LOSS=kind,
        STORE_MAP=reduction == NONE, KH=KH, KW=KW, BLOCK_C=min(32, triton.next_power_of_2(C)), BLOCK_P=block_p,
        ACC=_acc(acc), num_warps=4)
    if reduction == NONE:
        return loss_map, dldz
    total = partial.sum()  # a fixed-axis sum of a small buffer: deterministic
    return (total * factor if reduction == MEAN else total), dldz


def backward(dz, h, weight, stride: int, padding: int, need_input: bool):
    N, C, H, W, KH, KW, OH, OW = _geometry(h, weight, stride, padding)
    block_q = min(32, triton.next_power_of_2(H * W))  # 16 x 32 tiles of h and dh: no spills on sm_80/sm_90
    block_c = min(16, triton.next_power_of_2(C))
    q_blocks = triton.cdiv(H * W, block_q)
    staging = torch.empty((N * q_blocks, KH * KW, C), device=h.device, dtype=weight.dtype)
    dh = torch.empty_like(h) if need_input else None
    _patch_backward[(N, q_blocks, triton.cdiv(C, block_c))](
        h, weight, dz, dh if need_input else h, staging, C, H, W, OH, OW, *h.stride(), stride, padding,
        NEED_INPUT=need_input, KH=KH, KW=KW, BLOCK_C=block_c, BLOCK_Q=block_q, ACC=_acc(weight.dtype),
        num_warps=4)
    dweight = staging.sum(0).t().reshape(1, C, KH, KW)
    return dh, dweight, dz.sum().reshape(1)


# ---- code-generation cases (gancore.utils.triton_codegen compiles them for sm_80 and sm_90) ------


def _ordered(kernel, signature: dict) -> dict:
    return {name: signature[name] for name in kernel.arg_names}


def _cases() -> list[dict]:
    ints = {name: "i32" for name in ("C", "H", "W", "OH", "OW", "stride_n", "stride_c", "stride_h", "stride_w",
                                     "stride", "pad")}
    cases = []
    for storage in ("fp32", "bf16"):
        # the losses differ only in a few scalar ops: every loss in fp32, one in bf16
        losses = ((LSGAN, "lsgan"), (BCE, "bce"), (HINGE, "hinge"), (WGAN, "wgan")) if storage == "fp32" else \
            ((BCE, "bce"),)
        for loss, name in losses:
            consts = {"HAS_BIAS": True, "LOSS": loss, "STORE_MAP": False, "KH": 4, "KW": 4, "BLOCK_C": 32,
                      "BLOCK_P": 64, "ACC": tl.float32}
            cases.append({"name": f"patchgan_fwd_{name}_{storage}", "fn": _patch_forward, "constexprs": consts,
                          "signature": _ordered(_patch_forward, {
                              "H_PTR": f"*{storage}", "W_PTR": "*fp32", "B_PTR": "*fp32", "T_PTR": "*fp32",
                              "DLDZ": "*fp32", "LOSS_MAP": "*fp32", "PARTIAL": "*fp32", **ints, "t_n": "i32",
                              "t_y": "i32", "t_x": "i32", "factor": "fp32",
                              **{k: "constexpr" for k in consts}})})
        consts = {"NEED_INPUT": True, "KH": 4, "KW": 4, "BLOCK_C": 16, "BLOCK_Q": 32, "ACC": tl.float32}
        cases.append({"name": f"patchgan_bwd_{storage}", "fn": _patch_backward, "constexprs": consts,
                      "signature": _ordered(_patch_backward, {
                          "H_PTR": f"*{storage}", "W_PTR": "*fp32", "DZ": "*fp32", "DH": f"*{storage}",
                          "STAGING": "*fp32", **ints, **{k: "constexpr" for k in consts}})})
    return cases


COMPILE_CASES = _cases()
