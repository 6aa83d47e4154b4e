// Batch norm + activation (+ residual) kernels over a whole (N, C, S) tensor.
// Included twice by batch_norm.cpp (AVX2+FMA and baseline, picked at run time), like the instance
// norm kernels, whose plane and block helpers it shares (cpu/norm_kernels_common.h).
// Layouts: NCHW walks (n, c) planes of S values; channels-last walks R = N*S rows of C values.
// Statistics and gradient sums go per plane / per row block to a staging buffer and are reduced in
// a fixed order (Chan's merge for moments), or, for small NCHW planes, per channel block straight to
// the output: deterministic whatever the thread count, no atomics.
// T is the storage type, A the accumulation type (float, or double for double inputs).

#include "cpu/norm_kernels_common.h"

// Planes per parallel task: at least ~32K elements, so small planes do not drown in scheduling.
inline int64_t plane_grain(int64_t S) { return std::max<int64_t>(1, (32 * 1024) / std::max<int64_t>(S, 1)); }

// Small NCHW planes (S <= 64: DCGAN's 8x8 and 4x4 maps at batch 64) would spend their time in one
// horizontal reduction and one double merge per plane. They go by channel blocks instead: a task takes
// a run of neighbouring channels (up to kRun contiguous values) from each of the N images and sums per
// position, reducing once per chunk of kSmallPlanes planes. Each channel's result depends only on N and
// S, not on the blocks, so it is the same whatever the thread count. (At S = 256 the per-plane walk is
// faster: its reductions are long enough.)
constexpr int64_t kRun = 1024;
constexpr int64_t kSmallPlanes = 8;  // per chunk: a per-position sum adds at most 8 values (offset inputs)

inline bool small_planes(int64_t N, int64_t S) { return N > 1 && S * kSmallPlanes <= kChunk; }

inline int64_t channels_per_block(int64_t C, int64_t S) {
  return std::max<int64_t>(1, std::min<int64_t>(kRun / S, (C + 3) / 4));  // at least 4 blocks to share out
}

// Channel blocks per parallel task: at least ~32K elements, as plane_grain, so a small tensor stays on the
// calling thread.
inline int64_t block_grain(int64_t N, int64_t S, int64_t width) {
  return std::max<int64_t>(1, (32 * 1024) / (N * S * width));
}

// The sum of n per-position partial sums, in double.
template <typename A>
inline double lane_total(const A* p, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]);
  return s;
}

template <typename T, typename A>
void stats_nchw_small(const T* x, int64_t N, int64_t C, int64_t S, A* mean, A* m2) {
  const int64_t width = channels_per_block(C, S), blocks = (C + width - 1) / width;
  at::parallel_for(0, blocks, block_grain(N, S, width), [&](int64_t begin, int64_t end) {
    std::vector<A> lane(width * S), centre(width);
    std::vector<Moments> m(width);
    A* l = lane.data();
    for (int64_t b = begin; b < end; ++b) {
      const int64_t c0 = b * width, nc = std::min(width, C - c0), W = nc * S;
      std::fill(m.begin(), m.end(), Moments());
      for (int64_t n0 = 0; n0 < N; n0 += kSmallPlanes) {
        const int64_t n1 = std::min(N, n0 + kSmallPlanes);
        const double len = static_cast<double>((n1 - n0) * S);
        std::fill(l, l + W, A(0));
        for (int64_t n = n0; n < n1; ++n) {
          const T* p = x + (n * C + c0) * S;
#pragma omp simd
          for (int64_t j = 0; j < W; ++j) l[j] += to_acc<A>(p[j]);
        }
        for (int64_t k = 0; k < nc; ++k) centre[k] = static_cast<A>(lane_total(l + k * S, S) / len);
        std::fill(l, l + W, A(0));
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t k = 0; k < nc; ++k) {
            const T* p = x + (n * C + c0 + k) * S;
            A* lk = l + k * S;
            const A mk = centre[k];
#pragma omp simd
            for (int64_t i = 0; i < S; ++i) {
              const A d = to_acc<A>(p[i]) - mk;
              lk[i] += d * d;
            }
          }
        }
        for (int64_t k = 0; k < nc; ++k) m[k].merge(len, static_cast<double>(centre[k]), lane_total(l + k * S, S));
      }
      for (int64_t k = 0; k < nc; ++k) {
        mean[c0 + k] = static_cast<A>(m[k].mean);
        m2[c0 + k] = static_cast<A>(m[k].m2);
      }
    }
  });
}

