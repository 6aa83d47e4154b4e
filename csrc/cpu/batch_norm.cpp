// Fused batch norm + activation (+ residual), forward and backward, on the CPU.
// Layouts: contiguous (N, C, *spatial) and channels-last (N, *spatial, C), both without copies.
// Entry points: the fused training forward and the fused backward (one call each from Python), and
// the steps they are made of (statistics, normalisation, gradient sums, input gradient), which the
// eval mode and the cross-process (SyncBatchNorm-like) path compose in Python.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/batch_norm_math.h"
#include "cpu/isa.h"
#include "cpu/huge_pages.h"
#include "tensor_utils.h"

namespace gancore {

// Optional affine parameters and the activation's slope: a scalar (leaky_relu / relu / identity)
// or PReLU weights (1 shared, or one per channel). All in the accumulation type.
template <typename A>
struct BnParams {
  const A* weight;  // C values, or nullptr for 1
  const A* bias;    // C values, or nullptr for 0
  const A* prelu;   // 1 or C values, or nullptr for the scalar slope
  int64_t prelu_stride;
  A slope;
  A w(int64_t c) const { return weight ? weight[c] : A(1); }
  A b(int64_t c) const { return bias ? bias[c] : A(0); }
  A s(int64_t c) const { return prelu ? prelu[c * prelu_stride] : slope; }
};

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GANCORE_HAVE_AVX2_BUILD 1
namespace bn_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define GANCORE_AVX2_KERNELS 1
#include "cpu/batch_norm_kernels.h"
#undef GANCORE_AVX2_KERNELS
#pragma GCC pop_options
}  // namespace bn_avx2
#endif

namespace bn_base {
#include "cpu/batch_norm_kernels.h"
}  // namespace bn_base

namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// x as (N, C, S); with S == 1 a contiguous x is also channels-last, the faster walk.
struct BnGeometry {
  NormGeometry g;
  bool cl;
};

BnGeometry check_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                        const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu) {
  const NormGeometry g = check_norm_inputs(x, weight, bias, c10::DeviceType::CPU);
  if (prelu.has_value() && prelu->defined()) {
    TORCH_CHECK(prelu->dim() == 1 && (prelu->size(0) == 1 || prelu->size(0) == g.C) && prelu->is_contiguous() &&
                    prelu->scalar_type() == g.acc && prelu->device() == x.device(),
                "prelu_weight must be a contiguous 1-D tensor of 1 or ", g.C, " values of ", g.acc, ", got ",
                prelu->sizes(), " ", prelu->scalar_type());
  }
  return {g, g.channels_last || g.S == 1};
}

void check_channel_vector(const at::Tensor& t, const char* name, const NormGeometry& g) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == g.C && t.is_contiguous() && t.scalar_type() == g.acc &&
                  t.device().is_cpu(),
              name, " must be a contiguous (C,) CPU tensor of ", g.acc, ", got ", t.sizes(), " ", t.scalar_type());
}

template <typename A>
BnParams<A> params_of(const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& prelu, double slope) {
  const bool has_prelu = prelu.has_value() && prelu->defined();
  return {optional_ptr<A>(weight), optional_ptr<A>(bias), optional_ptr<A>(prelu),
          has_prelu && prelu->size(0) > 1 ? 1 : 0, static_cast<A>(slope)};
}

// Runs kernels::fn<scalar_t, A> of the ISA picked at run time.
#ifdef GANCORE_HAVE_AVX2_BUILD
#define GANCORE_BN_CALL(fn, ...)                                     \
  do {                                                               \
    if (cpu_use_avx2()) {                                            \
      bn_avx2::fn<scalar_t, A>(__VA_ARGS__);                         \
    } else {                                                         \
      bn_base::fn<scalar_t, A>(__VA_ARGS__);                         \
    }                                                                \
  } while (0)
#else
#define GANCORE_BN_CALL(fn, ...) bn_base::fn<scalar_t, A>(__VA_ARGS__)
#endif

#define GANCORE_BN_DISPATCH(x, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, (x).scalar_type(), name, __VA_ARGS__)

