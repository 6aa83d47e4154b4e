// Launch interface of the CUDA batch-norm kernels: raw pointers only, no torch headers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gancore {
namespace cuda {

// One argument block for the four steps; each kernel reads the fields it needs.
// x (and grad, residual, out) is (N, C, S) contiguous, or channels-last (N, S, C).
template <typename T, typename A>
struct BnArgs {
  const T* x;
  const T* grad;      // grad_sums, grad_input
  const T* residual;  // apply; nullptr: none
  T* out;             // apply: out; grad_input: dx
  const A* mean;      // (C,)
  const A* rstd;      // (C,)
  const A* weight;    // (C,) or nullptr for 1
  const A* bias;      // (C,) or nullptr for 0
  const A* prelu;     // 1 or C values, or nullptr for the scalar slope
  int64_t prelu_stride;
  A slope;
  const A* coef_dy;   // grad_input, training: mean(dy) over the batch (C,); nullptr in eval
  const A* coef_dyx;  // grad_input, training: mean(dy * xhat) (C,)
  A* part;            // partial_stats: (2, P, C) mean and M2; grad_sums: (3, P, C) sums
  int64_t N, C, S;
  int64_t splits, per;  // each sample's S split into `splits` slices of `per` (the last shorter)
  bool channels_last;
};

template <typename T, typename A>
cudaError_t launch_partial_stats(const BnArgs<T, A>& args, cudaStream_t stream);

template <typename T, typename A>
cudaError_t launch_apply(const BnArgs<T, A>& args, cudaStream_t stream);

template <typename T, typename A>
cudaError_t launch_grad_sums(const BnArgs<T, A>& args, cudaStream_t stream);

template <typename T, typename A>
cudaError_t launch_grad_input(const BnArgs<T, A>& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace gancore
