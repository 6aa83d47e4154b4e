// Tensor checks shared by the CPU and CUDA bindings (torch-side only; kernels never see tensors).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace gancore {

enum class Layout { kContiguous, kChannelsLast };

// (N, C, S) view of x: contiguous, or channels-last (dims permuted to N, *spatial, C contiguous).
inline Layout layout_of(const at::Tensor& x) {
  if (x.is_contiguous()) return Layout::kContiguous;
  std::vector<int64_t> perm = {0};
  for (int64_t d = 2; d < x.dim(); ++d) perm.push_back(d);
  perm.push_back(1);
  TORCH_CHECK(x.permute(perm).is_contiguous(),
              "instance_norm_act: expected a contiguous or channels-last tensor, got strides ", x.strides());
  return Layout::kChannelsLast;
}

inline void check_param(const c10::optional<at::Tensor>& t, const char* name, int64_t C, at::ScalarType acc,
                        const at::Device& device) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == C && t->is_contiguous() && t->scalar_type() == acc &&
                  t->device() == device,
              name, " must be a contiguous 1-D tensor of ", C, " values of ", acc, " on ", device, ", got ",
              t->sizes(), " ", t->scalar_type(), " on ", t->device());
}

template <typename A>
const A* optional_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<A>() : nullptr;
}

inline at::ScalarType acc_type_of(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace gancore
