// Launch interface of the CUDA gradient-penalty kernels: raw pointers only, no torch headers.
// Every tensor is N samples of S elements, each sample one dense block (contiguous or channels-last).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gancore {
namespace cuda {

constexpr int64_t kGpChunk = 8192;  // elements of one sample per block (and per partial sum)

inline int64_t gp_chunks(int64_t S) { return (S + kGpChunk - 1) / kGpChunk; }

// out = alpha[n] * real + (1 - alpha[n]) * fake
template <typename T, typename A>
cudaError_t launch_gp_interpolate(const T* real, const T* fake, const A* alpha, T* out, int64_t N, int64_t S,
                                  cudaStream_t stream);

// dreal = g * alpha[n], dfake = g * (1 - alpha[n]) (each skipped when nullptr);
// partial[n * gp_chunks(S) + k] = sum over chunk k of g * (real - fake) (skipped when nullptr).
template <typename T, typename A>
cudaError_t launch_gp_interpolate_backward(const T* g, const T* real, const T* fake, const A* alpha, T* dreal,
                                           T* dfake, A* partial, int64_t N, int64_t S, cudaStream_t stream);

// penalty = weight * mean_n p(||g_n|| * inv_scale) and coef[n] (dg = grad * coef[n] * g), from a
// (N, gp_chunks(S)) staging buffer of partial sums of squares; mode as gan_loss_math.h PenaltyMode.
template <typename T, typename A>
cudaError_t launch_gp_norm_penalty(const T* g, A* partial, A* penalty, A* coef, int64_t N, int64_t S, int mode,
                                   A center, A weight, A inv_scale, cudaStream_t stream);

// dg = g * scale[n]
template <typename T, typename A>
cudaError_t launch_gp_scale_samples(const T* g, const A* scale, T* dg, int64_t N, int64_t S, cudaStream_t stream);

}  // namespace cuda
}  // namespace gancore
