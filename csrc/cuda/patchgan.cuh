// Launch interface of the CUDA PatchGAN scoring kernels: raw pointers only, no torch headers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gancore {
namespace cuda {

// h (N, C, H, W) walked through element strides (contiguous and channels-last alike); weight
// (C, KH*KW); logits, dz and targets (N, OH, OW).
struct PatchGeometry {
  int64_t N, C, H, W, KH, KW, stride, pad, OH, OW;
  int64_t stride_n, stride_c, stride_h, stride_w;
};

constexpr int kPatchPixels = 128;  // output pixels per forward block (one per thread)

inline int64_t patch_blocks(const PatchGeometry& g) { return (g.OH * g.OW + kPatchPixels - 1) / kPatchPixels; }

// dldz = dl/dz * factor per patch, loss_map (when not nullptr) the loss per patch, and
// partial[n * patch_blocks + b] the sum of the losses of block b of sample n.
template <typename T, typename A>
cudaError_t launch_patch_forward(const T* h, const A* weight, const A* bias, const A* target, int64_t t_n,
                                 int64_t t_y, int64_t t_x, A* dldz, A* loss_map, A* partial, const PatchGeometry& g,
                                 int kind, A factor, cudaStream_t stream);

// dh (skipped when nullptr) and dw_partial[(n * C + c) * KH*KW + tap] from dz (N, OH, OW).
template <typename T, typename A>
cudaError_t launch_patch_backward(const T* h, const A* weight, const A* dz, T* dh, A* dw_partial,
                                  const PatchGeometry& g, cudaStream_t stream);

}  // namespace cuda
}  // namespace gancore
