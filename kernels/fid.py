"""Triton kernels for the GPU path of gancore.metrics: covariance accumulation and Newton–Schulz.

Every matrix here is symmetric, so each kernel computes only the tiles on or above the diagonal
(programs below it return at once) and reads a tile below the diagonal as the transpose of its
mirror. That halves the FLOPs of each product against the full cuBLAS GEMM it replaces; the byte and
FLOP counts behind each kernel are in docs/metrics.md.

Layout: a batch of K matrices is a (K, D, D) tensor with unit column stride; only its upper triangle
(and the whole of each diagonal tile) is kept up to date. The caller mirrors it when it needs the
lower half. Grids are (T, T, K) with T = cdiv(D, BLOCK).
"""

import triton
import triton.language as tl


@triton.jit
def _load_symmetric_tile(base, stride_row, tile_r, tile_c, D, BLOCK: tl.constexpr):
    """Tile (tile_r, tile_c) of a symmetric matrix of which only the upper tiles are valid."""
    offs_r = tile_r * BLOCK + tl.arange(0, BLOCK)
    offs_c = tile_c * BLOCK + tl.arange(0, BLOCK)
    # Element (r, c) lives at (min, max): above the diagonal a plain load, below it a transposed one.
    upper = tile_r <= tile_c
    rows = tl.where(upper, offs_r[:, None], offs_c[None, :])
    cols = tl.where(upper, offs_c[None, :], offs_r[:, None])
    mask = (offs_r[:, None] < D) & (offs_c[None, :] < D)
    tile = tl.load(base + rows * stride_row + cols, mask=mask, other=0.0)
    return tile


@triton.jit
def _dot(a, b, acc, FP64: tl.constexpr):
    """acc + a @ b in float64 (DMMA on sm_80+), or in float32 with TF32 off."""
    if FP64:
        acc = tl.dot(a.to(tl.float64), b.to(tl.float64), acc)
    else:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return acc


@triton.jit
def scatter_update_kernel(
    x_ptr, mean_ptr, delta_ptr, coef_ptr, s_ptr,
    N, D,
    stride_xk, stride_xn, stride_xd, stride_sk, stride_sr,
    BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, FP64: tl.constexpr,
):
    """S[k] += (X[k] - m[k])^T (X[k] - m[k]) + coef[k] * delta[k] delta[k]^T, upper tiles only.

    One fused pass for the Chan et al. merge of a batch into running statistics: the features are read
    in their own dtype, centred on the batch mean m in registers, multiplied, corrected by the
    between-means term and added to the float64 scatter matrix S in place. Nothing of size N x D is
    written. mean and delta are (K, D) float64 with unit stride; coef is (K,) float64.
    """
    tile_i = tl.program_id(0)
    tile_j = tl.program_id(1)
    k = tl.program_id(2)
    if tile_i > tile_j:
        return
    offs_i = tile_i * BLOCK + tl.arange(0, BLOCK)
    offs_j = tile_j * BLOCK + tl.arange(0, BLOCK)
    in_i = offs_i < D
    in_j = offs_j < D
    mean_i = tl.load(mean_ptr + k * D + offs_i, mask=in_i, other=0.0)
    mean_j = tl.load(mean_ptr + k * D + offs_j, mask=in_j, other=0.0)
    if FP64:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    x_base = x_ptr + k * stride_xk
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_n = offs_n < N
        xi = tl.load(x_base + offs_n[:, None] * stride_xn + offs_i[None, :] * stride_xd,
                     mask=in_n[:, None] & in_i[None, :], other=0.0)
        xj = tl.load(x_base + offs_n[:, None] * stride_xn + offs_j[None, :] * stride_xd,
                     mask=in_n[:, None] & in_j[None, :], other=0.0)
        # Centre in the product's precision and zero the padding rows, which would add mean^2.
        if FP64:
            ci = xi.to(tl.float64) - mean_i[None, :]
            cj = xj.to(tl.float64) - mean_j[None, :]
        else:
            ci = xi.to(tl.float32) - mean_i.to(tl.float32)[None, :]
            cj = xj.to(tl.float32) - mean_j.to(tl.float32)[None, :]
        ci = tl.where(in_n[:, None], ci, 0.0)
        cj = tl.where(in_n[:, None], cj, 0.0)
        acc = _dot(tl.trans(ci), cj, acc, FP64)
    delta_i = tl.load(delta_ptr + k * D + offs_i, mask=in_i, other=0.0)
    delta_j = tl.load(delta_ptr + k * D + offs_j, mask=in_j, other=0.0)
    coef = tl.load(coef_ptr + k)
    update = acc.to(tl.float64) + coef * (delta_i[:, None] * delta_j[None, :])
    s_tile = s_ptr + k * stride_sk + offs_i[:, None] * stride_sr + offs_j[None, :]
    mask = in_i[:, None] & in_j[None, :]
    tl.store(s_tile, tl.load(s_tile, mask=mask, other=0.0) + update, mask=mask)