template <typename T, typename A>
void stats_nchw(const T* x, int64_t N, int64_t C, int64_t S, A* mean, A* m2) {
  if (small_planes(N, S)) return stats_nchw_small<T, A>(x, N, C, S, mean, m2);
  std::vector<double> part_mean(N * C), part_m2(N * C);
  at::parallel_for(0, N * C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const Moments m = plane_moments<T, A>(x + p * S, S);
      part_mean[p] = m.mean;
      part_m2[p] = m.m2;
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    Moments m;
    for (int64_t n = 0; n < N; ++n) m.merge(static_cast<double>(S), part_mean[n * C + c], part_m2[n * C + c]);
    mean[c] = static_cast<A>(m.mean);
    m2[c] = static_cast<A>(m.m2);
  }
}

// Rows per channels-last statistics block: the block sums run in the accumulation type, so blocks
// stay short (a float sum of 1024 values offset by 1e4 loses 1e-3 of the mean), merged in double.
constexpr int64_t kStatRows = 128;

template <typename T, typename A>
void stats_cl(const T* x, int64_t R, int64_t C, A* mean, A* m2) {
  const int64_t rows = std::min(block_rows<T>(C, R), kStatRows), blocks = (R + rows - 1) / rows;
  std::vector<A> part_mean(blocks * C), part_m2(blocks * C);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t r0 = k * rows, nr = std::min(rows, R - r0);
      block_moments<T, A>(x + r0 * C, nr, C, &part_mean[k * C], &part_m2[k * C]);
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    const Moments m = merge_block_moments(part_mean.data(), part_m2.data(), blocks, rows, R, C, c);
    mean[c] = static_cast<A>(m.mean);
    m2[c] = static_cast<A>(m.m2);
  }
}

// Per-channel mean, scale = rstd * weight, shift = bias and activation slope, as arrays.
template <typename A>
struct ChannelCoefs {
  std::vector<A> mean, rstd, scale, shift, slope;
  ChannelCoefs(const A* mean_in, const A* rstd_in, const BnParams<A>& prm, int64_t C)
      : mean(mean_in, mean_in + C), rstd(rstd_in, rstd_in + C), scale(C), shift(C), slope(C) {
    for (int64_t c = 0; c < C; ++c) scale[c] = rstd[c] * prm.w(c), shift[c] = prm.b(c), slope[c] = prm.s(c);
  }
};

// plane_normalize, or its streaming-store form when `stream` (stream_output: float outputs far beyond the cache).
template <typename T, typename A>
inline void normalize_plane(const T* x, const T* res, T* out, int64_t n, A mean, A scale, A shift, A slope,
                            bool stream) {
#ifdef GANCORE_AVX2_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (stream) return plane_normalize_stream(x, res, out, n, mean, scale, shift, slope);
  }
#endif
  (void)stream;
  plane_normalize<T, A>(x, res, out, n, mean, scale, shift, slope);
}

// plane_grad_input, or its streaming-store form when `stream`.
template <typename T, typename A>
inline void grad_input_plane(const T* g, const T* x, T* dx, int64_t n, A mean, A rstd, A scale, A shift, A slope,
                             A coef_dy, A coef_dyx, bool stream) {
#ifdef GANCORE_AVX2_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (stream) return plane_grad_input_stream(g, x, dx, n, mean, rstd, scale, shift, slope, coef_dy, coef_dyx);
  }
#endif
  (void)stream;
  plane_grad_input<T, A>(g, x, dx, n, mean, rstd, scale, shift, slope, coef_dy, coef_dyx);
}

template <typename T, typename A>
void apply_nchw(const T* x, const T* res, T* out, int64_t N, int64_t C, int64_t S, const A* mean, const A* rstd,
                const BnParams<A>& prm) {
  const bool stream = stream_output(out, N * C * S);
  at::parallel_for(0, N * C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C, off = p * S;
      const A scale = rstd[c] * prm.w(c);
      normalize_plane<T, A>(x + off, res ? res + off : nullptr, out + off, S, mean[c], scale, prm.b(c), prm.s(c),
                            stream);
    }
  });
}

