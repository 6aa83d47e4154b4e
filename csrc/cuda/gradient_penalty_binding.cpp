// Torch-facing side of the CUDA gradient-penalty kernels (built only when torch and nvcc have CUDA).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "cuda/gradient_penalty.cuh"
#include "cuda/torch_types.h"
#include "tensor_utils.h"

namespace gancore {
namespace {

void check_launch(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "gradient penalty (cuda): ", cudaGetErrorString(err));
}

// (N, S) of a CUDA tensor whose samples are dense blocks; `others` must share its layout.
std::pair<int64_t, int64_t> sample_geometry(const char* op, const at::Tensor& x,
                                            std::initializer_list<const at::Tensor*> others) {
  TORCH_CHECK(x.is_cuda() && x.dim() >= 1 && x.size(0) > 0, op, ": expected a non-empty CUDA tensor (N, ...), got ",
              x.sizes(), " on ", x.device());
  const int64_t N = x.size(0), S = x.numel() / N;
  TORCH_CHECK(x.is_non_overlapping_and_dense() && (N == 1 || x.stride(0) == S), op,
              ": each sample must be one dense block (contiguous or channels-last), got strides ", x.strides());
  for (const at::Tensor* t : others)
    TORCH_CHECK(t->sizes() == x.sizes() && t->strides() == x.strides() && t->scalar_type() == x.scalar_type() &&
                    t->device() == x.device(),
                op, ": tensors must share shape, strides, dtype and device");
  return {N, S};
}

void check_per_sample(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0) && t.is_contiguous() &&
                  t.scalar_type() == acc_type_of(x.scalar_type()) && t.device() == x.device(),
              op, ": ", name, " must be a contiguous tensor of ", x.size(0), " values of ",
              acc_type_of(x.scalar_type()), " on ", x.device());
}

template <typename scalar_t>
auto cuda_ptr(const at::Tensor& t) {
  return reinterpret_cast<typename cuda_type<scalar_t>::type*>(t.data_ptr<scalar_t>());
}

at::Tensor interpolate_forward(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  const auto geom = sample_geometry("gp_interpolate", real, {&fake});
  const int64_t N = geom.first, S = geom.second;
  check_per_sample("gp_interpolate", "alpha", alpha, real);
  const c10::cuda::CUDAGuard guard(real.device());
  auto out = at::empty_like(real);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, real.scalar_type(), "gp_interpolate_forward_cuda", [&] {
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_gp_interpolate(cuda_ptr<scalar_t>(real), cuda_ptr<scalar_t>(fake), alpha.data_ptr<A>(),
                                             cuda_ptr<scalar_t>(out), N, S,
                                             c10::cuda::getCurrentCUDAStream().stream()));
  });
  return out;
}

std::vector<at::Tensor> interpolate_backward(const at::Tensor& grad, const at::Tensor& real, const at::Tensor& fake,
                                             const at::Tensor& alpha, bool need_real, bool need_fake,
                                             bool need_alpha) {
  const auto geom = sample_geometry("gp_interpolate backward", real, {&fake, &grad});
  const int64_t N = geom.first, S = geom.second;
  check_per_sample("gp_interpolate backward", "alpha", alpha, real);
  const c10::cuda::CUDAGuard guard(real.device());
  at::Tensor dreal = need_real ? at::empty_like(real) : at::Tensor();
  at::Tensor dfake = need_fake ? at::empty_like(real) : at::Tensor();
  at::Tensor partial = need_alpha ? at::empty({N, cuda::gp_chunks(S)}, alpha.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, real.scalar_type(), "gp_interpolate_backward_cuda", [&] {
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_gp_interpolate_backward(
        cuda_ptr<scalar_t>(grad), cuda_ptr<scalar_t>(real), cuda_ptr<scalar_t>(fake), alpha.data_ptr<A>(),
        need_real ? cuda_ptr<scalar_t>(dreal) : nullptr, need_fake ? cuda_ptr<scalar_t>(dfake) : nullptr,
        need_alpha ? partial.data_ptr<A>() : nullptr, N, S, c10::cuda::getCurrentCUDAStream().stream()));
  });
  // chunks of one sample summed along a fixed axis: deterministic
  return {dreal, dfake, need_alpha ? partial.sum(1) : at::Tensor()};
}

std::vector<at::Tensor> norm_penalty_forward(const at::Tensor& g, int64_t mode, double center, double weight,
                                             double inv_scale) {
  TORCH_CHECK(mode >= 0 && mode <= 2, "gradient_norm_penalty: unknown mode ", mode);
  const auto geom = sample_geometry("gradient_norm_penalty", g, {});
  const int64_t N = geom.first, S = geom.second;
  const c10::cuda::CUDAGuard guard(g.device());
  const auto acc = acc_type_of(g.scalar_type());
  auto partial = at::empty({N, cuda::gp_chunks(S)}, g.options().dtype(acc));
  auto penalty = at::empty({}, g.options().dtype(acc));
  auto coef = at::empty({N}, g.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "gradient_norm_penalty_forward_cuda", [&] {
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_gp_norm_penalty(cuda_ptr<scalar_t>(g), partial.data_ptr<A>(), penalty.data_ptr<A>(),
                                              coef.data_ptr<A>(), N, S, static_cast<int>(mode),
                                              static_cast<A>(center), static_cast<A>(weight),
                                              static_cast<A>(inv_scale), c10::cuda::getCurrentCUDAStream().stream()));
  });
  return {penalty, coef};
}

at::Tensor norm_penalty_backward(const at::Tensor& grad, const at::Tensor& g, const at::Tensor& coef) {
  const auto geom = sample_geometry("gradient_norm_penalty backward", g, {});
  const int64_t N = geom.first, S = geom.second;
  check_per_sample("gradient_norm_penalty backward", "coef", coef, g);
  TORCH_CHECK(grad.numel() == 1, "gradient_norm_penalty backward: grad must be a scalar, got ", grad.sizes());
  const c10::cuda::CUDAGuard guard(g.device());
  const at::Tensor scale = (coef * grad.to(coef.scalar_type()).reshape({})).contiguous();
  auto dg = at::empty_like(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "gradient_norm_penalty_bwd_cuda", [&] {
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_gp_scale_samples(cuda_ptr<scalar_t>(g), scale.data_ptr<A>(), cuda_ptr<scalar_t>(dg), N,
                                               S, c10::cuda::getCurrentCUDAStream().stream()));
  });
  return dg;
}

}  // namespace

void register_gradient_penalty_cuda(pybind11::module_& m) {
  m.def("gp_interpolate_forward_cuda", &interpolate_forward, "x_hat = alpha*real + (1-alpha)*fake per sample (CUDA)");
  m.def("gp_interpolate_backward_cuda", &interpolate_backward, "gradients of gp_interpolate (CUDA)");
  m.def("gradient_norm_penalty_forward_cuda", &norm_penalty_forward,
        "per-sample gradient norm and penalty mean, fused (CUDA)");
  m.def("gradient_norm_penalty_backward_cuda", &norm_penalty_backward, "dg = grad * coef[n] * g (CUDA)");
}

}  // namespace gancore
