// Torch-facing side of the CUDA batch-norm kernels (built only when torch and nvcc have CUDA).
// Same four steps and argument order as the CPU ones; the statistics come back per part
// (count, mean, M2) for gancore.ops to merge, like the Triton kernels'.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "cuda/batch_norm.cuh"
#include "cuda/torch_types.h"
#include "tensor_utils.h"

namespace gancore {
namespace {

void check_launch(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "batch_norm_act (cuda): ", cudaGetErrorString(err));
}

void check_vector(const at::Tensor& t, const char* name, const NormGeometry& g, const at::Tensor& x) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == g.C && t.is_contiguous() && t.scalar_type() == g.acc &&
                  t.device() == x.device(),
              name, " must be a contiguous (C,) tensor of ", g.acc, " on ", x.device(), ", got ", t.sizes());
}

struct Setup {
  NormGeometry g;
  bool cl;
};

Setup setup(const at::Tensor& x, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
            const c10::optional<at::Tensor>& prelu) {
  const NormGeometry g = check_norm_inputs(x, weight, bias, c10::DeviceType::CUDA);
  if (prelu.has_value() && prelu->defined()) {
    TORCH_CHECK(prelu->dim() == 1 && (prelu->size(0) == 1 || prelu->size(0) == g.C) && prelu->is_contiguous() &&
                    prelu->scalar_type() == g.acc && prelu->device() == x.device(),
                "prelu_weight must be a contiguous 1-D tensor of 1 or ", g.C, " values of ", g.acc);
  }
  return {g, g.channels_last || g.S == 1};
}

// Slices per sample so that a reduction launches about 1024 blocks (batch 1 keeps the GPU busy).
void choose_split(int64_t N, int64_t channel_blocks, int64_t S, int64_t& splits, int64_t& per) {
  const int64_t blocks = std::max<int64_t>(N * channel_blocks, 1);
  splits = std::max<int64_t>(1, std::min<int64_t>((S + 1023) / 1024, (1024 + blocks - 1) / blocks));
  per = (S + splits - 1) / splits;
  splits = (S + per - 1) / per;
}

template <typename T, typename A>
cuda::BnArgs<T, A> make_args(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                             const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                             double slope, const Setup& st) {
  cuda::BnArgs<T, A> a{};
  a.x = reinterpret_cast<const T*>(x.data_ptr());
  a.weight = optional_ptr<A>(weight);
  a.bias = optional_ptr<A>(bias);
  a.prelu = optional_ptr<A>(prelu);
  a.prelu_stride = prelu.has_value() && prelu->defined() && prelu->size(0) > 1 ? 1 : 0;
  a.slope = static_cast<A>(slope);
  a.N = st.g.N, a.C = st.g.C, a.S = st.g.S;
  a.channels_last = st.cl;
  const int64_t cb = st.cl ? (st.g.C + 31) / 32 : st.g.C;
  choose_split(a.N, cb, a.S, a.splits, a.per);
  return a;
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

#define GANCORE_BN_CUDA_DISPATCH(x, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, (x).scalar_type(), name, __VA_ARGS__)

// {count (P,) float64, mean (P, C), M2 (P, C)} of P disjoint parts of the batch.
std::vector<at::Tensor> partial_stats(const at::Tensor& x) {
  const Setup st = setup(x, c10::nullopt, c10::nullopt, c10::nullopt);
  const c10::cuda::CUDAGuard guard(x.device());
  std::vector<at::Tensor> result;
  GANCORE_BN_CUDA_DISPATCH(x, "batch_norm_partial_stats_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    auto args = make_args<T, A>(x, c10::nullopt, c10::nullopt, c10::nullopt, 0.0, st);
    const int64_t P = args.N * args.splits;
    auto part = at::empty({2, P, st.g.C}, x.options().dtype(st.g.acc));
    args.part = part.data_ptr<A>();
    if (x.numel() > 0) check_launch(cuda::launch_partial_stats(args, stream()));
    auto sizes = at::full({args.splits}, static_cast<double>(args.per), x.options().dtype(at::kDouble));
    sizes[args.splits - 1].fill_(static_cast<double>(args.S - args.per * (args.splits - 1)));
    result = {sizes.repeat({args.N}), part[0], part[1]};
  });
  return result;
}

