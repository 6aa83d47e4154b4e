// PatchGAN scoring on the CPU: conv (C -> 1, KH x KW) + per-patch GAN loss + reduction, forward and
// backward to h, weight and bias. h is contiguous (N, C, H, W) or channels-last, read without copies.
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

// Shapes of one PatchGAN head: h (N, C, H, W), weight (1, C, KH, KW), logits (N, 1, OH, OW).
struct ConvGeometry {
  int64_t N, C, H, W, KH, KW, stride, pad, OH, OW;
  int64_t taps() const { return KH * KW; }
};

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GANCORE_PATCH_AVX2_BUILD 1
namespace patch_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "cpu/patchgan_kernels.h"
#pragma GCC pop_options
}  // namespace patch_avx2
#endif

namespace patch_base {
#include "cpu/patchgan_kernels.h"
}  // namespace patch_base

namespace {


#ifdef GANCORE_PATCH_AVX2_BUILD
#define PATCH_CALL(NAME, ...)                      \
  do {                                             \
    if (cpu_use_avx2()) {                              \
      patch_avx2::NAME(__VA_ARGS__);               \
    } else {                                       \
      patch_base::NAME(__VA_ARGS__);               \
    }                                              \
  } while (0)
#else
#define PATCH_CALL(NAME, ...) patch_base::NAME(__VA_ARGS__)
#endif

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

bool is_channels_last(const at::Tensor& h) {
  if (h.is_contiguous()) return false;
  TORCH_CHECK(h.is_contiguous(at::MemoryFormat::ChannelsLast),
              "patchgan_loss: h must be contiguous or channels-last, got strides ", h.strides());
  return true;
}

ConvGeometry geometry(const at::Tensor& h, const at::Tensor& weight, int64_t stride, int64_t pad) {
  TORCH_CHECK(h.device().is_cpu() && h.dim() == 4, "patchgan_loss: h must be a CPU tensor (N, C, H, W), got ",
              h.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == 1 && weight.size(1) == h.size(1) && weight.is_contiguous() &&
                  weight.scalar_type() == acc_type_of(h.scalar_type()) && weight.device() == h.device(),
              "patchgan_loss: weight must be a contiguous (1, ", h.size(1), ", KH, KW) tensor of ",
              acc_type_of(h.scalar_type()), ", got ", weight.sizes(), " ", weight.scalar_type());
  TORCH_CHECK(stride >= 1 && pad >= 0, "patchgan_loss: stride must be >= 1 and padding >= 0");
  ConvGeometry g{h.size(0), h.size(1), h.size(2), h.size(3), weight.size(2), weight.size(3),
                             stride, pad, 0, 0};
  g.OH = (g.H + 2 * pad - g.KH) / stride + 1;
  g.OW = (g.W + 2 * pad - g.KW) / stride + 1;
  TORCH_CHECK(g.H + 2 * pad >= g.KH && g.W + 2 * pad >= g.KW && g.N > 0 && g.C > 0,
              "patchgan_loss: h ", h.sizes(), " is too small for a ", g.KH, "x", g.KW, " kernel with padding ", pad);
  return g;
}

// out[j] = sum over rows r of in[r * cols + j], rows in order: deterministic whatever the threads.
template <typename A>
void sum_rows(const A* in, int64_t rows, int64_t cols, A* out) {
  at::parallel_for(0, cols, 256, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += in[r * cols + j];
      out[j] = static_cast<A>(s);
    }
  });
}

// {loss: 0-dim, or (N, OH, OW) when reduction is none; dldz: (N, OH, OW), the loss's derivative with
// respect to every patch logit, already divided by the patch count for a mean}
std::vector<at::Tensor> forward(const at::Tensor& h, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                const at::Tensor& target, int64_t kind, int64_t stride, int64_t pad,
                                int64_t reduction) {
  const auto g = geometry(h, weight, stride, pad);
  const bool cl = is_channels_last(h);
  const auto acc = acc_type_of(h.scalar_type());
  TORCH_CHECK(kind >= kLsgan && kind <= kWgan, "patchgan_loss: unknown loss kind ", kind);
  TORCH_CHECK(reduction >= kNone && reduction <= kSum, "patchgan_loss: unknown reduction ", reduction);
  TORCH_CHECK(target.dim() == 3 && target.size(0) == g.N && target.size(1) == g.OH && target.size(2) == g.OW &&
                  target.scalar_type() == acc && target.device() == h.device(),
              "patchgan_loss: target must be a (", g.N, ", ", g.OH, ", ", g.OW, ") tensor of ", acc, " (broadcast "
              "strides allowed), got ", target.sizes(), " ", target.scalar_type());
  if (bias.has_value() && bias->defined())
    TORCH_CHECK(bias->numel() == 1 && bias->scalar_type() == acc, "patchgan_loss: bias must be one value of ", acc);
  const int64_t parts = cl ? 1 : patch_base::channel_chunks(g.C);
  auto partial = at::empty({g.N * parts, g.OH * g.OW}, h.options().dtype(acc));
  auto dldz = at::empty({g.N, g.OH, g.OW}, h.options().dtype(acc));
  auto loss_map = reduction == kNone ? at::empty({g.N, g.OH, g.OW}, h.options().dtype(acc)) : at::Tensor();
  auto loss_sum = at::empty({g.N}, h.options().dtype(at::kDouble));
  const double count = static_cast<double>(g.N * g.OH * g.OW);
  const at::Tensor w = cl ? weight.reshape({g.C, g.taps()}).t().contiguous() : weight.reshape({g.C, g.taps()});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "patchgan_loss_forward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = h.data_ptr<scalar_t>();
    if (cl) {
      PATCH_CALL(logits_cl, x, w.data_ptr<A>(), partial.data_ptr<A>(), g);
    } else {
      PATCH_CALL(logits_nchw, x, w.data_ptr<A>(), partial.data_ptr<A>(), g);
    }
    const A b = bias.has_value() && bias->defined() ? bias->data_ptr<A>()[0] : A(0);
    const A factor = static_cast<A>(reduction == kMean ? 1.0 / count : 1.0);
    auto args = std::make_tuple(partial.data_ptr<A>(), parts, b, target.data_ptr<A>(), target.stride(0),
                                target.stride(1), target.stride(2),
                                loss_map.defined() ? loss_map.data_ptr<A>() : nullptr, dldz.data_ptr<A>(),
                                loss_sum.data_ptr<double>(), g.N, g.OH, g.OW, factor);
    switch (kind) {
      case kLsgan: std::apply(patch_base::patch_losses<A, kLsgan>, args); break;
      case kBce: std::apply(patch_base::patch_losses<A, kBce>, args); break;
      case kHinge: std::apply(patch_base::patch_losses<A, kHinge>, args); break;
      default: std::apply(patch_base::patch_losses<A, kWgan>, args); break;
    }
  });
  if (reduction == kNone) return {loss_map, dldz};
  double total = 0;
  const double* sums = loss_sum.data_ptr<double>();
  for (int64_t n = 0; n < g.N; ++n) total += sums[n];
  if (reduction == kMean) total /= count;
  return {at::scalar_tensor(total, h.options().dtype(acc)), dldz};
}

