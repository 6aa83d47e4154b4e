// Instance norm + leaky activation (+ residual) kernels for one sample or one plane.
// Included twice by instance_norm.cpp: once compiled for AVX2+FMA, once for the baseline ISA, and
// picked at run time, so an installed package is fast without -march=native.
// Plain loops with `omp simd` reductions: the compiler vectorises them for the target ISA.
// T is the storage type, A the accumulation type (float, or double for double inputs).

#include "cpu/norm_kernels_common.h"

// Sums over a plane of dy = g * leaky'(y) and dy * xhat, in chunks flushed to double.
template <typename T, typename A>
void plane_grad_sums(const T* g, const T* x, int64_t n, A mean, A rstd, A scale, A shift, A slope,
                     double& sum_dy, double& sum_dy_xhat) {
  sum_dy = 0;
  sum_dy_xhat = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t len = std::min(kChunk, n - i0);
    A s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t i = i0; i < i0 + len; ++i) {
      const A centred = to_acc<A>(x[i]) - mean;
      const A dy = to_acc<A>(g[i]) * leaky_grad(centred * scale + shift, slope);
      s1 += dy;
      s2 += dy * (centred * rstd);
    }
    sum_dy += s1;
    sum_dy_xhat += s2;
  }
}

template <typename T, typename A>
void block_normalize(const T* x, const T* res, T* out, int64_t rows, int64_t C, const A* mean,
                     const A* scale, const A* shift, A slope) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    if (res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A y = (to_acc<A>(x[o + c]) - mean[c]) * scale[c] + shift[c];
        out[o + c] = from_acc<T>(leaky(y, slope) + to_acc<A>(res[o + c]));
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A y = (to_acc<A>(x[o + c]) - mean[c]) * scale[c] + shift[c];
        out[o + c] = from_acc<T>(leaky(y, slope));
      }
    }
  }
}

template <typename T, typename A>
void block_grad_sums(const T* g, const T* x, int64_t rows, int64_t C, const A* mean, const A* rstd,
                     const A* scale, const A* shift, A slope, A* sum_dy, A* sum_dy_xhat) {
  for (int64_t c = 0; c < C; ++c) sum_dy[c] = 0, sum_dy_xhat[c] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const A centred = to_acc<A>(x[o + c]) - mean[c];
      const A dy = to_acc<A>(g[o + c]) * leaky_grad(centred * scale[c] + shift[c], slope);
      sum_dy[c] += dy;
      sum_dy_xhat[c] += dy * centred * rstd[c];
    }
  }
}

template <typename T, typename A>
void block_grad_input(const T* g, const T* x, T* dx, int64_t rows, int64_t C, const A* mean, const A* rstd,
                      const A* scale, const A* shift, A slope, const A* mean_dy, const A* mean_dy_xhat) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const A centred = to_acc<A>(x[o + c]) - mean[c];
      const A dy = to_acc<A>(g[o + c]) * leaky_grad(centred * scale[c] + shift[c], slope);
      dx[o + c] = from_acc<T>(scale[c] * (dy - mean_dy[c] - centred * rstd[c] * mean_dy_xhat[c]));
    }
  }
}

// ---- drivers over a whole (N, C, S) tensor ---------------------------------------------------

template <typename T, typename A>
void forward_nchw(const T* x, const T* res, T* out, A* mean_out, A* rstd_out, int64_t N, int64_t C, int64_t S,
                  Affine<A> aff, A eps, A slope) {
  const bool stream = stream_output(out, N * C * S);
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C, off = p * S;
      const Moments m = plane_moments<T, A>(x + off, S);
      const A mean = static_cast<A>(m.mean);
      const A rstd = static_cast<A>(1.0 / std::sqrt(m.m2 / m.count + static_cast<double>(eps)));
#ifdef GANCORE_AVX2_KERNELS
      if constexpr (std::is_same_v<T, float>) {
        if (stream) {
          plane_normalize_stream(x + off, res ? res + off : nullptr, out + off, S, mean, rstd * aff.w(c), aff.b(c),
                                 slope);
          mean_out[p] = mean;
          rstd_out[p] = rstd;
          continue;
        }
      }
#endif
      plane_normalize<T, A>(x + off, res ? res + off : nullptr, out + off, S, mean, rstd * aff.w(c), aff.b(c),
                            slope);
      mean_out[p] = mean;
      rstd_out[p] = rstd;
    }
  });
}

// Runs body(n) for every sample. With at least as many samples as threads, each thread takes whole
// samples (the blocks loops inside run inline: no barrier per sample, and a sample's second pass
// reads from the last-level cache). With fewer, samples go one by one and their blocks are split.
template <typename Body>
void for_each_sample(int64_t N, const Body& body) {
  if (N >= at::get_num_threads()) {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) body(n);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) body(n);
  }
}