// The training forward of one image in NCHW (pix2pix's batch 1): each channel is one contiguous plane, so a
// task takes its statistics and normalises it back to back, and the second pass reads the plane from the
// core's cache, where stats_nchw then apply_nchw would stream the whole tensor twice. The statistics and
// the running-buffer update are exactly stats_nchw's and batch_norm_forward_cpu's for N = 1 (the same plane
// moments, merged the same way); running_mean is nullptr when there are no buffers to update.
template <typename T, typename A>
void forward_single_nchw(const T* x, const T* res, T* out, int64_t C, int64_t S, A* mean, A* m2, A* rstd,
                         const BnParams<A>& prm, double eps, A* running_mean, A* running_var, A momentum) {
  const bool stream = stream_output(out, C * S);
  at::parallel_for(0, C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t off = c * S;
      const Moments plane = plane_moments<T, A>(x + off, S);
      Moments m;
      m.merge(static_cast<double>(S), plane.mean, plane.m2);
      mean[c] = static_cast<A>(m.mean);
      m2[c] = static_cast<A>(m.m2);
      rstd[c] = static_cast<A>(1.0 / std::sqrt(static_cast<double>(m2[c]) / static_cast<double>(S) + eps));
      if (running_mean != nullptr) {
        update_running<A>(running_mean[c], running_var[c], mean[c], m2[c], static_cast<A>(S), momentum);
      }
      const A scale = rstd[c] * prm.w(c);
      normalize_plane<T, A>(x + off, res ? res + off : nullptr, out + off, S, mean[c], scale, prm.b(c), prm.s(c),
                            stream);
    }
  });
}

// out = act((x - mean) * scale + shift) [+ res] over `rows` rows of C channels, per-channel slope.
template <typename T, typename A>
void block_apply(const T* x, const T* res, T* out, int64_t rows, int64_t C, const ChannelCoefs<A>& k) {
  const A *mean = k.mean.data(), *scale = k.scale.data(), *shift = k.shift.data(), *slope = k.slope.data();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    if (res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A y = (to_acc<A>(x[o + c]) - mean[c]) * scale[c] + shift[c];
        out[o + c] = from_acc<T>(leaky(y, slope[c]) + to_acc<A>(res[o + c]));
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A y = (to_acc<A>(x[o + c]) - mean[c]) * scale[c] + shift[c];
        out[o + c] = from_acc<T>(leaky(y, slope[c]));
      }
    }
  }
}

template <typename T, typename A>
void apply_cl(const T* x, const T* res, T* out, int64_t R, int64_t C, const A* mean, const A* rstd,
              const BnParams<A>& prm) {
  const ChannelCoefs<A> k(mean, rstd, prm, C);
  const int64_t rows = block_rows<T>(C, R), blocks = (R + rows - 1) / rows;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * rows * C, nr = std::min(rows, R - b * rows);
      block_apply<T, A>(x + o, res ? res + o : nullptr, out + o, nr, C, k);
    }
  });
}

// Sums over a plane of dy = g * act'(y), dy * xhat and (PReLU) g * min(y, 0), flushed to double per chunk.
template <bool PRELU, typename T, typename A>
void plane_grad_sums3(const T* g, const T* x, int64_t n, A mean, A rstd, A scale, A shift, A slope, double* sums) {
  double t1 = 0, t2 = 0, t3 = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t len = std::min(kChunk, n - i0);
    A s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s1, s2, s3)
    for (int64_t i = i0; i < i0 + len; ++i) {
      const A centred = to_acc<A>(x[i]) - mean;
      const A y = centred * scale + shift;
      const A gv = to_acc<A>(g[i]);
      const A dy = gv * leaky_grad(y, slope);
      s1 += dy;
      s2 += dy * centred;
      if constexpr (PRELU) s3 += prelu_weight_grad(gv, y);
    }
    t1 += s1;
    t2 += static_cast<double>(s2) * static_cast<double>(rstd);
    t3 += s3;
  }
  sums[0] = t1, sums[1] = t2, sums[2] = t3;
}

