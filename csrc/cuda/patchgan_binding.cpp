// Torch-facing side of the CUDA PatchGAN scoring kernels (built only when torch and nvcc have CUDA).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "cuda/patchgan.cuh"
#include "cuda/torch_types.h"
#include "tensor_utils.h"

namespace gancore {
namespace {

void check_launch(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "patchgan_loss (cuda): ", cudaGetErrorString(err));
}

cuda::PatchGeometry geometry(const at::Tensor& h, const at::Tensor& weight, int64_t stride, int64_t pad) {
  TORCH_CHECK(h.is_cuda() && h.dim() == 4 && h.size(0) > 0 && h.size(1) > 0,
              "patchgan_loss: h must be a non-empty CUDA tensor (N, C, H, W), got ", h.sizes());
  TORCH_CHECK(h.is_contiguous() || h.is_contiguous(at::MemoryFormat::ChannelsLast),
              "patchgan_loss: h must be contiguous or channels-last, got strides ", h.strides());
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == 1 && weight.size(1) == h.size(1) && weight.is_contiguous() &&
                  weight.scalar_type() == acc_type_of(h.scalar_type()) && weight.device() == h.device(),
              "patchgan_loss: weight must be a contiguous (1, ", h.size(1), ", KH, KW) tensor of ",
              acc_type_of(h.scalar_type()), " on ", h.device(), ", got ", weight.sizes(), " ", weight.scalar_type());
  TORCH_CHECK(stride >= 1 && pad >= 0, "patchgan_loss: stride must be >= 1 and padding >= 0");
  cuda::PatchGeometry g{h.size(0), h.size(1), h.size(2), h.size(3), weight.size(2), weight.size(3), stride, pad, 0, 0,
                        h.stride(0), h.stride(1), h.stride(2), h.stride(3)};
  TORCH_CHECK(g.H + 2 * pad >= g.KH && g.W + 2 * pad >= g.KW, "patchgan_loss: h ", h.sizes(),
              " is too small for the kernel");
  TORCH_CHECK(g.KH * g.KW <= 64, "patchgan_loss (cuda): kernels up to 64 taps, got ", g.KH, "x", g.KW);
  TORCH_CHECK(g.H * g.W < (int64_t(1) << 31), "patchgan_loss (cuda): a plane must have fewer than 2^31 pixels");
  g.OH = (g.H + 2 * pad - g.KH) / stride + 1;
  g.OW = (g.W + 2 * pad - g.KW) / stride + 1;
  return g;
}

std::vector<at::Tensor> forward(const at::Tensor& h, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                const at::Tensor& target, int64_t kind, int64_t stride, int64_t pad,
                                int64_t reduction) {
  const cuda::PatchGeometry g = geometry(h, weight, stride, pad);
  const auto acc = acc_type_of(h.scalar_type());
  TORCH_CHECK(kind >= 0 && kind <= 3, "patchgan_loss: unknown loss kind ", kind);
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "patchgan_loss: unknown reduction ", reduction);
  TORCH_CHECK(target.dim() == 3 && target.size(0) == g.N && target.size(1) == g.OH && target.size(2) == g.OW &&
                  target.scalar_type() == acc && target.device() == h.device(),
              "patchgan_loss: target must be a (", g.N, ", ", g.OH, ", ", g.OW, ") tensor of ", acc, " on ",
              h.device());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->numel() == 1 && bias->scalar_type() == acc && bias->device() == h.device(),
                "patchgan_loss: bias must be one value of ", acc, " on ", h.device());
  const c10::cuda::CUDAGuard guard(h.device());
  auto dldz = at::empty({g.N, g.OH, g.OW}, h.options().dtype(acc));
  auto loss_map = reduction == 0 ? at::empty({g.N, g.OH, g.OW}, h.options().dtype(acc)) : at::Tensor();
  auto partial = at::empty({g.N, cuda::patch_blocks(g)}, h.options().dtype(acc));
  const double count = static_cast<double>(g.N * g.OH * g.OW);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "patchgan_loss_forward_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_patch_forward(
        reinterpret_cast<const T*>(h.data_ptr<scalar_t>()), weight.data_ptr<A>(),
        has_bias ? bias->data_ptr<A>() : nullptr, target.data_ptr<A>(), target.stride(0), target.stride(1),
        target.stride(2), dldz.data_ptr<A>(), reduction == 0 ? loss_map.data_ptr<A>() : nullptr,
        partial.data_ptr<A>(), g, static_cast<int>(kind), static_cast<A>(reduction == 1 ? 1.0 / count : 1.0),
        c10::cuda::getCurrentCUDAStream().stream()));
  });
  if (reduction == 0) return {loss_map, dldz};
  at::Tensor total = partial.sum();  // a fixed-shape sum of the per-block partials: deterministic
  return {reduction == 1 ? total / count : total, dldz};
}

std::vector<at::Tensor> backward(const at::Tensor& dz, const at::Tensor& h, const at::Tensor& weight, int64_t stride,
                                 int64_t pad, bool need_input) {
  const cuda::PatchGeometry g = geometry(h, weight, stride, pad);
  const auto acc = acc_type_of(h.scalar_type());
  TORCH_CHECK(dz.sizes() == at::IntArrayRef({g.N, g.OH, g.OW}) && dz.is_contiguous() && dz.scalar_type() == acc &&
                  dz.device() == h.device(),
              "patchgan_loss backward: dz must be a contiguous (", g.N, ", ", g.OH, ", ", g.OW, ") tensor of ", acc);
  const c10::cuda::CUDAGuard guard(h.device());
  at::Tensor dh = need_input ? at::empty_like(h) : at::Tensor();
  auto staging = at::empty({g.N, g.C, g.KH, g.KW}, h.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "patchgan_loss_backward_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    check_launch(cuda::launch_patch_backward(
        reinterpret_cast<const T*>(h.data_ptr<scalar_t>()), weight.data_ptr<A>(), dz.data_ptr<A>(),
        need_input ? reinterpret_cast<T*>(dh.data_ptr<scalar_t>()) : nullptr, staging.data_ptr<A>(), g,
        c10::cuda::getCurrentCUDAStream().stream()));
  });
  // dweight: the per-sample partials summed over n along a fixed axis (deterministic)
  return {dh, staging.sum(0, /*keepdim=*/true), dz.sum().reshape({1})};
}

}  // namespace

void register_patchgan_cuda(pybind11::module_& m) {
  m.def("patchgan_loss_forward_cuda", &forward, "PatchGAN last conv + per-patch GAN loss + reduction (CUDA)");
  m.def("patchgan_loss_backward_cuda", &backward, "gradients of patchgan_loss to h, weight and bias (CUDA)");
}

}  // namespace gancore
