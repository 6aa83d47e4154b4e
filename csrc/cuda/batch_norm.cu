// CUDA kernels: fused batch norm + activation (+ residual), the four steps of gancore.ops.batch_norm.
// Plain CUDA without torch headers (compile-checked with nvcc for sm_80/sm_90); launched from
// batch_norm_binding.cpp in CUDA builds.
//
// Reductions go per (sample, slice of S) part: NCHW one block per (part, channel), Welford per thread
// and a Chan merge across the block; channels-last one block per (part, 32 channels), 32 x 8
// threads, lanes along channels (coalesced). The caller merges the parts in a fixed order.
// apply / grad_input are elementwise, grid-stride, over the flat tensor.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/batch_norm_math.h"
#include "cuda/batch_norm.cuh"
#include "cuda/block_reduce.cuh"

namespace gancore {
namespace cuda {
namespace {

constexpr int kThreads = 256;  // reductions over a plane, and elementwise kernels
constexpr int kLanes = 32;     // channels per channels-last block
constexpr int kRows = 8;       // row groups per channels-last block

template <typename T, typename A>
struct Coefs {
  A mean, rstd, scale, shift, slope;
  __device__ Coefs(const BnArgs<T, A>& p, int64_t c)
      : mean(p.mean[c]),
        rstd(p.rstd[c]),
        scale(p.rstd[c] * (p.weight ? p.weight[c] : A(1))),
        shift(p.bias ? p.bias[c] : A(0)),
        slope(p.prelu ? p.prelu[c * p.prelu_stride] : p.slope) {}
};

template <typename T, typename A>
__device__ int64_t channel_of(const BnArgs<T, A>& p, int64_t i) {
  return p.channels_last ? i % p.C : (i / p.S) % p.C;
}

// The part (n, slice) of blockIdx.x: its sample, and its first and one-past-last s.
template <typename T, typename A>
__device__ void part_range(const BnArgs<T, A>& p, int64_t& n, int64_t& s0, int64_t& s1) {
  n = blockIdx.x / p.splits;
  s0 = (blockIdx.x % p.splits) * p.per;
  s1 = s0 + p.per < p.S ? s0 + p.per : p.S;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) moments_planes(BnArgs<T, A> p) {
  int64_t n, s0, s1;
  part_range(p, n, s0, s1);
  const int64_t c = blockIdx.y, base = (n * p.C + c) * p.S;
  MomentsT<A> m;
  for (int64_t s = s0 + threadIdx.x; s < s1; s += kThreads) m.push(static_cast<A>(p.x[base + s]));
  m = block_merge<A, kThreads>(m);
  if (threadIdx.x == 0) {
    const int64_t P = p.N * p.splits, k = blockIdx.x * p.C + c;
    p.part[k] = m.mean;
    p.part[P * p.C + k] = m.m2;
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kLanes* kRows) moments_channels_last(BnArgs<T, A> p) {
  int64_t n, s0, s1;
  part_range(p, n, s0, s1);
  const int64_t c = blockIdx.y * kLanes + threadIdx.x;
  const bool active = c < p.C;
  MomentsT<A> m;
  if (active)
    for (int64_t s = s0 + threadIdx.y; s < s1; s += kRows) m.push(static_cast<A>(p.x[(n * p.S + s) * p.C + c]));
  __shared__ A s_count[kRows][kLanes], s_mean[kRows][kLanes], s_m2[kRows][kLanes];
  s_count[threadIdx.y][threadIdx.x] = m.count;
  s_mean[threadIdx.y][threadIdx.x] = m.mean;
  s_m2[threadIdx.y][threadIdx.x] = m.m2;
  __syncthreads();
  if (!active || threadIdx.y != 0) return;
  MomentsT<A> total;
  for (int k = 0; k < kRows; ++k) total.merge(s_count[k][threadIdx.x], s_mean[k][threadIdx.x], s_m2[k][threadIdx.x]);
  const int64_t P = p.N * p.splits, k = blockIdx.x * p.C + c;
  p.part[k] = total.mean;
  p.part[P * p.C + k] = total.m2;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) apply_kernel(BnArgs<T, A> p) {
  const int64_t total = p.N * p.C * p.S;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const Coefs<T, A> k(p, channel_of(p, i));
    A y = leaky((static_cast<A>(p.x[i]) - k.mean) * k.scale + k.shift, k.slope);
    if (p.residual) y += static_cast<A>(p.residual[i]);
    p.out[i] = static_cast<T>(y);
  }
}

// The three gradient sums of one element: dy, dy * (x - mean) and (PReLU) grad * min(y, 0).
template <typename T, typename A>
__device__ void accumulate_grad(const BnArgs<T, A>& p, const Coefs<T, A>& k, int64_t i, A& s1, A& s2, A& s3) {
  const A centred = static_cast<A>(p.x[i]) - k.mean;
  const A y = centred * k.scale + k.shift;
  const A g = static_cast<A>(p.grad[i]);
  const A dy = g * leaky_grad(y, k.slope);
  s1 += dy;
  s2 += dy * centred;
  if (p.prelu) s3 += prelu_weight_grad(g, y);
}

template <typename T, typename A>
__device__ void store_sums(const BnArgs<T, A>& p, int64_t c, const Coefs<T, A>& k, A s1, A s2, A s3) {
  const int64_t P = p.N * p.splits, i = blockIdx.x * p.C + c;
  p.part[i] = s1;
  p.part[P * p.C + i] = s2 * k.rstd;
  p.part[2 * P * p.C + i] = s3;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) grad_sums_planes(BnArgs<T, A> p) {
  int64_t n, s0, s1;
  part_range(p, n, s0, s1);
  const int64_t c = blockIdx.y, base = (n * p.C + c) * p.S;
  const Coefs<T, A> k(p, c);
  A a = 0, b = 0, d = 0;
  for (int64_t s = s0 + threadIdx.x; s < s1; s += kThreads) accumulate_grad(p, k, base + s, a, b, d);
  block_sum2<A, kThreads>(a, b);
  __syncthreads();  // block_sum2's shared buffers are reused below
  A unused = 0;
  block_sum2<A, kThreads>(d, unused);
  if (threadIdx.x == 0) store_sums(p, c, k, a, b, d);
}

template <typename T, typename A>
__global__ void __launch_bounds__(kLanes* kRows) grad_sums_channels_last(BnArgs<T, A> p) {
  int64_t n, s0, s1;
  part_range(p, n, s0, s1);
  const int64_t c = blockIdx.y * kLanes + threadIdx.x;
  const bool active = c < p.C;
  const Coefs<T, A> k(p, active ? c : 0);
  A a = 0, b = 0, d = 0;
  if (active)
    for (int64_t s = s0 + threadIdx.y; s < s1; s += kRows) accumulate_grad(p, k, (n * p.S + s) * p.C + c, a, b, d);
  __shared__ A s_a[kRows][kLanes], s_b[kRows][kLanes], s_d[kRows][kLanes];
  s_a[threadIdx.y][threadIdx.x] = a;
  s_b[threadIdx.y][threadIdx.x] = b;
  s_d[threadIdx.y][threadIdx.x] = d;
  __syncthreads();
  if (!active || threadIdx.y != 0) return;
  a = 0, b = 0, d = 0;
  for (int r = 0; r < kRows; ++r) a += s_a[r][threadIdx.x], b += s_b[r][threadIdx.x], d += s_d[r][threadIdx.x];
  store_sums(p, c, k, a, b, d);
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) grad_input_kernel(BnArgs<T, A> p) {
  const int64_t total = p.N * p.C * p.S;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t c = channel_of(p, i);
    const Coefs<T, A> k(p, c);
    const A centred = static_cast<A>(p.x[i]) - k.mean;
    A dy = static_cast<A>(p.grad[i]) * leaky_grad(centred * k.scale + k.shift, k.slope);
    if (p.coef_dy) dy -= p.coef_dy[c] + centred * k.rstd * p.coef_dyx[c];
    p.out[i] = static_cast<T>(k.scale * dy);
  }
}

template <typename T, typename A>
dim3 reduce_grid(const BnArgs<T, A>& p) {
  const int64_t cb = p.channels_last ? (p.C + kLanes - 1) / kLanes : p.C;
  return dim3(static_cast<unsigned>(p.N * p.splits), static_cast<unsigned>(cb));
}

template <typename T, typename A>
unsigned elementwise_blocks(const BnArgs<T, A>& p) {
  const int64_t blocks = (p.N * p.C * p.S + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65536 * 8 ? blocks : 65536 * 8);
}

}  // namespace

template <typename T, typename A>
cudaError_t launch_partial_stats(const BnArgs<T, A>& args, cudaStream_t stream) {
  if (args.channels_last) {
    moments_channels_last<T, A><<<reduce_grid(args), dim3(kLanes, kRows), 0, stream>>>(args);
  } else {
    moments_planes<T, A><<<reduce_grid(args), kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_apply(const BnArgs<T, A>& args, cudaStream_t stream) {
  apply_kernel<T, A><<<elementwise_blocks(args), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_grad_sums(const BnArgs<T, A>& args, cudaStream_t stream) {
  if (args.channels_last) {
    grad_sums_channels_last<T, A><<<reduce_grid(args), dim3(kLanes, kRows), 0, stream>>>(args);
  } else {
    grad_sums_planes<T, A><<<reduce_grid(args), kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_grad_input(const BnArgs<T, A>& args, cudaStream_t stream) {
  grad_input_kernel<T, A><<<elementwise_blocks(args), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

#define GANCORE_INSTANTIATE(T, A)                                                         \
  template cudaError_t launch_partial_stats<T, A>(const BnArgs<T, A>&, cudaStream_t);    \
  template cudaError_t launch_apply<T, A>(const BnArgs<T, A>&, cudaStream_t);            \
  template cudaError_t launch_grad_sums<T, A>(const BnArgs<T, A>&, cudaStream_t);        \
  template cudaError_t launch_grad_input<T, A>(const BnArgs<T, A>&, cudaStream_t);

GANCORE_INSTANTIATE(float, float)
GANCORE_INSTANTIATE(double, double)
GANCORE_INSTANTIATE(__half, float)
GANCORE_INSTANTIATE(__nv_bfloat16, float)

}  // namespace cuda
}  // namespace gancore