// The sums of grad_sums_nchw for small planes, by channel blocks as in stats_nchw_small.
template <bool PRELU, typename T, typename A>
void grad_sums_nchw_small(const T* g, const T* x, int64_t N, int64_t C, int64_t S, const A* mean, const A* rstd,
                          const BnParams<A>& prm, A* out) {
  const int64_t width = channels_per_block(C, S), blocks = (C + width - 1) / width;
  at::parallel_for(0, blocks, block_grain(N, S, width), [&](int64_t begin, int64_t end) {
    std::vector<A> lanes(3 * width * S);
    std::vector<double> total(3 * width);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t c0 = b * width, nc = std::min(width, C - c0), W = nc * S;
      A *l1 = lanes.data(), *l2 = l1 + W, *l3 = l2 + W;
      std::fill(total.begin(), total.end(), 0.0);
      for (int64_t n0 = 0; n0 < N; n0 += kSmallPlanes) {
        std::fill(l1, l1 + 3 * W, A(0));
        for (int64_t n = n0; n < std::min(N, n0 + kSmallPlanes); ++n) {
          for (int64_t k = 0; k < nc; ++k) {
            const int64_t c = c0 + k, o = (n * C + c) * S;
            const T *gp = g + o, *xp = x + o;
            const A mk = mean[c], scale = rstd[c] * prm.w(c), shift = prm.b(c), slope = prm.s(c);
            A *s1 = l1 + k * S, *s2 = l2 + k * S, *s3 = l3 + k * S;
#pragma omp simd
            for (int64_t i = 0; i < S; ++i) {
              const A centred = to_acc<A>(xp[i]) - mk;
              const A y = centred * scale + shift;
              const A gv = to_acc<A>(gp[i]);
              const A dy = gv * leaky_grad(y, slope);
              s1[i] += dy;
              s2[i] += dy * centred;
              if constexpr (PRELU) s3[i] += prelu_weight_grad(gv, y);
            }
          }
        }
        for (int64_t k = 0; k < nc; ++k) {
          total[3 * k] += lane_total(l1 + k * S, S);
          total[3 * k + 1] += lane_total(l2 + k * S, S) * static_cast<double>(rstd[c0 + k]);
          total[3 * k + 2] += lane_total(l3 + k * S, S);
        }
      }
      for (int64_t k = 0; k < nc; ++k)
        for (int j = 0; j < 3; ++j) out[j * C + c0 + k] = static_cast<A>(total[3 * k + j]);
    }
  });
}

// Per-channel sums (3, C): sum dy, sum dy * xhat, sum g * min(y, 0) (0 without PReLU).
template <typename T, typename A>
void grad_sums_nchw(const T* g, const T* x, int64_t N, int64_t C, int64_t S, const A* mean, const A* rstd,
                    const BnParams<A>& prm, A* out) {
  if (small_planes(N, S)) {
    if (prm.prelu != nullptr) return grad_sums_nchw_small<true, T, A>(g, x, N, C, S, mean, rstd, prm, out);
    return grad_sums_nchw_small<false, T, A>(g, x, N, C, S, mean, rstd, prm, out);
  }
  std::vector<double> part(N * C * 3);
  at::parallel_for(0, N * C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C, off = p * S;
      const A scale = rstd[c] * prm.w(c);
      if (prm.prelu != nullptr) {
        plane_grad_sums3<true, T, A>(g + off, x + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), &part[p * 3]);
      } else {
        plane_grad_sums3<false, T, A>(g + off, x + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), &part[p * 3]);
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double s[3] = {0, 0, 0};
    for (int64_t n = 0; n < N; ++n)
      for (int j = 0; j < 3; ++j) s[j] += part[(n * C + c) * 3 + j];
    for (int j = 0; j < 3; ++j) out[j * C + c] = static_cast<A>(s[j]);
  }
}

template <bool PRELU, typename T, typename A>
void block_grad_sums3(const T* g, const T* x, int64_t rows, int64_t C, const ChannelCoefs<A>& k, A* s1, A* s2,
                      A* s3) {
  const A *mean = k.mean.data(), *scale = k.scale.data(), *shift = k.shift.data(), *slope = k.slope.data();
  for (int64_t c = 0; c < C; ++c) s1[c] = 0, s2[c] = 0, s3[c] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const A centred = to_acc<A>(x[o + c]) - mean[c];
      const A y = centred * scale[c] + shift[c];
      const A gv = to_acc<A>(g[o + c]);
      const A dy = gv * leaky_grad(y, slope[c]);
      s1[c] += dy;
      s2[c] += dy * centred;
      if constexpr (PRELU) s3[c] += prelu_weight_grad(gv, y);
    }
  }
  for (int64_t c = 0; c < C; ++c) s2[c] *= k.rstd[c];
}

