// Eager autograd nodes for the fused norms on the CPU: one C++ node per call instead of a Python
// torch.autograd.Function, whose apply and backward cost tens of microseconds of Python each, more than the
// kernels of the small maps deep in a generator. Same kernels, same saved tensors, same results.
//
// A backward that builds a graph (create_graph=True: gradient penalties, R1) calls the differentiable
// custom op gancore::*_bwd registered from Python (gancore/ops), so double backward stays exactly as before.
// torch.compile never comes here: it traces the Python path (gancore.ops._dispatch.call).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include <atomic>
#include <string>
#include <vector>

#include "cpu/norm_ops.h"

namespace gancore {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Set while gancore.ops.record_backends is collecting: backward passes report to it then, and only then
// take the GIL.
std::atomic<bool> g_recording{false};

void note_backward_ran(const char* op) {
  if (!g_recording.load(std::memory_order_relaxed)) return;
  pybind11::gil_scoped_acquire gil;
  pybind11::module_::import("gancore.ops._dispatch").attr("note_ran")(op, "cpu");
}

c10::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

at::Tensor defined_or_empty(const c10::optional<at::Tensor>& t) { return t.value_or(at::Tensor()); }

// The incoming gradient with x's strides, as the kernels walk both with one index (a gradient of a sum
// arrives expanded, with zero strides).
at::Tensor with_strides_of(const at::Tensor& grad, const at::Tensor& x) {
  if (grad.strides() == x.strides()) return grad;
  at::Tensor copy = at::empty_like(x);
  copy.copy_(grad);
  return copy;
}

// Runs a custom op registered from Python (through its autograd kernel) and returns its tensor outputs.
std::vector<at::Tensor> call_registered_op(const char* name, std::vector<c10::IValue> stack) {
  c10::Dispatcher::singleton().findSchemaOrThrow(name, "").callBoxed(&stack);
  std::vector<at::Tensor> outputs;
  outputs.reserve(stack.size());
  for (const c10::IValue& v : stack) outputs.push_back(v.toTensor());
  return outputs;
}

struct InstanceNormActNode : public torch::autograd::Function<InstanceNormActNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                               const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                               double eps, double slope) {
    variable_list out = instance_norm_forward_cpu(x, weight, bias, residual, eps, slope);
    ctx->save_for_backward({x, defined_or_empty(weight), defined_or_empty(bias), out[1], out[2]});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["residual"] = residual.has_value() && residual->defined();
    ctx->mark_non_differentiable({out[1], out[2]});
    ctx->set_materialize_grads(false);  // no zero tensors for the statistics' (absent) gradients
    return out;
  }

  // One gradient per forward argument: x, weight, bias, residual, eps, slope.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(6);
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return result;  // reached through a path that does not use the output
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &rstd = saved[4];
    const double eps = ctx->saved_data["eps"].toDouble(), slope = ctx->saved_data["slope"].toDouble();
    std::vector<at::Tensor> d;
    if (at::GradMode::is_enabled()) {
      d = call_registered_op("gancore::instance_norm_act_bwd", {grad, x, optional_of(weight), optional_of(bias), mean,
                                                                  rstd, eps, slope, std::string("cpu")});
    } else {
      d = instance_norm_backward_cpu(with_strides_of(grad, x), x, optional_of(weight), optional_of(bias), mean, rstd,
                                     slope, ctx->needs_input_grad(0), weight.defined() || bias.defined());
      note_backward_ran("instance_norm_act");
    }
    result[0] = d[0];
    if (weight.defined()) result[1] = d[1];
    if (bias.defined()) result[2] = d[2];
    if (ctx->saved_data["residual"].toBool()) result[3] = grad;
    return result;
  }
};

