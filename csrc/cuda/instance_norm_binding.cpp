// Torch-facing side of the CUDA instance-norm kernels (built only when torch and nvcc have CUDA).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "cuda/instance_norm.cuh"
#include "cuda/torch_types.h"
#include "tensor_utils.h"

namespace gancore {
namespace {

void check_launch(cudaError_t err) { TORCH_CHECK(err == cudaSuccess, "instance_norm_act (cuda): ", cudaGetErrorString(err)); }

std::vector<at::Tensor> forward(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                double eps, double slope) {
  const NormGeometry geo = check_norm_inputs(x, weight, bias, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const bool channels_last = geo.channels_last;
  const int64_t N = geo.N, C = geo.C, S = geo.S;
  const auto acc = geo.acc;
  const bool has_res = residual.has_value() && residual->defined();
  if (has_res) check_like_x(*residual, x, "residual");
  auto out = at::empty_like(x);
  auto mean = at::empty({N, C}, x.options().dtype(acc));
  auto rstd = at::empty({N, C}, x.options().dtype(acc));
  if (x.numel() == 0) return {out, mean, rstd};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm_act_forward_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    cuda::Args<T, A> args{reinterpret_cast<const T*>(x.data_ptr<scalar_t>()),
                          has_res ? reinterpret_cast<const T*>(residual->data_ptr<scalar_t>()) : nullptr,
                          reinterpret_cast<T*>(out.data_ptr<scalar_t>()), mean.data_ptr<A>(), rstd.data_ptr<A>(),
                          optional_ptr<A>(weight), optional_ptr<A>(bias), N, C, S, static_cast<A>(eps),
                          static_cast<A>(slope)};
    check_launch(cuda::launch_forward(args, channels_last, c10::cuda::getCurrentCUDAStream().stream()));
  });
  return {out, mean, rstd};
}

std::vector<at::Tensor> backward(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                 const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                 const at::Tensor& rstd, double slope, bool need_input, bool need_affine) {
  const NormGeometry geo = check_norm_inputs(x, weight, bias, c10::DeviceType::CUDA);
  check_like_x(grad, x, "grad");
  check_stats(mean, rstd, geo);
  const c10::cuda::CUDAGuard guard(x.device());
  const bool channels_last = geo.channels_last;
  const int64_t N = geo.N, C = geo.C, S = geo.S;
  const auto acc = geo.acc;
  // dx is always written by the kernel; need_input only decides whether it is returned
  auto dx = at::empty_like(x);
  auto sums = at::zeros({2, N, C}, x.options().dtype(acc));
  if (x.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm_act_backward_cuda", [&] {
      using T = typename cuda_type<scalar_t>::type;
      using A = acc_t<scalar_t>;
      cuda::GradArgs<T, A> args{reinterpret_cast<const T*>(grad.data_ptr<scalar_t>()),
                                reinterpret_cast<const T*>(x.data_ptr<scalar_t>()),
                                reinterpret_cast<T*>(dx.data_ptr<scalar_t>()), mean.data_ptr<A>(), rstd.data_ptr<A>(),
                                optional_ptr<A>(weight), optional_ptr<A>(bias), sums[0].data_ptr<A>(),
                                sums[1].data_ptr<A>(), N, C, S, static_cast<A>(slope)};
      check_launch(cuda::launch_backward(args, channels_last, c10::cuda::getCurrentCUDAStream().stream()));
    });
  }
  at::Tensor dweight, dbias;
  if (need_affine) {
    dbias = sums[0].sum(0);  // over n in a fixed order: deterministic
    dweight = sums[1].sum(0);
  }
  return {need_input ? dx : at::Tensor(), dweight, dbias};
}

}  // namespace

void register_instance_norm_cuda(pybind11::module_& m) {
  m.def("instance_norm_act_forward_cuda", &forward, "fused instance norm + activation, forward (CUDA)");
  m.def("instance_norm_act_backward_cuda", &backward, "fused instance norm + activation, backward (CUDA)");
}

}  // namespace gancore