// Per-channel (mean, M2) over (N, *spatial): the batch statistics of this process.
std::vector<at::Tensor> stats(const at::Tensor& x) {
  const BnGeometry geo = check_inputs(x, c10::nullopt, c10::nullopt, c10::nullopt);
  const int64_t N = geo.g.N, C = geo.g.C, S = geo.g.S;
  auto mean = at::zeros({C}, x.options().dtype(geo.g.acc));
  auto m2 = at::zeros({C}, x.options().dtype(geo.g.acc));
  if (x.numel() == 0) return {mean, m2};
  GANCORE_BN_DISPATCH(x, "batch_norm_stats_cpu", [&] {
    using A = acc_t<scalar_t>;
    if (geo.cl) {
      GANCORE_BN_CALL(stats_cl, x.data_ptr<scalar_t>(), N * S, C, mean.data_ptr<A>(), m2.data_ptr<A>());
    } else {
      GANCORE_BN_CALL(stats_nchw, x.data_ptr<scalar_t>(), N, C, S, mean.data_ptr<A>(), m2.data_ptr<A>());
    }
  });
  return {mean, m2};
}

at::Tensor apply_into(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                      const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                      const c10::optional<at::Tensor>& residual, const at::Tensor& mean, const at::Tensor& rstd,
                      double slope, const BnGeometry& geo) {
  const bool has_res = residual.has_value() && residual->defined();
  if (has_res) check_like_x(*residual, x, "residual");
  check_channel_vector(mean, "mean", geo.g);
  check_channel_vector(rstd, "rstd", geo.g);
  auto out = empty_output_like(x);
  if (x.numel() == 0) return out;
  const int64_t N = geo.g.N, C = geo.g.C, S = geo.g.S;
  GANCORE_BN_DISPATCH(x, "batch_norm_act_apply_cpu", [&] {
    using A = acc_t<scalar_t>;
    const BnParams<A> prm = params_of<A>(weight, bias, prelu, slope);
    const scalar_t* res = has_res ? residual->data_ptr<scalar_t>() : nullptr;
    if (geo.cl) {
      GANCORE_BN_CALL(apply_cl, x.data_ptr<scalar_t>(), res, out.data_ptr<scalar_t>(), N * S, C,
                      mean.data_ptr<A>(), rstd.data_ptr<A>(), prm);
    } else {
      GANCORE_BN_CALL(apply_nchw, x.data_ptr<scalar_t>(), res, out.data_ptr<scalar_t>(), N, C, S,
                      mean.data_ptr<A>(), rstd.data_ptr<A>(), prm);
    }
  });
  return out;
}

// batch_norm_forward_cpu for one NCHW image: statistics and normalisation channel by channel
// (forward_single_nchw), with the same results as the two passes. Returns {out, mean, rstd}.
std::vector<at::Tensor> forward_single_image(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                             const c10::optional<at::Tensor>& bias,
                                             const c10::optional<at::Tensor>& prelu,
                                             const c10::optional<at::Tensor>& residual,
                                             const c10::optional<at::Tensor>& running_mean,
                                             const c10::optional<at::Tensor>& running_var, double momentum,
                                             double eps, double slope, const BnGeometry& geo) {
  const bool has_res = residual.has_value() && residual->defined();
  if (has_res) check_like_x(*residual, x, "residual");
  const bool update = running_mean.has_value() && running_mean->defined();
  auto mean = at::empty({geo.g.C}, x.options().dtype(geo.g.acc));
  auto m2 = at::empty_like(mean);
  auto rstd = at::empty_like(mean);
  auto out = empty_output_like(x);
  GANCORE_BN_DISPATCH(x, "batch_norm_act_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const BnParams<A> prm = params_of<A>(weight, bias, prelu, slope);
    GANCORE_BN_CALL(forward_single_nchw, x.data_ptr<scalar_t>(), has_res ? residual->data_ptr<scalar_t>() : nullptr,
                    out.data_ptr<scalar_t>(), geo.g.C, geo.g.S, mean.data_ptr<A>(), m2.data_ptr<A>(),
                    rstd.data_ptr<A>(), prm, eps, update ? running_mean->data_ptr<A>() : nullptr,
                    update ? running_var->data_ptr<A>() : nullptr, static_cast<A>(momentum));
  });
  return {out, mean, rstd};
}

}  // namespace

