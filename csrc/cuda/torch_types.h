// Type mapping shared by the CUDA bindings (torch side only; the .cu kernels never include torch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/extension.h>

#include <type_traits>

namespace gancore {

// at::Half / at::BFloat16 share their bit layout with CUDA's __half / __nv_bfloat16.
template <typename T> struct cuda_type { using type = T; };
template <> struct cuda_type<at::Half> { using type = __half; };
template <> struct cuda_type<at::BFloat16> { using type = __nv_bfloat16; };

// Accumulation type of a storage type: float, or double for double.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace gancore
