// The CPU entry points of the fused norms that other translation units call (the eager autograd nodes
// of autograd.cpp); each is also bound to Python under the name in its comment.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace gancore {

// instance_norm_act_forward_cpu: {out, mean (N, C), rstd (N, C)}.
std::vector<at::Tensor> instance_norm_forward_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                                  const c10::optional<at::Tensor>& bias,
                                                  const c10::optional<at::Tensor>& residual, double eps,
                                                  double slope);

// instance_norm_act_backward_cpu: {dx (undefined unless need_input), dweight, dbias (undefined unless
// need_affine)}.
std::vector<at::Tensor> instance_norm_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                   const c10::optional<at::Tensor>& weight,
                                                   const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                                   const at::Tensor& rstd, double slope, bool need_input,
                                                   bool need_affine);

// batch_norm_act_forward_cpu, training mode: {out, mean (C), rstd (C)}; updates the running buffers in place.
std::vector<at::Tensor> batch_norm_forward_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                               const c10::optional<at::Tensor>& bias,
                                               const c10::optional<at::Tensor>& prelu,
                                               const c10::optional<at::Tensor>& residual,
                                               const c10::optional<at::Tensor>& running_mean,
                                               const c10::optional<at::Tensor>& running_var, double momentum,
                                               double eps, double slope);

// batch_norm_act_apply_cpu: the normalisation with given statistics (eval mode).
at::Tensor batch_norm_apply_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                                const c10::optional<at::Tensor>& residual, const at::Tensor& mean,
                                const at::Tensor& rstd, double slope);

// batch_norm_act_backward_cpu: {dx (undefined unless need_input), sums (3, C)}.
std::vector<at::Tensor> batch_norm_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                const c10::optional<at::Tensor>& weight,
                                                const c10::optional<at::Tensor>& bias,
                                                const c10::optional<at::Tensor>& prelu, const at::Tensor& mean,
                                                const at::Tensor& rstd, double slope, bool training,
                                                bool need_input);

}  // namespace gancore