at::Tensor apply(const at::Tensor& x, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                 const c10::optional<at::Tensor>& prelu, const c10::optional<at::Tensor>& residual,
                 const at::Tensor& mean, const at::Tensor& rstd, double slope) {
  const Setup st = setup(x, weight, bias, prelu);
  check_vector(mean, "mean", st.g, x);
  check_vector(rstd, "rstd", st.g, x);
  const bool has_res = residual.has_value() && residual->defined();
  if (has_res) check_like_x(*residual, x, "residual");
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty_like(x);
  if (x.numel() == 0) return out;
  GANCORE_BN_CUDA_DISPATCH(x, "batch_norm_act_apply_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    auto args = make_args<T, A>(x, weight, bias, prelu, slope, st);
    args.residual = has_res ? reinterpret_cast<const T*>(residual->data_ptr()) : nullptr;
    args.out = reinterpret_cast<T*>(out.data_ptr());
    args.mean = mean.data_ptr<A>();
    args.rstd = rstd.data_ptr<A>();
    check_launch(cuda::launch_apply(args, stream()));
  });
  return out;
}

at::Tensor grad_sums(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                     const at::Tensor& mean, const at::Tensor& rstd, double slope) {
  const Setup st = setup(x, weight, bias, prelu);
  check_like_x(grad, x, "grad");
  check_vector(mean, "mean", st.g, x);
  check_vector(rstd, "rstd", st.g, x);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor sums;
  GANCORE_BN_CUDA_DISPATCH(x, "batch_norm_act_grad_sums_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    auto args = make_args<T, A>(x, weight, bias, prelu, slope, st);
    const int64_t P = args.N * args.splits;
    auto part = at::zeros({3, P, st.g.C}, x.options().dtype(st.g.acc));
    args.grad = reinterpret_cast<const T*>(grad.data_ptr());
    args.mean = mean.data_ptr<A>();
    args.rstd = rstd.data_ptr<A>();
    args.part = part.data_ptr<A>();
    if (x.numel() > 0) check_launch(cuda::launch_grad_sums(args, stream()));
    sums = part.sum(1);  // over the parts in a fixed order: deterministic
  });
  return sums;
}

at::Tensor grad_input(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                      const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& prelu,
                      const at::Tensor& mean, const at::Tensor& rstd, double slope,
                      const c10::optional<at::Tensor>& coef_dy, const c10::optional<at::Tensor>& coef_dyx) {
  const Setup st = setup(x, weight, bias, prelu);
  check_like_x(grad, x, "grad");
  check_vector(mean, "mean", st.g, x);
  check_vector(rstd, "rstd", st.g, x);
  const bool has_coef = coef_dy.has_value() && coef_dy->defined();
  TORCH_CHECK(has_coef == (coef_dyx.has_value() && coef_dyx->defined()), "coef_dy and coef_dyx go together");
  if (has_coef) {
    check_vector(*coef_dy, "coef_dy", st.g, x);
    check_vector(*coef_dyx, "coef_dyx", st.g, x);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  auto dx = at::empty_like(x);
  if (x.numel() == 0) return dx;
  GANCORE_BN_CUDA_DISPATCH(x, "batch_norm_act_grad_input_cuda", [&] {
    using T = typename cuda_type<scalar_t>::type;
    using A = acc_t<scalar_t>;
    auto args = make_args<T, A>(x, weight, bias, prelu, slope, st);
    args.grad = reinterpret_cast<const T*>(grad.data_ptr());
    args.out = reinterpret_cast<T*>(dx.data_ptr());
    args.mean = mean.data_ptr<A>();
    args.rstd = rstd.data_ptr<A>();
    args.coef_dy = has_coef ? coef_dy->data_ptr<A>() : nullptr;
    args.coef_dyx = has_coef ? coef_dyx->data_ptr<A>() : nullptr;
    check_launch(cuda::launch_grad_input(args, stream()));
  });
  return dx;
}

}  // namespace

void register_batch_norm_cuda(pybind11::module_& m) {
  m.def("batch_norm_partial_stats_cuda", &partial_stats, "per-part (count, mean, M2) of x (CUDA)");
  m.def("batch_norm_act_apply_cuda", &apply, "act((x - mean) * rstd * weight + bias) [+ residual] (CUDA)");
  m.def("batch_norm_act_grad_sums_cuda", &grad_sums, "per-channel gradient sums (3, C) (CUDA)");
  m.def("batch_norm_act_grad_input_cuda", &grad_input, "input gradient from per-channel coefficients (CUDA)");
}

}  // namespace gancore