template <typename T, typename A>
void grad_sums_cl(const T* g, const T* x, int64_t R, int64_t C, const A* mean, const A* rstd, const BnParams<A>& prm,
                  A* out) {
  const ChannelCoefs<A> k(mean, rstd, prm, C);
  const int64_t rows = block_rows<T>(C, R), blocks = (R + rows - 1) / rows;
  std::vector<A> part(blocks * 3 * C);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * rows * C, nr = std::min(rows, R - b * rows);
      A* p = &part[b * 3 * C];
      if (prm.prelu != nullptr) {
        block_grad_sums3<true, T, A>(g + o, x + o, nr, C, k, p, p + C, p + 2 * C);
      } else {
        block_grad_sums3<false, T, A>(g + o, x + o, nr, C, k, p, p + C, p + 2 * C);
      }
    }
  });
  for (int64_t j = 0; j < 3 * C; ++j) {
    double s = 0;
    for (int64_t b = 0; b < blocks; ++b) s += part[b * 3 * C + j];
    out[j] = static_cast<A>(s);
  }
}

// dx = scale * (dy - coef_dy - xhat * coef_dyx); the coefficients are mean(dy) and mean(dy * xhat)
// over the batch in training, 0 in eval (nullptr).
template <typename T, typename A>
void grad_input_nchw(const T* g, const T* x, T* dx, int64_t N, int64_t C, int64_t S, const A* mean, const A* rstd,
                     const BnParams<A>& prm, const A* coef_dy, const A* coef_dyx) {
  const bool stream = stream_output(dx, N * C * S);
  at::parallel_for(0, N * C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C, off = p * S;
      const A scale = rstd[c] * prm.w(c), cdy = coef_dy ? coef_dy[c] : A(0), cdyx = coef_dyx ? coef_dyx[c] : A(0);
      grad_input_plane<T, A>(g + off, x + off, dx + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), cdy, cdyx,
                             stream);
    }
  });
}

// The training backward of one image in NCHW, channel by channel as forward_single_nchw: a task sums a
// plane's gradients and then computes its dx while the plane is in the core's cache. sums (3, C) and dx are
// exactly grad_sums_nchw's and grad_input_nchw's for N = 1, with batch_norm_backward_cpu's coefficients
// (the sums times 1 / S, rounded to A).
template <typename T, typename A>
void backward_single_nchw(const T* g, const T* x, T* dx, int64_t C, int64_t S, const A* mean, const A* rstd,
                          const BnParams<A>& prm, A* sums) {
  const bool stream = stream_output(dx, C * S);
  const double inv = 1.0 / static_cast<double>(S);
  at::parallel_for(0, C, plane_grain(S), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t off = c * S;
      const A scale = rstd[c] * prm.w(c);
      double part[3];
      if (prm.prelu != nullptr) {
        plane_grad_sums3<true, T, A>(g + off, x + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), part);
      } else {
        plane_grad_sums3<false, T, A>(g + off, x + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), part);
      }
      for (int j = 0; j < 3; ++j) sums[j * C + c] = static_cast<A>(part[j]);
      const A cdy = static_cast<A>(static_cast<double>(sums[c]) * inv);
      const A cdyx = static_cast<A>(static_cast<double>(sums[C + c]) * inv);
      grad_input_plane<T, A>(g + off, x + off, dx + off, S, mean[c], rstd[c], scale, prm.b(c), prm.s(c), cdy, cdyx,
                             stream);
    }
  });
}

template <typename T, typename A>
void grad_input_cl(const T* g, const T* x, T* dx, int64_t R, int64_t C, const A* mean, const A* rstd,
                   const BnParams<A>& prm, const A* coef_dy, const A* coef_dyx) {
  const ChannelCoefs<A> k(mean, rstd, prm, C);
  std::vector<A> cdy(C, A(0)), cdyx(C, A(0));
  for (int64_t c = 0; c < C; ++c) {
    if (coef_dy) cdy[c] = coef_dy[c];
    if (coef_dyx) cdyx[c] = coef_dyx[c] * k.rstd[c];  // folded: centred * rstd * coef
  }
  const int64_t rows = block_rows<T>(C, R), blocks = (R + rows - 1) / rows;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * rows * C, nr = std::min(rows, R - b * rows);
      const A *mean_c = k.mean.data(), *scale = k.scale.data(), *shift = k.shift.data(), *slope = k.slope.data();
      const A *d1 = cdy.data(), *d2 = cdyx.data();
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t i = o + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const A centred = to_acc<A>(x[i + c]) - mean_c[c];
          const A dy = to_acc<A>(g[i + c]) * leaky_grad(centred * scale[c] + shift[c], slope[c]);
          dx[i + c] = from_acc<T>(scale[c] * (dy - d1[c] - centred * d2[c]));
        }
      }
    }
  });
}
