// Fused instance norm + leaky activation (+ residual), forward and backward, on the CPU.
// Layouts: contiguous (N, C, *spatial) and channels-last (N, *spatial, C), both without copies.
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

#include "cpu/isa.h"
#include "common/instance_norm_math.h"
#include "cpu/huge_pages.h"
#include "tensor_utils.h"

namespace gancore {

// Optional per-channel affine parameters, in the accumulation type.
template <typename A>
struct Affine {
  const A* weight;  // C values, or nullptr for 1
  const A* bias;    // C values, or nullptr for 0
  A w(int64_t c) const { return weight ? weight[c] : A(1); }
  A b(int64_t c) const { return bias ? bias[c] : A(0); }
};

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GANCORE_HAVE_AVX2_BUILD 1
namespace isa_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define GANCORE_AVX2_KERNELS 1
#include "cpu/instance_norm_kernels.h"
#undef GANCORE_AVX2_KERNELS
#pragma GCC pop_options
}  // namespace isa_avx2
#endif

namespace isa_base {
#include "cpu/instance_norm_kernels.h"
}  // namespace isa_base

namespace {


std::string cpu_isa() { return cpu_use_avx2() ? "avx2" : "baseline"; }

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace

std::vector<at::Tensor> instance_norm_forward_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                                  const c10::optional<at::Tensor>& bias,
                                                  const c10::optional<at::Tensor>& residual, double eps,
                                                  double slope) {
  const NormGeometry geo = check_norm_inputs(x, weight, bias, c10::DeviceType::CPU);
  const int64_t N = geo.N, C = geo.C, S = geo.S;
  const auto acc = geo.acc;
  if (residual.has_value() && residual->defined()) check_like_x(*residual, x, "residual");
  auto out = empty_output_like(x);
  auto mean = at::empty({N, C}, x.options().dtype(acc));
  auto rstd = at::empty({N, C}, x.options().dtype(acc));
  if (x.numel() == 0) return {out, mean, rstd};
  const bool avx2 = cpu_use_avx2();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm_act_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const Affine<A> aff{optional_ptr<A>(weight), optional_ptr<A>(bias)};
    const scalar_t* res = residual.has_value() && residual->defined() ? residual->data_ptr<scalar_t>() : nullptr;
    auto args = std::make_tuple(x.data_ptr<scalar_t>(), res, out.data_ptr<scalar_t>(), mean.data_ptr<A>(),
                                rstd.data_ptr<A>(), N, C, S, aff, static_cast<A>(eps), static_cast<A>(slope));
    const bool cl = geo.channels_last;
#ifdef GANCORE_HAVE_AVX2_BUILD
    if (avx2) {
      std::apply(cl ? isa_avx2::forward_cl<scalar_t, A> : isa_avx2::forward_nchw<scalar_t, A>, args);
      return;
    }
#endif
    std::apply(cl ? isa_base::forward_cl<scalar_t, A> : isa_base::forward_nchw<scalar_t, A>, args);
  });
  return {out, mean, rstd};
}

// Returns {dx (undefined unless need_input), dweight, dbias (undefined unless need_affine)}.
std::vector<at::Tensor> instance_norm_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                   const c10::optional<at::Tensor>& weight,
                                                   const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                                   const at::Tensor& rstd, double slope, bool need_input,
                                                   bool need_affine) {
  const NormGeometry geo = check_norm_inputs(x, weight, bias, c10::DeviceType::CPU);
  const int64_t N = geo.N, C = geo.C, S = geo.S;
  const auto acc = geo.acc;
  check_like_x(grad, x, "grad");
  check_stats(mean, rstd, geo);
  at::Tensor dx = need_input ? empty_output_like(x) : at::Tensor();
  auto sums = at::empty({2, N, C}, x.options().dtype(at::kDouble));
  if (x.numel() > 0) {
    const bool avx2 = cpu_use_avx2();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm_act_backward_cpu", [&] {
      using A = acc_t<scalar_t>;
      const Affine<A> aff{optional_ptr<A>(weight), optional_ptr<A>(bias)};
      auto args = std::make_tuple(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                  need_input ? dx.data_ptr<scalar_t>() : nullptr, mean.data_ptr<A>(),
                                  rstd.data_ptr<A>(), sums[0].data_ptr<double>(), sums[1].data_ptr<double>(), N, C,
                                  S, aff, static_cast<A>(slope));
      const bool cl = geo.channels_last;
#ifdef GANCORE_HAVE_AVX2_BUILD
      if (avx2) {
        std::apply(cl ? isa_avx2::backward_cl<scalar_t, A> : isa_avx2::backward_nchw<scalar_t, A>, args);
        return;
      }
#endif
      std::apply(cl ? isa_base::backward_cl<scalar_t, A> : isa_base::backward_nchw<scalar_t, A>, args);
    });
  } else {
    sums.zero_();
  }
  at::Tensor dweight, dbias;
  if (need_affine) {
    // the per-instance sums, summed over n in order (deterministic), then to the acc dtype; a plain
    // loop, as ATen ops cost microseconds each on the small maps deep in a generator
    dbias = at::empty({C}, x.options().dtype(acc));
    dweight = at::empty({C}, x.options().dtype(acc));
    AT_DISPATCH_FLOATING_TYPES(acc, "instance_norm_act_affine_grads_cpu", [&] {
      const double* s = sums.data_ptr<double>();
      scalar_t* db = dbias.data_ptr<scalar_t>();
      scalar_t* dw = dweight.data_ptr<scalar_t>();
      for (int64_t c = 0; c < C; ++c) {
        double sb = 0.0, sw = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          sb += s[n * C + c];
          sw += s[(N + n) * C + c];
        }
        db[c] = static_cast<scalar_t>(sb);
        dw[c] = static_cast<scalar_t>(sw);
      }
    });
  }
  return {dx, dweight, dbias};
}

void register_instance_norm(pybind11::module_& m) {
  using pybind11::arg;
  m.def("instance_norm_act_forward_cpu", &instance_norm_forward_cpu,
        "fused instance norm + activation, forward (CPU)", arg("x"), arg("weight"), arg("bias"), arg("residual"),
        arg("eps"), arg("slope"));
  m.def("instance_norm_act_backward_cpu", &instance_norm_backward_cpu,
        "fused instance norm + activation, backward (CPU)", arg("grad"), arg("x"), arg("weight"), arg("bias"),
        arg("mean"), arg("rstd"), arg("slope"), arg("need_input"), arg("need_affine"));
  m.def("cpu_isa", &cpu_isa, "instruction set the CPU kernels run with: avx2 or baseline");
}

}  // namespace gancore