@triton.jit
def newton_schulz_t_kernel(
    y_ptr, z_ptr, t_ptr, D, stride_k, stride_r,
    BLOCK: tl.constexpr, FP64: tl.constexpr,
):
    """T = (3 I - Z Y) / 2 for the coupled Newton–Schulz iteration, upper tiles only.

    Y and Z are polynomials in the same symmetric matrix, so they commute and Z Y is symmetric: the
    upper tiles determine T. The scale and the identity are applied in registers, where torch needs
    a separate baddbmm epilogue over a full product.
    """
    tile_i = tl.program_id(0)
    tile_j = tl.program_id(1)
    k = tl.program_id(2)
    if tile_i > tile_j:
        return
    y_base = y_ptr + k * stride_k
    z_base = z_ptr + k * stride_k
    if FP64:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for tile_k in range(0, tl.cdiv(D, BLOCK)):
        z_tile = _load_symmetric_tile(z_base, stride_r, tile_i, tile_k, D, BLOCK)
        y_tile = _load_symmetric_tile(y_base, stride_r, tile_k, tile_j, D, BLOCK)
        acc = _dot(z_tile, y_tile, acc, FP64)
    offs_i = tile_i * BLOCK + tl.arange(0, BLOCK)
    offs_j = tile_j * BLOCK + tl.arange(0, BLOCK)
    eye = tl.where(offs_i[:, None] == offs_j[None, :], 1.5, 0.0)
    t = eye - 0.5 * acc
    mask = (offs_i[:, None] < D) & (offs_j[None, :] < D)
    tl.store(t_ptr + k * stride_k + offs_i[:, None] * stride_r + offs_j[None, :],
             t.to(t_ptr.dtype.element_ty), mask=mask)


@triton.jit
def newton_schulz_yz_kernel(
    y_ptr, z_ptr, t_ptr, y_out_ptr, z_out_ptr, D, stride_k, stride_r,
    BLOCK: tl.constexpr, FP64: tl.constexpr,
):
    """Y' = Y T and Z' = Z T (= T Z: all three commute) in one pass, upper tiles only.

    Both products read the same column panel of T, so one program loads each T tile once for two
    MMAs: a quarter fewer tile loads than two separate GEMMs, and half their FLOPs.
    """
    tile_i = tl.program_id(0)
    tile_j = tl.program_id(1)
    k = tl.program_id(2)
    if tile_i > tile_j:
        return
    y_base = y_ptr + k * stride_k
    z_base = z_ptr + k * stride_k
    t_base = t_ptr + k * stride_k
    if FP64:
        acc_y = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
        acc_z = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
    else:
        acc_y = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
        acc_z = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for tile_k in range(0, tl.cdiv(D, BLOCK)):
        t_tile = _load_symmetric_tile(t_base, stride_r, tile_k, tile_j, D, BLOCK)
        y_tile = _load_symmetric_tile(y_base, stride_r, tile_i, tile_k, D, BLOCK)
        acc_y = _dot(y_tile, t_tile, acc_y, FP64)
        z_tile = _load_symmetric_tile(z_base, stride_r, tile_i, tile_k, D, BLOCK)
        acc_z = _dot(z_tile, t_tile, acc_z, FP64)
    offs_i = tile_i * BLOCK + tl.arange(0, BLOCK)
    offs_j = tile_j * BLOCK + tl.arange(0, BLOCK)
    mask = (offs_i[:, None] < D) & (offs_j[None, :] < D)
    offsets = k * stride_k + offs_i[:, None] * stride_r + offs_j[None, :]
    tl.store(y_out_ptr + offsets, acc_y.to(y_out_ptr.dtype.element_ty), mask=mask)
    tl.store(z_out_ptr + offsets, acc_z.to(z_out_ptr.dtype.element_ty), mask=mask)


