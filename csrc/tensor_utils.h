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

// What every instance-norm entry point needs to know about x, once weight and bias are checked.
struct NormGeometry {
  int64_t N, C, S;
  at::ScalarType acc;  // statistics and affine parameters: float, or double for double inputs
  bool channels_last;
};

inline NormGeometry check_norm_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                      const c10::optional<at::Tensor>& bias, c10::DeviceType device) {
  TORCH_CHECK(x.device().type() == device && x.dim() >= 3, "x must be a ", c10::DeviceTypeName(device),
              " tensor (N, C, *spatial), got ", x.sizes(), " on ", x.device());
  const int64_t N = x.size(0), C = x.size(1);
  const NormGeometry g{N, C, x.numel() / std::max<int64_t>(N * C, 1), acc_type_of(x.scalar_type()),
                       layout_of(x) == Layout::kChannelsLast};
  check_param(weight, "weight", C, g.acc, x.device());
  check_param(bias, "bias", C, g.acc, x.device());
  return g;
}

// The kernels walk t and x with one index: same shape, strides, dtype and device.
inline void check_like_x(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.sizes() == x.sizes() && t.strides() == x.strides() && t.scalar_type() == x.scalar_type() &&
                  t.device() == x.device(),
              name, " must match x in shape, strides, dtype and device; got ", t.sizes(), " ", t.strides(),
              " vs ", x.sizes(), " ", x.strides());
}

inline void check_stats(const at::Tensor& mean, const at::Tensor& rstd, const NormGeometry& g) {
  TORCH_CHECK(mean.sizes() == at::IntArrayRef({g.N, g.C}) && rstd.sizes() == mean.sizes() && mean.is_contiguous() &&
                  rstd.is_contiguous() && mean.scalar_type() == g.acc && rstd.scalar_type() == g.acc,
              "mean and rstd must be contiguous (N, C) tensors of ", g.acc);
}

}  // namespace gancore