struct BatchNormActNode : public torch::autograd::Function<BatchNormActNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                               const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                               const c10::optional<at::Tensor>& residual,
                               const c10::optional<at::Tensor>& running_mean,
                               const c10::optional<at::Tensor>& running_var, bool training, double factor,
                               double eps, double slope) {
    at::Tensor out, mean, rstd;
    if (training) {
      variable_list r = batch_norm_forward_cpu(x, weight, bias, prelu, residual, running_mean, running_var, factor,
                                               eps, slope);
      out = r[0], mean = r[1], rstd = r[2];
    } else {
      mean = running_mean->clone();
      rstd = at::rsqrt(*running_var + eps);
      out = batch_norm_apply_cpu(x, weight, bias, prelu, residual, mean, rstd, slope);
    }
    ctx->save_for_backward(
        {x, defined_or_empty(weight), defined_or_empty(bias), defined_or_empty(prelu), mean, rstd});
    ctx->saved_data["training"] = training;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["residual"] = residual.has_value() && residual->defined();
    return {out};
  }

  // One gradient per forward argument: x, weight, bias, prelu, residual, running_mean, running_var,
  // training, factor, eps, slope.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(11);
    const at::Tensor& grad = grads[0];
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &prelu = saved[3], &mean = saved[4],
                     &rstd = saved[5];
    const bool training = ctx->saved_data["training"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble(), slope = ctx->saved_data["slope"].toDouble();
    at::Tensor dx, dweight, dbias, dprelu;
    if (at::GradMode::is_enabled()) {
      std::vector<at::Tensor> d = call_registered_op(
          "gancore::batch_norm_act_bwd", {grad, x, optional_of(weight), optional_of(bias), optional_of(prelu), mean,
                                          rstd, training, eps, slope, std::string("cpu")});
      dx = d[0], dweight = d[1], dbias = d[2], dprelu = d[3];
    } else {
      std::vector<at::Tensor> d = batch_norm_backward_cpu(with_strides_of(grad, x), x, optional_of(weight),
                                                          optional_of(bias), optional_of(prelu), mean, rstd, slope,
                                                          training, ctx->needs_input_grad(0));
      note_backward_ran("batch_norm_act");
      const at::Tensor& sums = d[1];  // rows: dbias, dweight, the PReLU weight's gradient per channel
      dx = d[0], dbias = sums[0], dweight = sums[1];
      if (prelu.defined()) dprelu = prelu.numel() > 1 ? sums[2] : sums[2].sum(0, /*keepdim=*/true);
    }
    result[0] = dx;
    if (weight.defined()) result[1] = dweight;
    if (bias.defined()) result[2] = dbias;
    if (prelu.defined()) result[3] = dprelu;
    if (ctx->saved_data["residual"].toBool()) result[4] = grad;
    return result;
  }
};

}  // namespace

void register_autograd(pybind11::module_& m) {
  using pybind11::arg;
  m.def(
      "instance_norm_act_autograd_cpu",
      [](const at::Tensor& x, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
         const c10::optional<at::Tensor>& residual, double eps, double slope) {
        return InstanceNormActNode::apply(x, weight, bias, residual, eps, slope);
      },
      "instance_norm_act_forward_cpu with a C++ autograd node: [out, mean, rstd]", arg("x"), arg("weight"),
      arg("bias"), arg("residual"), arg("eps"), arg("slope"));
  m.def(
      "batch_norm_act_autograd_cpu",
      [](const at::Tensor& x, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
         const c10::optional<at::Tensor>& prelu, const c10::optional<at::Tensor>& residual,
         const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
         double factor, double eps, double slope) {
        return BatchNormActNode::apply(x, weight, bias, prelu, residual, running_mean, running_var, training, factor,
                                       eps, slope)[0];
      },
      "batch_norm_act (training or eval) with a C++ autograd node; running buffers in the acc dtype, contiguous",
      arg("x"), arg("weight"), arg("bias"), arg("prelu"), arg("residual"), arg("running_mean"), arg("running_var"),
      arg("training"), arg("factor"), arg("eps"), arg("slope"));
  m.def(
      "set_backend_recording", [](bool on) { g_recording.store(on); },
      "whether backward passes of the autograd nodes report to gancore.ops.record_backends");
}

}  // namespace gancore
