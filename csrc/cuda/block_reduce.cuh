// Warp and block reductions shared by the CUDA norm kernels: Chan merges of (count, mean, M2)
// and plain sums, through warp shuffles and shared memory.
#pragma once

#include <cuda_runtime.h>

#include "common/instance_norm_math.h"

namespace gancore {
namespace cuda {

template <typename A>
__device__ MomentsT<A> warp_merge(MomentsT<A> m) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const A n = __shfl_down_sync(0xffffffffu, m.count, offset);
    const A mean = __shfl_down_sync(0xffffffffu, m.mean, offset);
    const A m2 = __shfl_down_sync(0xffffffffu, m.m2, offset);
    m.merge(n, mean, m2);
  }
  return m;
}

template <typename A>
__device__ A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Moments of the whole block, valid in thread 0.
template <typename A, int THREADS>
__device__ MomentsT<A> block_merge(MomentsT<A> m) {
  __shared__ A s_count[THREADS / 32], s_mean[THREADS / 32], s_m2[THREADS / 32];
  m = warp_merge(m);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) s_count[warp] = m.count, s_mean[warp] = m.mean, s_m2[warp] = m.m2;
  __syncthreads();
  MomentsT<A> total;
  if (threadIdx.x == 0)
    for (int w = 0; w < THREADS / 32; ++w) total.merge(s_count[w], s_mean[w], s_m2[w]);
  return total;
}

template <typename A, int THREADS>
__device__ void block_sum2(A& a, A& b) {
  __shared__ A s_a[THREADS / 32], s_b[THREADS / 32];
  a = warp_sum(a);
  b = warp_sum(b);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) s_a[warp] = a, s_b[warp] = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    a = 0, b = 0;
    for (int w = 0; w < THREADS / 32; ++w) a += s_a[w], b += s_b[w];
  }
}

}  // namespace cuda
}  // namespace gancore