# Tile edge used by every launch. 32 keeps each kernel free of spills at 4 warps on sm_80 and sm_90;
# 64x64 float64 tiles spill (two accumulators alone take 128 registers a thread) and need up to
# 192 KiB of shared memory, more than an A100 has.
BLOCK = 32
BLOCK_N = 32


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def scatter_update(scatter, x, batch_mean, delta, coef, fp64_products: bool) -> None:
    """Host side of scatter_update_kernel: scatter[k] += centred x[k]^T centred x[k] + coef[k] delta delta^T,
    on the tiles on or above the diagonal (gancore.ops.fid.scatter_update has the contract)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if scatter.stride(-1) != 1 or scatter.dtype.itemsize != 8 or not scatter.dtype.is_floating_point:
        raise ValueError(f"scatter must be float64 with unit column stride, got {scatter.dtype} "
                         f"with strides {scatter.stride()}")
    count, n, dim = x.shape
    tiles = _cdiv(dim, BLOCK)
    scatter_update_kernel[(tiles, tiles, count)](
        x, batch_mean.contiguous(), delta.contiguous(), coef.contiguous(), scatter, n, dim,
        x.stride(0), x.stride(1), x.stride(2), scatter.stride(0), scatter.stride(1),
        BLOCK=BLOCK, BLOCK_N=BLOCK_N, FP64=fp64_products,
    )


def newton_schulz_step(y, z, buffers: list):
    """One coupled Newton–Schulz step (Y T, T Z with T = (3I - Z Y)/2) on (K, D, D) matrices, into the
    three scratch `buffers` (t, y_out, z_out), which it rotates so that no step allocates."""
    t, y_out, z_out = buffers
    count, dim = y.shape[0], y.shape[-1]
    tiles = _cdiv(dim, BLOCK)
    fp64 = y.dtype.itemsize == 8
    grid = (tiles, tiles, count)
    newton_schulz_t_kernel[grid](y, z, t, dim, y.stride(0), y.stride(1), BLOCK=BLOCK, FP64=fp64)
    newton_schulz_yz_kernel[grid](y, z, t, y_out, z_out, dim, y.stride(0), y.stride(1), BLOCK=BLOCK, FP64=fp64)
    buffers[1], buffers[2] = y, z
    return y_out, z_out


def _cases() -> list[dict]:
    cases = []
    for fp64 in (True, False):
        tag = "fp64" if fp64 else "fp32"
        matrix = "*fp64" if fp64 else "*fp32"
        for x_type in ("*fp32", "*fp16", "*bf16", "*fp64"):
            cases.append({
                "name": f"scatter_update_{x_type[1:]}_{tag}",
                "fn": scatter_update_kernel,
                "signature": {"x_ptr": x_type, "mean_ptr": "*fp64", "delta_ptr": "*fp64",
                              "coef_ptr": "*fp64", "s_ptr": "*fp64", "N": "i32", "D": "i32",
                              "stride_xk": "i64", "stride_xn": "i32", "stride_xd": "i32",
                              "stride_sk": "i64", "stride_sr": "i32",
                              "BLOCK": "constexpr", "BLOCK_N": "constexpr", "FP64": "constexpr"},
                "constexprs": {"BLOCK": BLOCK, "BLOCK_N": BLOCK_N, "FP64": fp64},
            })
        cases.append({
            "name": f"newton_schulz_t_{tag}",
            "fn": newton_schulz_t_kernel,
            "signature": {"y_ptr": matrix, "z_ptr": matrix, "t_ptr": matrix, "D": "i32",
                          "stride_k": "i64", "stride_r": "i32", "BLOCK": "constexpr", "FP64": "constexpr"},
            "constexprs": {"BLOCK": BLOCK, "FP64": fp64},
        })
        cases.append({
            "name": f"newton_schulz_yz_{tag}",
            "fn": newton_schulz_yz_kernel,
            "signature": {"y_ptr": matrix, "z_ptr": matrix, "t_ptr": matrix, "y_out_ptr": matrix,
                          "z_out_ptr": matrix, "D": "i32", "stride_k": "i64", "stride_r": "i32",
                          "BLOCK": "constexpr", "FP64": "constexpr"},
            "constexprs": {"BLOCK": BLOCK, "FP64": fp64},
        })
    return cases


# Every kernel and configuration the Python side launches on a GPU, for the sm_80/sm_90 code-generation
# check (gancore.utils.triton_codegen).
COMPILE_CASES = _cases()
