// Gradient penalty on the CPU: the per-sample interpolation x_hat = alpha*real + (1-alpha)*fake and
// the fused per-sample gradient norm + penalty reduction, forward and backward.
// Every tensor is (N, ...) with each sample a dense block of S elements (contiguous or channels-last).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "common/gan_loss_math.h"
#include "cpu/huge_pages.h"
#include "tensor_utils.h"

namespace gancore {

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GANCORE_GP_AVX2_BUILD 1
namespace gp_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "cpu/gradient_penalty_kernels.h"
#pragma GCC pop_options
}  // namespace gp_avx2
#endif

namespace gp_base {
#include "cpu/gradient_penalty_kernels.h"
}  // namespace gp_base

namespace {


// Calls isa::NAME<scalar_t, A>(args...) for the instruction set in use.
#ifdef GANCORE_GP_AVX2_BUILD
#define GP_CALL(NAME, ...)                              \
  do {                                                  \
    if (cpu_use_avx2()) {                                   \
      gp_avx2::NAME<scalar_t, A>(__VA_ARGS__);          \
    } else {                                            \
      gp_base::NAME<scalar_t, A>(__VA_ARGS__);          \
    }                                                   \
  } while (0)
#else
#define GP_CALL(NAME, ...) gp_base::NAME<scalar_t, A>(__VA_ARGS__)
#endif

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// (N, S) of a CPU tensor whose samples are dense blocks; every tensor in `others` must share its layout.
std::pair<int64_t, int64_t> sample_geometry(const char* op, const at::Tensor& x,
                                            std::initializer_list<const at::Tensor*> others) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() >= 1 && x.size(0) > 0, op,
              ": expected a non-empty CPU tensor (N, ...), got ",
              x.sizes(), " on ", x.device());
  const int64_t N = x.size(0), S = x.numel() / N;
  TORCH_CHECK(x.is_non_overlapping_and_dense() && (N == 1 || x.stride(0) == S), op,
              ": each sample must be one dense block (contiguous or channels-last), got strides ", x.strides());
  for (const at::Tensor* t : others)
    TORCH_CHECK(t->sizes() == x.sizes() && t->strides() == x.strides() && t->scalar_type() == x.scalar_type() &&
                    t->device() == x.device(),
                op, ": tensors must share shape, strides, dtype and device; got ", t->sizes(), " ", t->strides(), " ",
                t->scalar_type(), " vs ", x.sizes(), " ", x.strides(), " ", x.scalar_type());
  return {N, S};
}

void check_per_sample(const char* op, const char* name, const at::Tensor& t, int64_t N, at::ScalarType acc) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == N && t.is_contiguous() && t.scalar_type() == acc && t.device().is_cpu(), op,
              ": ", name, " must be a contiguous CPU tensor of ", N, " values of ", acc, ", got ", t.sizes(), " ",
              t.scalar_type());
}

at::Tensor interpolate_forward(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  const auto geom = sample_geometry("gp_interpolate", real, {&fake});
  const int64_t N = geom.first, S = geom.second;
  check_per_sample("gp_interpolate", "alpha", alpha, N, acc_type_of(real.scalar_type()));
  auto out = empty_output_like(real);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, real.scalar_type(), "gp_interpolate_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    GP_CALL(interpolate, real.data_ptr<scalar_t>(), fake.data_ptr<scalar_t>(), alpha.data_ptr<A>(),
            out.data_ptr<scalar_t>(), N, S);
  });
  return out;
}

// {dreal, dfake, dalpha}; each undefined unless asked for.
std::vector<at::Tensor> interpolate_backward(const at::Tensor& grad, const at::Tensor& real, const at::Tensor& fake,
                                             const at::Tensor& alpha, bool need_real, bool need_fake,
                                             bool need_alpha) {
  const auto geom = sample_geometry("gp_interpolate backward", real, {&fake, &grad});
  const int64_t N = geom.first, S = geom.second;
  const auto acc = acc_type_of(real.scalar_type());
  check_per_sample("gp_interpolate backward", "alpha", alpha, N, acc);
  at::Tensor dreal = need_real ? empty_output_like(real) : at::Tensor();
  at::Tensor dfake = need_fake ? empty_output_like(real) : at::Tensor();
  at::Tensor partial = need_alpha ? at::empty({N, gp_base::gp_chunks(S)}, real.options().dtype(at::kDouble))
                                  : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, real.scalar_type(), "gp_interpolate_backward_cpu", [&] {
    using A = acc_t<scalar_t>;
    GP_CALL(interpolate_backward, grad.data_ptr<scalar_t>(), real.data_ptr<scalar_t>(), fake.data_ptr<scalar_t>(),
            alpha.data_ptr<A>(), need_real ? dreal.data_ptr<scalar_t>() : nullptr,
            need_fake ? dfake.data_ptr<scalar_t>() : nullptr, need_alpha ? partial.data_ptr<double>() : nullptr, N,
            S);
  });
  // chunks of one sample summed in order (at::sum over a small double tensor): deterministic
  at::Tensor dalpha = need_alpha ? partial.sum(1).to(acc) : at::Tensor();
  return {dreal, dfake, dalpha};
}