// out = act((x - mean) * rstd * weight + bias) [+ residual] with given per-channel statistics.
at::Tensor batch_norm_apply_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                                const c10::optional<at::Tensor>& residual, const at::Tensor& mean,
                                const at::Tensor& rstd, double slope) {
  return apply_into(x, weight, bias, prelu, residual, mean, rstd, slope, check_inputs(x, weight, bias, prelu));
}

// Training forward in one call: batch statistics, running-buffer update (in place, when given),
// normalisation. Returns {out, mean, rstd}.
std::vector<at::Tensor> batch_norm_forward_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                               const c10::optional<at::Tensor>& bias,
                                               const c10::optional<at::Tensor>& prelu,
                                               const c10::optional<at::Tensor>& residual,
                                               const c10::optional<at::Tensor>& running_mean,
                                               const c10::optional<at::Tensor>& running_var, double momentum,
                                               double eps, double slope) {
  const BnGeometry geo = check_inputs(x, weight, bias, prelu);
  const bool update = running_mean.has_value() && running_mean->defined();
  TORCH_CHECK(update == (running_var.has_value() && running_var->defined()),
              "running_mean and running_var must be given together");
  if (update) {
    check_channel_vector(*running_mean, "running_mean", geo.g);
    check_channel_vector(*running_var, "running_var", geo.g);
  }
  const double count = static_cast<double>(geo.g.N * geo.g.S);
  TORCH_CHECK(count > 1, "batch_norm_act: training needs more than one value per channel, got x of shape ",
              x.sizes());
  if (geo.g.N == 1 && !geo.cl) return forward_single_image(x, weight, bias, prelu, residual, running_mean,
                                                           running_var, momentum, eps, slope, geo);
  auto st = stats(x);
  auto rstd = at::empty_like(st[0]);
  GANCORE_BN_DISPATCH(x, "batch_norm_act_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const A* mean = st[0].data_ptr<A>();
    const A* m2 = st[1].data_ptr<A>();
    A* r = rstd.data_ptr<A>();
    for (int64_t c = 0; c < geo.g.C; ++c) {
      r[c] = static_cast<A>(1.0 / std::sqrt(static_cast<double>(m2[c]) / count + eps));
      if (update) {
        update_running<A>(running_mean->data_ptr<A>()[c], running_var->data_ptr<A>()[c], mean[c], m2[c],
                          static_cast<A>(count), static_cast<A>(momentum));
      }
    }
  });
  auto out = apply_into(x, weight, bias, prelu, residual, st[0], rstd, slope, geo);
  return {out, st[0], rstd};
}

namespace {

at::Tensor grad_sums_of(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                        const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                        const at::Tensor& mean, const at::Tensor& rstd, double slope, const BnGeometry& geo) {
  check_like_x(grad, x, "grad");
  check_channel_vector(mean, "mean", geo.g);
  check_channel_vector(rstd, "rstd", geo.g);
  const int64_t N = geo.g.N, C = geo.g.C, S = geo.g.S;
  auto sums = at::zeros({3, C}, x.options().dtype(geo.g.acc));
  if (x.numel() == 0) return sums;
  GANCORE_BN_DISPATCH(x, "batch_norm_act_grad_sums_cpu", [&] {
    using A = acc_t<scalar_t>;
    const BnParams<A> prm = params_of<A>(weight, bias, prelu, slope);
    if (geo.cl) {
      GANCORE_BN_CALL(grad_sums_cl, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), N * S, C,
                      mean.data_ptr<A>(), rstd.data_ptr<A>(), prm, sums.data_ptr<A>());
    } else {
      GANCORE_BN_CALL(grad_sums_nchw, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), N, C, S,
                      mean.data_ptr<A>(), rstd.data_ptr<A>(), prm, sums.data_ptr<A>());
    }
  });
  return sums;
}

