// Per-patch GAN losses and gradient-penalty terms shared by the CPU and CUDA kernels, so one
// formula is tested on the CPU. Every loss is written for a patch logit z and a target t, and
// returns the loss and its derivative dl/dz together (the forward saves dl/dz for the backward).
#pragma once

#ifndef GANCORE_HD
#ifdef __CUDACC__
#define GANCORE_HD __host__ __device__ __forceinline__
#else
#define GANCORE_HD inline
#endif
#endif

#include <cmath>

namespace gancore {

// Loss kinds, numbered as gancore/ops/patchgan.py passes them.
enum PatchLoss : int { kLsgan = 0, kBce = 1, kHinge = 2, kWgan = 3 };

template <typename A>
struct LossAndGrad {
  A loss, grad;
};

// lsgan: (z - t)^2.  bce: softplus(z) - z t, written max(z, 0) - z t + log1p(exp(-|z|)) so that
// it neither overflows nor loses precision for large |z|.  hinge: relu(1 - s z) with s = 2t - 1
// (t = 1 real, t = 0 fake).  wgan: -s z (the critic raises real scores and lowers fake ones).
template <typename A>
GANCORE_HD LossAndGrad<A> patch_loss(int kind, A z, A t) {
  using std::exp;
  using std::fabs;
  using std::log1p;
  if (kind == kLsgan) {
    const A d = z - t;
    return {d * d, A(2) * d};
  }
  if (kind == kBce) {
    const A e = exp(-fabs(z));
    const A sig = z >= A(0) ? A(1) / (A(1) + e) : e / (A(1) + e);
    return {(z > A(0) ? z : A(0)) - z * t + log1p(e), sig - t};
  }
  const A s = A(2) * t - A(1);
  if (kind == kHinge) {
    const A margin = A(1) - s * z;
    return margin > A(0) ? LossAndGrad<A>{margin, -s} : LossAndGrad<A>{A(0), A(0)};
  }
  return {-s * z, -s};
}

// Gradient-penalty modes, numbered as gancore/ops/gradient_penalty.py passes them.
enum PenaltyMode : int { kTwoSided = 0, kOneSided = 1, kSquaredNorm = 2 };

// The penalty p(||g||) of one sample and dp/d||g|| divided by ||g|| (the factor g is scaled by in
// the backward). Two-sided: (||g|| - c)^2; one-sided: max(||g|| - c, 0)^2; squared norm (R1/R2):
// ||g||^2. At ||g|| = 0 the norm has no derivative; like torch.linalg.vector_norm we use 0.
template <typename A>
GANCORE_HD LossAndGrad<A> penalty_of_sumsq(int mode, A sumsq, A center) {
  using std::sqrt;
  if (mode == kSquaredNorm) return {sumsq, A(2)};
  const A norm = sqrt(sumsq);
  A d = norm - center;
  if (mode == kOneSided && d < A(0)) d = A(0);
  return {d * d, norm > A(0) ? A(2) * d / norm : A(0)};
}

}  // namespace gancore