// {dh (undefined unless need_input), dweight (1, C, KH, KW), dbias (1,)} from dz = dL/dz (N, OH, OW).
std::vector<at::Tensor> backward(const at::Tensor& dz, const at::Tensor& h, const at::Tensor& weight, int64_t stride,
                                 int64_t pad, bool need_input) {
  const auto g = geometry(h, weight, stride, pad);
  const bool cl = is_channels_last(h);
  const auto acc = acc_type_of(h.scalar_type());
  TORCH_CHECK(dz.sizes() == at::IntArrayRef({g.N, g.OH, g.OW}) && dz.is_contiguous() && dz.scalar_type() == acc,
              "patchgan_loss backward: dz must be a contiguous (", g.N, ", ", g.OH, ", ", g.OW, ") tensor of ", acc,
              ", got ", dz.sizes(), " ", dz.scalar_type());
  at::Tensor dh = need_input ? empty_output_like(h) : at::Tensor();
  const int64_t rows = cl ? g.N * patch_base::row_blocks(g.H) : g.N;
  auto staging = at::empty({rows, g.C * g.taps()}, h.options().dtype(acc));
  auto dweight = at::empty({1, g.C, g.KH, g.KW}, h.options().dtype(acc));
  auto dbias = at::empty({1}, h.options().dtype(acc));
  const at::Tensor w = cl ? weight.reshape({g.C, g.taps()}).t().contiguous() : weight.reshape({g.C, g.taps()});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "patchgan_loss_backward_cpu", [&] {
    using A = acc_t<scalar_t>;
    scalar_t* out = need_input ? dh.data_ptr<scalar_t>() : nullptr;
    if (cl) {
      PATCH_CALL(backward_cl, h.data_ptr<scalar_t>(), w.data_ptr<A>(), dz.data_ptr<A>(), out, staging.data_ptr<A>(),
                 g);
    } else {
      PATCH_CALL(backward_nchw, h.data_ptr<scalar_t>(), w.data_ptr<A>(), dz.data_ptr<A>(), out,
                 staging.data_ptr<A>(), g);
    }
    if (cl) {  // staging rows are (tap, c): sum them, then reorder to (c, tap)
      auto summed = at::empty({g.taps(), g.C}, h.options().dtype(acc));
      sum_rows<A>(staging.data_ptr<A>(), rows, g.C * g.taps(), summed.data_ptr<A>());
      dweight.copy_(summed.t().reshape({1, g.C, g.KH, g.KW}));
    } else {
      sum_rows<A>(staging.data_ptr<A>(), rows, g.C * g.taps(), dweight.data_ptr<A>());
    }
    double db = 0;
    const A* d = dz.data_ptr<A>();
    for (int64_t i = 0; i < dz.numel(); ++i) db += d[i];
    dbias.data_ptr<A>()[0] = static_cast<A>(db);
  });
  return {dh, dweight, dbias};
}

}  // namespace

void register_patchgan(pybind11::module_& m) {
  m.def("patchgan_loss_forward_cpu", &forward, "PatchGAN last conv + per-patch GAN loss + reduction (CPU)",
        pybind11::arg("h"), pybind11::arg("weight"), pybind11::arg("bias"), pybind11::arg("target"),
        pybind11::arg("kind"), pybind11::arg("stride"), pybind11::arg("padding"), pybind11::arg("reduction"));
  m.def("patchgan_loss_backward_cpu", &backward, "gradients of patchgan_loss to h, weight and bias (CPU)",
        pybind11::arg("dz"), pybind11::arg("h"), pybind11::arg("weight"), pybind11::arg("stride"),
        pybind11::arg("padding"), pybind11::arg("need_input"));
}

}  // namespace gancore
