// CUDA kernels: fused instance norm + leaky activation (+ residual), forward and backward.
// Plain CUDA without torch headers (compile-checked with nvcc for sm_80/sm_90 on machines whose
// torch has no CUDA); launched from instance_norm_binding.cpp in CUDA builds.
//
// Contiguous NCHW: one block per (n, c) plane, Welford per thread, Chan merge across the block.
// Channels-last: one block per (n, 32 channels), 32 x 8 threads: lanes walk channels (coalesced),
// rows are split across the 8 thread rows and merged through shared memory.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/instance_norm_math.h"
#include "cuda/block_reduce.cuh"
#include "cuda/instance_norm.cuh"

namespace gancore {
namespace cuda {
namespace {

constexpr int kPlaneThreads = 512;
constexpr int kLanes = 32;  // channels per channels-last block
constexpr int kRows = 8;    // row groups per channels-last block

template <typename T, typename A>
__global__ void __launch_bounds__(kPlaneThreads) forward_planes(Args<T, A> p) {
  const int64_t plane = blockIdx.x, c = plane % p.C, base = plane * p.S;
  MomentsT<A> m;
  for (int64_t i = threadIdx.x; i < p.S; i += kPlaneThreads) m.push(static_cast<A>(p.x[base + i]));
  m = block_merge<A, kPlaneThreads>(m);
  __shared__ A s_mean, s_rstd;
  if (threadIdx.x == 0) {
    s_mean = m.mean;
    s_rstd = A(1) / sqrt(m.m2 / m.count + p.eps);
    p.mean[plane] = s_mean;
    p.rstd[plane] = s_rstd;
  }
  __syncthreads();
  const A mean = s_mean, scale = s_rstd * (p.weight ? p.weight[c] : A(1)), shift = p.bias ? p.bias[c] : A(0);
  for (int64_t i = base + threadIdx.x; i < base + p.S; i += kPlaneThreads) {
    A y = leaky((static_cast<A>(p.x[i]) - mean) * scale + shift, p.slope);
    if (p.residual) y += static_cast<A>(p.residual[i]);
    p.out[i] = static_cast<T>(y);
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kLanes* kRows) forward_channels_last(Args<T, A> p) {
  const int64_t n = blockIdx.x, c = blockIdx.y * kLanes + threadIdx.x, base = n * p.S * p.C;
  const bool active = c < p.C;
  MomentsT<A> m;
  if (active)
    for (int64_t r = threadIdx.y; r < p.S; r += kRows) m.push(static_cast<A>(p.x[base + r * p.C + c]));
  __shared__ A s_count[kRows][kLanes], s_mean[kRows][kLanes], s_m2[kRows][kLanes];
  s_count[threadIdx.y][threadIdx.x] = m.count;
  s_mean[threadIdx.y][threadIdx.x] = m.mean;
  s_m2[threadIdx.y][threadIdx.x] = m.m2;
  __syncthreads();
  MomentsT<A> total;
  for (int k = 0; k < kRows; ++k)
    total.merge(s_count[k][threadIdx.x], s_mean[k][threadIdx.x], s_m2[k][threadIdx.x]);
  if (!active) return;
  const A mean = total.mean, rstd = A(1) / sqrt(total.m2 / total.count + p.eps);
  if (threadIdx.y == 0) p.mean[n * p.C + c] = mean, p.rstd[n * p.C + c] = rstd;
  const A scale = rstd * (p.weight ? p.weight[c] : A(1)), shift = p.bias ? p.bias[c] : A(0);
  for (int64_t r = threadIdx.y; r < p.S; r += kRows) {
    const int64_t i = base + r * p.C + c;
    A y = leaky((static_cast<A>(p.x[i]) - mean) * scale + shift, p.slope);
    if (p.residual) y += static_cast<A>(p.residual[i]);
    p.out[i] = static_cast<T>(y);
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kPlaneThreads) backward_planes(GradArgs<T, A> p) {
  const int64_t plane = blockIdx.x, c = plane % p.C, base = plane * p.S;
  const A mean = p.mean[plane], rstd = p.rstd[plane];
  const A scale = rstd * (p.weight ? p.weight[c] : A(1)), shift = p.bias ? p.bias[c] : A(0);
  A sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t i = base + threadIdx.x; i < base + p.S; i += kPlaneThreads) {
    const A centred = static_cast<A>(p.x[i]) - mean;
    const A dy = static_cast<A>(p.grad[i]) * leaky_grad(centred * scale + shift, p.slope);
    sum_dy += dy;
    sum_dy_xhat += dy * centred * rstd;
  }
  block_sum2<A, kPlaneThreads>(sum_dy, sum_dy_xhat);
  __shared__ A s_dy, s_dyx;
  if (threadIdx.x == 0) {
    p.sum_dy[plane] = sum_dy;
    p.sum_dy_xhat[plane] = sum_dy_xhat;
    s_dy = sum_dy / static_cast<A>(p.S);
    s_dyx = sum_dy_xhat / static_cast<A>(p.S);
  }
  __syncthreads();
  const A mean_dy = s_dy, mean_dy_xhat = s_dyx;
  for (int64_t i = base + threadIdx.x; i < base + p.S; i += kPlaneThreads) {
    const A centred = static_cast<A>(p.x[i]) - mean;
    const A dy = static_cast<A>(p.grad[i]) * leaky_grad(centred * scale + shift, p.slope);
    p.dx[i] = static_cast<T>(scale * (dy - mean_dy - centred * rstd * mean_dy_xhat));
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kLanes* kRows) backward_channels_last(GradArgs<T, A> p) {
  const int64_t n = blockIdx.x, c = blockIdx.y * kLanes + threadIdx.x, base = n * p.S * p.C;
  const bool active = c < p.C;
  const int64_t nc = n * p.C + (active ? c : 0);
  const A mean = p.mean[nc], rstd = p.rstd[nc];
  const A scale = rstd * (p.weight && active ? p.weight[c] : A(1)), shift = p.bias && active ? p.bias[c] : A(0);
  A sum_dy = 0, sum_dy_xhat = 0;
  if (active)
    for (int64_t r = threadIdx.y; r < p.S; r += kRows) {
      const int64_t i = base + r * p.C + c;
      const A centred = static_cast<A>(p.x[i]) - mean;
      const A dy = static_cast<A>(p.grad[i]) * leaky_grad(centred * scale + shift, p.slope);
      sum_dy += dy;
      sum_dy_xhat += dy * centred * rstd;
    }
  __shared__ A s_dy[kRows][kLanes], s_dyx[kRows][kLanes];
  s_dy[threadIdx.y][threadIdx.x] = sum_dy;
  s_dyx[threadIdx.y][threadIdx.x] = sum_dy_xhat;
  __syncthreads();
  sum_dy = 0, sum_dy_xhat = 0;
  for (int k = 0; k < kRows; ++k) sum_dy += s_dy[k][threadIdx.x], sum_dy_xhat += s_dyx[k][threadIdx.x];
  if (!active) return;
  if (threadIdx.y == 0) p.sum_dy[nc] = sum_dy, p.sum_dy_xhat[nc] = sum_dy_xhat;
  const A mean_dy = sum_dy / static_cast<A>(p.S), mean_dy_xhat = sum_dy_xhat / static_cast<A>(p.S);
  for (int64_t r = threadIdx.y; r < p.S; r += kRows) {
    const int64_t i = base + r * p.C + c;
    const A centred = static_cast<A>(p.x[i]) - mean;
    const A dy = static_cast<A>(p.grad[i]) * leaky_grad(centred * scale + shift, p.slope);
    p.dx[i] = static_cast<T>(scale * (dy - mean_dy - centred * rstd * mean_dy_xhat));
  }
}

}  // namespace

template <typename T, typename A>
cudaError_t launch_forward(const Args<T, A>& args, bool channels_last, cudaStream_t stream) {
  if (channels_last) {
    const dim3 grid(static_cast<unsigned>(args.N), static_cast<unsigned>((args.C + kLanes - 1) / kLanes));
    forward_channels_last<T, A><<<grid, dim3(kLanes, kRows), 0, stream>>>(args);
  } else {
    forward_planes<T, A><<<static_cast<unsigned>(args.N * args.C), kPlaneThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_backward(const GradArgs<T, A>& args, bool channels_last, cudaStream_t stream) {
  if (channels_last) {
    const dim3 grid(static_cast<unsigned>(args.N), static_cast<unsigned>((args.C + kLanes - 1) / kLanes));
    backward_channels_last<T, A><<<grid, dim3(kLanes, kRows), 0, stream>>>(args);
  } else {
    backward_planes<T, A><<<static_cast<unsigned>(args.N * args.C), kPlaneThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

#define GANCORE_INSTANTIATE(T, A)                                                          \
  template cudaError_t launch_forward<T, A>(const Args<T, A>&, bool, cudaStream_t);       \
  template cudaError_t launch_backward<T, A>(const GradArgs<T, A>&, bool, cudaStream_t);

GANCORE_INSTANTIATE(float, float)
GANCORE_INSTANTIATE(double, double)
GANCORE_INSTANTIATE(__half, float)
GANCORE_INSTANTIATE(__nv_bfloat16, float)

}  // namespace cuda
}  // namespace gancore
