// Math shared by the CPU and CUDA instance-norm kernels, so one formula is tested on the CPU.
#pragma once

#ifdef __CUDACC__
#define GANCORE_HD __host__ __device__ __forceinline__
#else
#define GANCORE_HD inline
#endif

namespace gancore {

// "identity", "relu" and "leaky_relu" are all leaky_relu(y, slope) with slope 1, 0 and s:
// one branch-free select, and y * 1 is exact, so identity is bit-exact.
// Both sides are computed before the select so the compiler can vectorise it (it may not
// speculate a floating-point multiply that sits inside a branch).
template <typename A>
GANCORE_HD A leaky(A y, A slope) {
  const A negative = y * slope;
  return y > A(0) ? y : negative;
}

// d leaky / dy, with PyTorch's convention at y == 0 (the negative side).
template <typename A>
GANCORE_HD A leaky_grad(A y, A slope) {
  return y > A(0) ? A(1) : slope;
}

// Running (count, mean, M2) of a set, merged with another set's by Chan et al.'s pairwise
// formula: exact to rounding whatever the offset of the data, unlike E[x^2] - E[x]^2.
template <typename A>
struct MomentsT {
  A count = 0, mean = 0, m2 = 0;

  GANCORE_HD void merge(A n_b, A mean_b, A m2_b) {
    if (n_b == A(0)) return;
    const A total = count + n_b;
    const A delta = mean_b - mean;
    mean += delta * (n_b / total);
    m2 += m2_b + delta * delta * (count * n_b / total);
    count = total;
  }

  // Welford's update: one value at a time (the GPU's per-thread accumulation).
  GANCORE_HD void push(A v) {
    count += A(1);
    const A delta = v - mean;
    mean += delta / count;
    m2 += delta * (v - mean);
  }
};

using Moments = MomentsT<double>;

}  // namespace gancore