// (3, C): sum of dy = grad * act'(y), of dy * xhat, and of grad * min(y, 0) (the PReLU weight's gradient;
// zeros without PReLU). dbias, dweight and dprelu are these sums.
at::Tensor grad_sums(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                     const at::Tensor& mean, const at::Tensor& rstd, double slope) {
  return grad_sums_of(grad, x, weight, bias, prelu, mean, rstd, slope, check_inputs(x, weight, bias, prelu));
}

at::Tensor grad_input_of(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                         const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                         const at::Tensor& mean, const at::Tensor& rstd, double slope,
                         const c10::optional<at::Tensor>& coef_dy, const c10::optional<at::Tensor>& coef_dyx,
                         const BnGeometry& geo) {
  check_like_x(grad, x, "grad");
  check_channel_vector(mean, "mean", geo.g);
  check_channel_vector(rstd, "rstd", geo.g);
  const bool has_coef = coef_dy.has_value() && coef_dy->defined();
  TORCH_CHECK(has_coef == (coef_dyx.has_value() && coef_dyx->defined()), "coef_dy and coef_dyx go together");
  if (has_coef) {
    check_channel_vector(*coef_dy, "coef_dy", geo.g);
    check_channel_vector(*coef_dyx, "coef_dyx", geo.g);
  }
  auto dx = empty_output_like(x);
  if (x.numel() == 0) return dx;
  const int64_t N = geo.g.N, C = geo.g.C, S = geo.g.S;
  GANCORE_BN_DISPATCH(x, "batch_norm_act_grad_input_cpu", [&] {
    using A = acc_t<scalar_t>;
    const BnParams<A> prm = params_of<A>(weight, bias, prelu, slope);
    const A* d1 = has_coef ? coef_dy->data_ptr<A>() : nullptr;
    const A* d2 = has_coef ? coef_dyx->data_ptr<A>() : nullptr;
    if (geo.cl) {
      GANCORE_BN_CALL(grad_input_cl, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                      N * S, C, mean.data_ptr<A>(), rstd.data_ptr<A>(), prm, d1, d2);
    } else {
      GANCORE_BN_CALL(grad_input_nchw, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                      N, C, S, mean.data_ptr<A>(), rstd.data_ptr<A>(), prm, d1, d2);
    }
  });
  return dx;
}

// dx = rstd * weight * (dy - coef_dy - xhat * coef_dyx); without coefficients (eval) dx = rstd * weight * dy.
at::Tensor grad_input(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                      const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                      const at::Tensor& mean, const at::Tensor& rstd, double slope,
                      const c10::optional<at::Tensor>& coef_dy, const c10::optional<at::Tensor>& coef_dyx) {
  return grad_input_of(grad, x, weight, bias, prelu, mean, rstd, slope, coef_dy, coef_dyx,
                       check_inputs(x, weight, bias, prelu));
}

// The training backward for one NCHW image, channel by channel (backward_single_nchw): {dx, sums}, the same
// results as grad_sums_of then grad_input_of.
std::vector<at::Tensor> backward_single_image(const at::Tensor& grad, const at::Tensor& x,
                                              const c10::optional<at::Tensor>& weight,
                                              const c10::optional<at::Tensor>& bias,
                                              const c10::optional<at::Tensor>& prelu, const at::Tensor& mean,
                                              const at::Tensor& rstd, double slope, const BnGeometry& geo) {
  check_like_x(grad, x, "grad");
  check_channel_vector(mean, "mean", geo.g);
  check_channel_vector(rstd, "rstd", geo.g);
  auto sums = at::empty({3, geo.g.C}, x.options().dtype(geo.g.acc));
  auto dx = empty_output_like(x);
  GANCORE_BN_DISPATCH(x, "batch_norm_act_backward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const BnParams<A> prm = params_of<A>(weight, bias, prelu, slope);
    GANCORE_BN_CALL(backward_single_nchw, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                    geo.g.C, geo.g.S, mean.data_ptr<A>(), rstd.data_ptr<A>(), prm, sums.data_ptr<A>());
  });
  return {dx, sums};
}

}  // namespace

