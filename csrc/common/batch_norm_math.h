// Math shared by the CPU and CUDA batch-norm kernels (the activation and the moments are in
// instance_norm_math.h), so one formula is tested on the CPU.
#pragma once

#include "common/instance_norm_math.h"

namespace gancore {

// d out / d a of PReLU out = y > 0 ? y : a * y, times the incoming gradient: g * y on the
// negative side (y == 0 counts as negative, as in PyTorch; it contributes 0 either way).
template <typename A>
GANCORE_HD A prelu_weight_grad(A g, A y) {
  const A negative = g * y;
  return y > A(0) ? A(0) : negative;
}

// PyTorch's running-statistics update: the new batch weighs `momentum`, the variance is unbiased.
template <typename A>
GANCORE_HD void update_running(A& running_mean, A& running_var, A mean, A m2, A count, A momentum) {
  running_mean = (A(1) - momentum) * running_mean + momentum * mean;
  running_var = (A(1) - momentum) * running_var + momentum * (m2 / (count - A(1)));
}

}  // namespace gancore