template <typename T, typename A>
void forward_cl(const T* x, const T* res, T* out, A* mean_out, A* rstd_out, int64_t N, int64_t C, int64_t S,
                Affine<A> aff, A eps, A slope) {
  const int64_t rows = block_rows<T>(C, S);
  const int64_t blocks = (S + rows - 1) / rows;
  const bool stream = stream_output(out, N * C * S) && C % 8 == 0;
  for_each_sample(N, [&](int64_t n) {
    std::vector<A> part_mean(blocks * C), part_m2(blocks * C), mean(C), scale(C), shift(C);
    const int64_t base = n * S * C;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t r0 = k * rows, nr = std::min(rows, S - r0);
        block_moments<T, A>(x + base + r0 * C, nr, C, &part_mean[k * C], &part_m2[k * C]);
      }
    });
    for (int64_t c = 0; c < C; ++c) {
      const Moments m = merge_block_moments(part_mean.data(), part_m2.data(), blocks, rows, S, C, c);
      const A rstd = static_cast<A>(1.0 / std::sqrt(m.m2 / m.count + static_cast<double>(eps)));
      mean[c] = static_cast<A>(m.mean);
      scale[c] = rstd * aff.w(c);
      shift[c] = aff.b(c);
      mean_out[n * C + c] = mean[c];
      rstd_out[n * C + c] = rstd;
    }
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t o = base + k * rows * C, nr = std::min(rows, S - k * rows);
#ifdef GANCORE_AVX2_KERNELS
        if constexpr (std::is_same_v<T, float>) {
          if (stream) {
            block_normalize_stream(x + o, res ? res + o : nullptr, out + o, nr, C, mean.data(), scale.data(),
                                   shift.data(), slope);
            continue;
          }
        }
#endif
        block_normalize<T, A>(x + o, res ? res + o : nullptr, out + o, nr, C, mean.data(), scale.data(),
                              shift.data(), slope);
      }
    });
  });
}

// Per-(n, c) sums of dy and dy * xhat go to a staging buffer, reduced over n in a fixed order:
// deterministic dweight/dbias without atomics.
template <typename T, typename A>
void backward_nchw(const T* g, const T* x, T* dx, const A* mean, const A* rstd, double* sum_dy,
                   double* sum_dy_xhat, int64_t N, int64_t C, int64_t S, Affine<A> aff, A slope) {
  const bool stream = dx != nullptr && stream_output(dx, N * C * S);
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C, off = p * S;
      const A scale = rstd[p] * aff.w(c), shift = aff.b(c);
      plane_grad_sums<T, A>(g + off, x + off, S, mean[p], rstd[p], scale, shift, slope, sum_dy[p],
                            sum_dy_xhat[p]);
      if (dx != nullptr) {
        const A inv = static_cast<A>(1.0 / static_cast<double>(S));
        const A mean_dy = static_cast<A>(sum_dy[p]) * inv, mean_dy_xhat = static_cast<A>(sum_dy_xhat[p]) * inv;
#ifdef GANCORE_AVX2_KERNELS
        if constexpr (std::is_same_v<T, float>) {
          if (stream) {
            plane_grad_input_stream(g + off, x + off, dx + off, S, mean[p], rstd[p], scale, shift, slope, mean_dy,
                                    mean_dy_xhat);
            continue;
          }
        }
#endif
        plane_grad_input<T, A>(g + off, x + off, dx + off, S, mean[p], rstd[p], scale, shift, slope, mean_dy,
                               mean_dy_xhat);
      }
    }
  });
}

template <typename T, typename A>
void backward_cl(const T* g, const T* x, T* dx, const A* mean, const A* rstd, double* sum_dy,
                 double* sum_dy_xhat, int64_t N, int64_t C, int64_t S, Affine<A> aff, A slope) {
  const int64_t rows = block_rows<T>(C, S);
  const int64_t blocks = (S + rows - 1) / rows;
  const A inv = static_cast<A>(1.0 / static_cast<double>(S));
  for_each_sample(N, [&](int64_t n) {
    std::vector<A> part_dy(blocks * C), part_dyx(blocks * C), scale(C), shift(C), mdy(C), mdyx(C);
    const int64_t base = n * S * C;
    const A* mean_n = mean + n * C;
    const A* rstd_n = rstd + n * C;
    for (int64_t c = 0; c < C; ++c) scale[c] = rstd_n[c] * aff.w(c), shift[c] = aff.b(c);
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t o = base + k * rows * C, nr = std::min(rows, S - k * rows);
        block_grad_sums<T, A>(g + o, x + o, nr, C, mean_n, rstd_n, scale.data(), shift.data(), slope,
                              &part_dy[k * C], &part_dyx[k * C]);
      }
    });
    for (int64_t c = 0; c < C; ++c) {
      double s1 = 0, s2 = 0;
      for (int64_t k = 0; k < blocks; ++k) s1 += part_dy[k * C + c], s2 += part_dyx[k * C + c];
      sum_dy[n * C + c] = s1;
      sum_dy_xhat[n * C + c] = s2;
      mdy[c] = static_cast<A>(s1) * inv;
      mdyx[c] = static_cast<A>(s2) * inv;
    }
    if (dx == nullptr) return;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t o = base + k * rows * C, nr = std::min(rows, S - k * rows);
        block_grad_input<T, A>(g + o, x + o, dx + o, nr, C, mean_n, rstd_n, scale.data(), shift.data(), slope,
                               mdy.data(), mdyx.data());
      }
    });
  });
}
