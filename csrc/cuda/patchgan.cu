// CUDA kernels: PatchGAN scoring (conv C -> 1, KH x KW) fused with the per-patch GAN loss.
// Plain CUDA without torch headers (compile-checked with nvcc for sm_80/sm_90 on machines whose
// torch has no CUDA); launched from patchgan_binding.cpp in CUDA builds.
//
// Forward: one thread per output pixel accumulates its C*KH*KW taps (the weights of a block of
// channels staged in shared memory), applies the loss and writes dl/dz; the block's loss sum goes
// to a staging buffer. Backward: one block per (channel, sample) plane; each thread scatters
// dh = sum over taps of w * dz for its input pixels and accumulates its share of dweight for every
// tap, reduced over the block in a fixed order and staged per (sample, channel): no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/gan_loss_math.h"
#include "cuda/patchgan.cuh"

namespace gancore {
namespace cuda {
namespace {

constexpr int kWeightChannels = 32;  // channels whose weights a forward block stages at a time
constexpr int kMaxTaps = 64;         // KH*KW the forward's shared-memory weight staging holds (8x8)
constexpr int kPlaneThreads = 256;

template <typename A>
__device__ A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over a block of THREADS threads, valid in thread 0.
template <typename A, int THREADS>
__device__ A block_sum(A v, A* scratch) {
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A total = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < THREADS / 32; ++w) total += scratch[w];
  return total;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kPatchPixels) patch_forward_kernel(const T* h, const A* weight, const A* bias,
                                                                     const A* target, int64_t t_n, int64_t t_y,
                                                                     int64_t t_x, A* dldz, A* loss_map, A* partial,
                                                                     PatchGeometry g, int kind, A factor) {
  __shared__ A s_w[kWeightChannels * kMaxTaps];
  __shared__ A s_sum[kPatchPixels / 32];
  const int KH = static_cast<int>(g.KH), KW = static_cast<int>(g.KW), taps = KH * KW;
  const int OW = static_cast<int>(g.OW), P = static_cast<int>(g.OH * g.OW);
  const int n = blockIdx.y, p = blockIdx.x * kPatchPixels + threadIdx.x;
  const bool active = p < P;
  const int oy = active ? p / OW : 0, ox = active ? p % OW : 0;
  const int iy0 = oy * static_cast<int>(g.stride) - static_cast<int>(g.pad);
  const int ix0 = ox * static_cast<int>(g.stride) - static_cast<int>(g.pad);
  A z = 0;
  for (int64_t c0 = 0; c0 < g.C; c0 += kWeightChannels) {
    const int cs = static_cast<int>(g.C - c0 < kWeightChannels ? g.C - c0 : kWeightChannels);
    __syncthreads();
    for (int i = threadIdx.x; i < cs * taps; i += kPatchPixels) s_w[i] = weight[c0 * taps + i];
    __syncthreads();
    if (!active) continue;
    const T* hc = h + n * g.stride_n + c0 * g.stride_c;
    for (int tap = 0; tap < taps; ++tap) {
      const int iy = iy0 + tap / KW, ix = ix0 + tap % KW;
      if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
      const T* x = hc + iy * g.stride_h + ix * g.stride_w;
      for (int c = 0; c < cs; ++c) z += s_w[c * taps + tap] * static_cast<A>(x[c * g.stride_c]);
    }
  }
  A loss = 0;
  if (active) {
    if (bias != nullptr) z += bias[0];
    const LossAndGrad<A> l = patch_loss<A>(kind, z, target[n * t_n + oy * t_y + ox * t_x]);
    const int64_t i = static_cast<int64_t>(n) * P + p;
    dldz[i] = l.grad * factor;
    if (loss_map != nullptr) loss_map[i] = l.loss;
    loss = l.loss;
  }
  loss = block_sum<A, kPatchPixels>(loss, s_sum);
  if (threadIdx.x == 0) partial[static_cast<int64_t>(n) * gridDim.x + blockIdx.x] = loss;
}

// dz of the output pixel that tap (ky, kx) of input pixel (iy, ix) feeds, or 0 when there is none.
template <typename A>
__device__ A dz_at(const A* d, int iy, int ix, int ky, int kx, int stride, int pad, int OH, int OW) {
  const int ty = iy + pad - ky, tx = ix + pad - kx;
  if (ty < 0 || tx < 0 || ty % stride != 0 || tx % stride != 0) return A(0);
  const int oy = ty / stride, ox = tx / stride;
  return oy < OH && ox < OW ? d[oy * OW + ox] : A(0);
}

// One block per (channel, sample) plane. KH_, KW_ > 0: the kernel size known at compile time (4x4,
// PatchGAN's), so the taps unroll and the dweight accumulators of every tap live in registers in one
// pass; 0: any size, one pass for dh and then one per tap for dweight.
template <typename T, typename A, int KH_, int KW_>
__global__ void __launch_bounds__(kPlaneThreads) patch_backward_kernel(const T* h, const A* weight, const A* dz,
                                                                       T* dh, A* dw_partial, PatchGeometry g) {
  __shared__ A s_sum[kPlaneThreads / 32];
  const int KH = KH_ > 0 ? KH_ : static_cast<int>(g.KH), KW = KW_ > 0 ? KW_ : static_cast<int>(g.KW);
  const int W = static_cast<int>(g.W), plane = static_cast<int>(g.H * g.W);
  const int OH = static_cast<int>(g.OH), OW = static_cast<int>(g.OW);
  const int stride = static_cast<int>(g.stride), pad = static_cast<int>(g.pad);
  const int64_t c = blockIdx.x, n = blockIdx.y;
  const T* x = h + n * g.stride_n + c * g.stride_c;
  const A* w = weight + c * KH * KW;
  const A* d = dz + n * g.OH * g.OW;
  A* out = dw_partial + (n * g.C + c) * KH * KW;
  constexpr int kTaps = KH_ > 0 ? KH_ * KW_ : 1;
  A dw[kTaps];
#pragma unroll
  for (int t = 0; t < kTaps; ++t) dw[t] = 0;
  for (int q = threadIdx.x; q < plane; q += kPlaneThreads) {
    const int iy = q / W, ix = q % W;
    const int64_t offset = iy * g.stride_h + ix * g.stride_w;
    const A xv = static_cast<A>(x[offset]);
    A acc = 0;
#pragma unroll
    for (int ky = 0; ky < KH; ++ky) {
#pragma unroll
      for (int kx = 0; kx < KW; ++kx) {
        const A dv = dz_at(d, iy, ix, ky, kx, stride, pad, OH, OW);
        acc += w[ky * KW + kx] * dv;
        if constexpr (KH_ > 0) dw[ky * KW + kx] += dv * xv;
      }
    }
    if (dh != nullptr) dh[n * g.stride_n + c * g.stride_c + offset] = static_cast<T>(acc);
  }
  if constexpr (KH_ > 0) {
#pragma unroll
    for (int t = 0; t < kTaps; ++t) {
      const A total = block_sum<A, kPlaneThreads>(dw[t], s_sum);
      if (threadIdx.x == 0) out[t] = total;
    }
  } else {
    for (int t = 0; t < KH * KW; ++t) {
      A sum = 0;
      for (int q = threadIdx.x; q < plane; q += kPlaneThreads) {
        const int iy = q / W, ix = q % W;
        sum += dz_at(d, iy, ix, t / KW, t % KW, stride, pad, OH, OW) *
               static_cast<A>(x[iy * g.stride_h + ix * g.stride_w]);
      }
      const A total = block_sum<A, kPlaneThreads>(sum, s_sum);
      if (threadIdx.x == 0) out[t] = total;
    }
  }
}

}  // namespace

template <typename T, typename A>
cudaError_t launch_patch_forward(const T* h, const A* weight, const A* bias, const A* target, int64_t t_n,
                                 int64_t t_y, int64_t t_x, A* dldz, A* loss_map, A* partial, const PatchGeometry& g,
                                 int kind, A factor, cudaStream_t stream) {
  if (g.KH * g.KW > kMaxTaps) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(patch_blocks(g)), static_cast<unsigned>(g.N));
  patch_forward_kernel<T, A><<<grid, kPatchPixels, 0, stream>>>(h, weight, bias, target, t_n, t_y, t_x, dldz,
                                                                loss_map, partial, g, kind, factor);
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_patch_backward(const T* h, const A* weight, const A* dz, T* dh, A* dw_partial,
                                  const PatchGeometry& g, cudaStream_t stream) {
  if (g.KH * g.KW > kMaxTaps) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(g.C), static_cast<unsigned>(g.N));
  auto kernel = g.KH == 4 && g.KW == 4 ? patch_backward_kernel<T, A, 4, 4> : patch_backward_kernel<T, A, 0, 0>;
  kernel<<<grid, kPlaneThreads, 0, stream>>>(h, weight, dz, dh, dw_partial, g);
  return cudaGetLastError();
}

#define GANCORE_PATCH_INSTANTIATE(T, A)                                                                             \
  template cudaError_t launch_patch_forward<T, A>(const T*, const A*, const A*, const A*, int64_t, int64_t,         \
                                                  int64_t, A*, A*, A*, const PatchGeometry&, int, A, cudaStream_t); \
  template cudaError_t launch_patch_backward<T, A>(const T*, const A*, const A*, T*, A*, const PatchGeometry&,      \
                                                   cudaStream_t);

GANCORE_PATCH_INSTANTIATE(float, float)
GANCORE_PATCH_INSTANTIATE(double, double)
GANCORE_PATCH_INSTANTIATE(__half, float)
GANCORE_PATCH_INSTANTIATE(__nv_bfloat16, float)

}  // namespace cuda
}  // namespace gancore
