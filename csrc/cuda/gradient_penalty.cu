// CUDA kernels: gradient-penalty interpolation and the fused per-sample gradient norm + penalty.
// Plain CUDA without torch headers (compile-checked with nvcc for sm_80/sm_90 on machines whose
// torch has no CUDA); launched from gradient_penalty_binding.cpp in CUDA builds.
//
// One block per (chunk of kGpChunk elements, sample): reductions write one partial per block to a
// staging buffer, finished by a single block in a fixed order: deterministic, no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/gan_loss_math.h"
#include "cuda/gradient_penalty.cuh"

namespace gancore {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block, valid in thread 0 (fixed tree: deterministic).
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A s_warp[kThreads / 32];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) s_warp[warp] = v;
  __syncthreads();
  A total = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; ++w) total += s_warp[w];
  return total;
}

// The element range of this block: sample blockIdx.y, chunk blockIdx.x.
struct ChunkRange {
  int64_t begin, end;
};

__device__ ChunkRange chunk_range(int64_t S) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * kGpChunk;
  const int64_t base = static_cast<int64_t>(blockIdx.y) * S;
  const int64_t stop = start + kGpChunk < S ? start + kGpChunk : S;
  return {base + start, base + stop};
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) interpolate_kernel(const T* real, const T* fake, const A* alpha, T* out,
                                                               int64_t S) {
  const ChunkRange r = chunk_range(S);
  const A a = alpha[blockIdx.y], b = A(1) - a;
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads)
    out[i] = static_cast<T>(a * static_cast<A>(real[i]) + b * static_cast<A>(fake[i]));
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) interpolate_backward_kernel(const T* g, const T* real, const T* fake,
                                                                        const A* alpha, T* dreal, T* dfake,
                                                                        A* partial, int64_t S) {
  const ChunkRange r = chunk_range(S);
  const A a = alpha[blockIdx.y], b = A(1) - a;
  A sum = 0;
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) {
    const A gv = static_cast<A>(g[i]);
    if (dreal != nullptr) dreal[i] = static_cast<T>(gv * a);
    if (dfake != nullptr) dfake[i] = static_cast<T>(gv * b);
    if (partial != nullptr) sum += gv * (static_cast<A>(real[i]) - static_cast<A>(fake[i]));
  }
  if (partial == nullptr) return;
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = sum;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) sum_squares_kernel(const T* g, A* partial, int64_t S) {
  const ChunkRange r = chunk_range(S);
  A sum = 0;
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) {
    const A v = static_cast<A>(g[i]);
    sum += v * v;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = sum;
}

// One block: thread t finishes samples t, t + kThreads, ... (chunks summed in order), then the mean.
template <typename A>
__global__ void __launch_bounds__(kThreads) penalty_kernel(const A* partial, A* penalty, A* coef, int64_t N,
                                                           int64_t chunks, int mode, A center, A weight, A inv2) {
  A total = 0;
  for (int64_t n = threadIdx.x; n < N; n += kThreads) {
    A sumsq = 0;
    for (int64_t k = 0; k < chunks; ++k) sumsq += partial[n * chunks + k];
    const LossAndGrad<A> p = penalty_of_sumsq<A>(mode, sumsq * inv2, center);
    coef[n] = weight * p.grad * inv2 / static_cast<A>(N);
    total += p.loss;
  }
  total = block_sum(total);
  if (threadIdx.x == 0) *penalty = weight * total / static_cast<A>(N);
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) scale_samples_kernel(const T* g, const A* scale, T* dg, int64_t S) {
  const ChunkRange r = chunk_range(S);
  const A s = scale[blockIdx.y];
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) dg[i] = static_cast<T>(static_cast<A>(g[i]) * s);
}

dim3 grid_of(int64_t N, int64_t S) { return dim3(static_cast<unsigned>(gp_chunks(S)), static_cast<unsigned>(N)); }

}  // namespace

template <typename T, typename A>
cudaError_t launch_gp_interpolate(const T* real, const T* fake, const A* alpha, T* out, int64_t N, int64_t S,
                                  cudaStream_t stream) {
  interpolate_kernel<T, A><<<grid_of(N, S), kThreads, 0, stream>>>(real, fake, alpha, out, S);
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_gp_interpolate_backward(const T* g, const T* real, const T* fake, const A* alpha, T* dreal,
                                           T* dfake, A* partial, int64_t N, int64_t S, cudaStream_t stream) {
  interpolate_backward_kernel<T, A><<<grid_of(N, S), kThreads, 0, stream>>>(g, real, fake, alpha, dreal, dfake,
                                                                            partial, S);
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_gp_norm_penalty(const T* g, A* partial, A* penalty, A* coef, int64_t N, int64_t S, int mode,
                                   A center, A weight, A inv_scale, cudaStream_t stream) {
  sum_squares_kernel<T, A><<<grid_of(N, S), kThreads, 0, stream>>>(g, partial, S);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  penalty_kernel<A><<<1, kThreads, 0, stream>>>(partial, penalty, coef, N, gp_chunks(S), mode, center, weight,
                                                inv_scale * inv_scale);
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_gp_scale_samples(const T* g, const A* scale, T* dg, int64_t N, int64_t S, cudaStream_t stream) {
  scale_samples_kernel<T, A><<<grid_of(N, S), kThreads, 0, stream>>>(g, scale, dg, S);
  return cudaGetLastError();
}

#define GANCORE_GP_INSTANTIATE(T, A)                                                                                \
  template cudaError_t launch_gp_interpolate<T, A>(const T*, const T*, const A*, T*, int64_t, int64_t,              \
                                                   cudaStream_t);                                                   \
  template cudaError_t launch_gp_interpolate_backward<T, A>(const T*, const T*, const T*, const A*, T*, T*, A*,     \
                                                            int64_t, int64_t, cudaStream_t);                        \
  template cudaError_t launch_gp_norm_penalty<T, A>(const T*, A*, A*, A*, int64_t, int64_t, int, A, A, A,           \
                                                    cudaStream_t);                                                  \
  template cudaError_t launch_gp_scale_samples<T, A>(const T*, const A*, T*, int64_t, int64_t, cudaStream_t);

GANCORE_GP_INSTANTIATE(float, float)
GANCORE_GP_INSTANTIATE(double, double)
GANCORE_GP_INSTANTIATE(__half, float)
GANCORE_GP_INSTANTIATE(__nv_bfloat16, float)

}  // namespace cuda
}  // namespace gancore
