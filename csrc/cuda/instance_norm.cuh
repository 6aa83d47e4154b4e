// Launch interface of the CUDA instance-norm kernels: raw pointers only, no torch headers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gancore {
namespace cuda {

// x, residual and out share one layout: (N, C, S) contiguous, or channels-last (N, S, C).
template <typename T, typename A>
struct Args {
  const T* x;
  const T* residual;  // nullptr: no residual
  T* out;
  A* mean;  // (N, C)
  A* rstd;  // (N, C)
  const A* weight;  // nullptr: 1
  const A* bias;    // nullptr: 0
  int64_t N, C, S;
  A eps, slope;
};

template <typename T, typename A>
struct GradArgs {
  const T* grad;
  const T* x;
  T* dx;
  const A* mean;
  const A* rstd;
  const A* weight;
  const A* bias;
  A* sum_dy;       // (N, C) staging for dbias
  A* sum_dy_xhat;  // (N, C) staging for dweight
  int64_t N, C, S;
  A slope;
};

template <typename T, typename A>
cudaError_t launch_forward(const Args<T, A>& args, bool channels_last, cudaStream_t stream);

template <typename T, typename A>
cudaError_t launch_backward(const GradArgs<T, A>& args, bool channels_last, cudaStream_t stream);

}  // namespace cuda
}  // namespace gancore