// Fused backward: {dx (undefined unless need_input), sums (3, C) as in grad_sums}. In training the
// statistics depend on x, so dx takes the batch means of dy and dy * xhat.
std::vector<at::Tensor> batch_norm_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                const c10::optional<at::Tensor>& weight,
                                                const c10::optional<at::Tensor>& bias,
                                                const c10::optional<at::Tensor>& prelu, const at::Tensor& mean,
                                                const at::Tensor& rstd, double slope, bool training,
                                                bool need_input) {
  const BnGeometry geo = check_inputs(x, weight, bias, prelu);
  if (training && need_input && geo.g.N == 1 && !geo.cl) {
    return backward_single_image(grad, x, weight, bias, prelu, mean, rstd, slope, geo);
  }
  auto sums = grad_sums_of(grad, x, weight, bias, prelu, mean, rstd, slope, geo);
  at::Tensor dx;
  if (need_input) {
    if (training) {
      // the batch means of dy and dy * xhat, by a plain loop (ATen ops cost microseconds on small maps)
      const double inv = 1.0 / static_cast<double>(std::max<int64_t>(geo.g.N * geo.g.S, 1));
      auto coefs = at::empty({2, geo.g.C}, sums.options());
      AT_DISPATCH_FLOATING_TYPES(sums.scalar_type(), "batch_norm_act_coefs_cpu", [&] {
        const scalar_t* s = sums.data_ptr<scalar_t>();
        scalar_t* k = coefs.data_ptr<scalar_t>();
        for (int64_t i = 0; i < 2 * geo.g.C; ++i) k[i] = static_cast<scalar_t>(s[i] * inv);
      });
      dx = grad_input_of(grad, x, weight, bias, prelu, mean, rstd, slope, coefs[0], coefs[1], geo);
    } else {
      dx = grad_input_of(grad, x, weight, bias, prelu, mean, rstd, slope, c10::nullopt, c10::nullopt, geo);
    }
  }
  return {dx, sums};
}

void register_batch_norm(pybind11::module_& m) {
  using pybind11::arg;
  m.def("batch_norm_act_forward_cpu", &batch_norm_forward_cpu,
        "fused batch norm + activation, training forward (CPU)", arg("x"), arg("weight"), arg("bias"), arg("prelu"),
        arg("residual"), arg("running_mean"), arg("running_var"), arg("momentum"), arg("eps"), arg("slope"));
  m.def("batch_norm_act_backward_cpu", &batch_norm_backward_cpu, "fused batch norm + activation, backward (CPU)",
        arg("grad"), arg("x"), arg("weight"), arg("bias"), arg("prelu"), arg("mean"), arg("rstd"), arg("slope"),
        arg("training"), arg("need_input"));
  m.def("batch_norm_stats_cpu", &stats, "per-channel (mean, M2) of x over (N, *spatial) (CPU)", arg("x"));
  m.def("batch_norm_act_apply_cpu", &batch_norm_apply_cpu,
        "act((x - mean) * rstd * weight + bias) [+ residual] (CPU)", arg("x"), arg("weight"), arg("bias"),
        arg("prelu"), arg("residual"), arg("mean"), arg("rstd"), arg("slope"));
  m.def("batch_norm_act_grad_sums_cpu", &grad_sums, "per-channel gradient sums (3, C) (CPU)", arg("grad"), arg("x"),
        arg("weight"), arg("bias"), arg("prelu"), arg("mean"), arg("rstd"), arg("slope"));
  m.def("batch_norm_act_grad_input_cpu", &grad_input, "input gradient from per-channel coefficients (CPU)",
        arg("grad"), arg("x"), arg("weight"), arg("bias"), arg("prelu"), arg("mean"), arg("rstd"), arg("slope"),
        arg("coef_dy"), arg("coef_dyx"));
}

}  // namespace gancore
