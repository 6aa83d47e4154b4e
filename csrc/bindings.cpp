// The one pybind11 module gancore._C: each op family registers its functions here.
#include <torch/extension.h>

namespace gancore {
void register_instance_norm(pybind11::module_& m);
void register_gradient_penalty(pybind11::module_& m);
void register_patchgan(pybind11::module_& m);
void register_batch_norm(pybind11::module_& m);
void register_autograd(pybind11::module_& m);
#ifdef GANCORE_WITH_CUDA
void register_instance_norm_cuda(pybind11::module_& m);
void register_gradient_penalty_cuda(pybind11::module_& m);
void register_patchgan_cuda(pybind11::module_& m);
void register_batch_norm_cuda(pybind11::module_& m);
#endif
}  // namespace gancore

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gancore fused kernels (C++ CPU; CUDA when built with it)";
#ifdef GANCORE_WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  gancore::register_instance_norm(m);
  gancore::register_gradient_penalty(m);
  gancore::register_patchgan(m);
  gancore::register_batch_norm(m);
  gancore::register_autograd(m);
#ifdef GANCORE_WITH_CUDA
  gancore::register_instance_norm_cuda(m);
  gancore::register_gradient_penalty_cuda(m);
  gancore::register_patchgan_cuda(m);
  gancore::register_batch_norm_cuda(m);
#endif
}