// {penalty (0-dim), coef (N)}: penalty = weight * mean_n p(||g_n * inv_scale||), and the backward is
// dg = grad * coef[n] * g.
std::vector<at::Tensor> norm_penalty_forward(const at::Tensor& g, int64_t mode, double center, double weight,
                                             double inv_scale) {
  TORCH_CHECK(mode >= kTwoSided && mode <= kSquaredNorm, "gradient_norm_penalty: unknown mode ", mode);
  const auto geom = sample_geometry("gradient_norm_penalty", g, {});
  const int64_t N = geom.first, S = geom.second;
  const auto acc = acc_type_of(g.scalar_type());
  auto partial = at::empty({N, gp_base::gp_chunks(S)}, g.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "gradient_norm_penalty_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    GP_CALL(sum_squares, g.data_ptr<scalar_t>(), partial.data_ptr<double>(), N, S);
  });
  const int64_t chunks = partial.size(1);
  const double* part = partial.data_ptr<double>();
  const double inv2 = inv_scale * inv_scale;
  auto coef = at::empty({N}, g.options().dtype(at::kDouble));
  double* c = coef.data_ptr<double>();
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    double sumsq = 0;
    for (int64_t k = 0; k < chunks; ++k) sumsq += part[n * chunks + k];
    const LossAndGrad<double> p = penalty_of_sumsq<double>(static_cast<int>(mode), sumsq * inv2, center);
    total += p.loss;
    c[n] = weight * p.grad * inv2 / static_cast<double>(N);
  }
  return {at::scalar_tensor(weight * total / static_cast<double>(N), g.options().dtype(acc)), coef.to(acc)};
}

at::Tensor norm_penalty_backward(const at::Tensor& grad, const at::Tensor& g, const at::Tensor& coef) {
  const auto geom = sample_geometry("gradient_norm_penalty backward", g, {});
  const int64_t N = geom.first, S = geom.second;
  const auto acc = acc_type_of(g.scalar_type());
  check_per_sample("gradient_norm_penalty backward", "coef", coef, N, acc);
  TORCH_CHECK(grad.numel() == 1, "gradient_norm_penalty backward: grad must be a scalar, got ", grad.sizes());
  const at::Tensor scale = (coef * grad.to(acc).reshape({})).contiguous();
  auto dg = empty_output_like(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "gradient_norm_penalty_backward_cpu", [&] {
    using A = acc_t<scalar_t>;
    GP_CALL(scale_samples, g.data_ptr<scalar_t>(), scale.data_ptr<A>(), dg.data_ptr<scalar_t>(), N, S);
  });
  return dg;
}

}  // namespace

void register_gradient_penalty(pybind11::module_& m) {
  m.def("gp_interpolate_forward_cpu", &interpolate_forward, "x_hat = alpha*real + (1-alpha)*fake per sample (CPU)",
        pybind11::arg("real"), pybind11::arg("fake"), pybind11::arg("alpha"));
  m.def("gp_interpolate_backward_cpu", &interpolate_backward, "gradients of gp_interpolate (CPU)",
        pybind11::arg("grad"), pybind11::arg("real"), pybind11::arg("fake"), pybind11::arg("alpha"),
        pybind11::arg("need_real"), pybind11::arg("need_fake"), pybind11::arg("need_alpha"));
  m.def("gradient_norm_penalty_forward_cpu", &norm_penalty_forward,
        "per-sample gradient norm and penalty mean, fused (CPU)", pybind11::arg("g"), pybind11::arg("mode"),
        pybind11::arg("center"), pybind11::arg("weight"), pybind11::arg("inv_scale"));
  m.def("gradient_norm_penalty_backward_cpu", &norm_penalty_backward, "dg = grad * coef[n] * g (CPU)",
        pybind11::arg("grad"), pybind11::arg("g"), pybind11::arg("coef"));
}

}  // namespace gancore
