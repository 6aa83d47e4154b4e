// PatchGAN scoring kernels: the last convolution of a PatchGAN discriminator (C -> 1 channel,
// KH x KW taps, stride, zero padding) fused with the per-patch GAN loss, forward and backward.
// Included twice by patchgan.cpp: once compiled for AVX2+FMA, once for the baseline ISA.
// T is the storage type of h, A the accumulation type (float, or double for double inputs).
// With one output channel the convolution is a direct C*KH*KW-tap dot product per output pixel;
// all partial sums go to staging buffers of a fixed shape, summed in a fixed order: deterministic.
// ConvGeometry is defined by the including file (once for both builds).

static constexpr int64_t kChannelChunk = 16;  // channels per partial logit map (contiguous layout)
static constexpr int64_t kRowBlock = 8;       // input rows per weight-gradient partial (channels-last)

inline int64_t channel_chunks(int64_t C) { return (C + kChannelChunk - 1) / kChannelChunk; }
inline int64_t row_blocks(int64_t H) { return (H + kRowBlock - 1) / kRowBlock; }

// ---- contiguous (N, C, H, W) -------------------------------------------------------------------

// partial[(n * chunks + k) * OH*OW + p]: the logit map of sample n over channel chunk k.
// w is (C, KH*KW).
template <typename T, typename A>
void logits_nchw(const T* h, const A* w, A* partial, const ConvGeometry& g) {
  const int64_t chunks = channel_chunks(g.C), P = g.OH * g.OW, plane = g.H * g.W, s = g.stride;
  at::parallel_for(0, g.N * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, c0 = (task % chunks) * kChannelChunk;
      A* z = partial + task * P;
      std::fill(z, z + P, A(0));
      for (int64_t c = c0; c < std::min(g.C, c0 + kChannelChunk); ++c) {
        const T* x = h + (n * g.C + c) * plane;
        const A* wc = w + c * g.taps();
        for (int64_t ky = 0; ky < g.KH; ++ky) {
          for (int64_t kx = 0; kx < g.KW; ++kx) {
            const A wv = wc[ky * g.KW + kx];
            const int64_t lo = g.ox_begin(kx), hi = g.ox_end(kx), shift = kx - g.pad;
            for (int64_t oy = 0; oy < g.OH; ++oy) {
              const int64_t iy = oy * s - g.pad + ky;
              if (iy < 0 || iy >= g.H) continue;
              const T* row = x + iy * g.W;
              A* zr = z + oy * g.OW;
#pragma omp simd
              for (int64_t ox = lo; ox < hi; ++ox) zr[ox] += wv * static_cast<A>(row[ox * s + shift]);
            }
          }
        }
      }
    }
  });
}

// One (n, c) plane at a time: dh = sum over taps of w * dz (scattered back to the input pixels),
// dw_partial[(n * C + c) * taps + tap] = sum over pixels of dz * h. dz is (N, OH*OW).
template <typename T, typename A>
void backward_nchw(const T* h, const A* w, const A* dz, T* dh, A* dw_partial, const ConvGeometry& g) {
  const int64_t plane = g.H * g.W, s = g.stride;
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> acc(dh != nullptr ? plane : 0);
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C;
      const T* x = h + nc * plane;
      const A* wc = w + c * g.taps();
      const A* dzn = dz + n * g.OH * g.OW;
      A* dwp = dw_partial + nc * g.taps();
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t ky = 0; ky < g.KH; ++ky) {
        for (int64_t kx = 0; kx < g.KW; ++kx) {
          const A wv = wc[ky * g.KW + kx];
          const int64_t lo = g.ox_begin(kx), hi = g.ox_end(kx), shift = kx - g.pad;
          A dw = 0;
          for (int64_t oy = 0; oy < g.OH; ++oy) {
            const int64_t iy = oy * s - g.pad + ky;
            if (iy < 0 || iy >= g.H) continue;
            const T* row = x + iy * g.W;
            const A* d = dzn + oy * g.OW;
            if (dh != nullptr) {
              A* out = acc.data() + iy * g.W;
#pragma omp simd
              for (int64_t ox = lo; ox < hi; ++ox) out[ox * s + shift] += wv * d[ox];
            }
            A sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int64_t ox = lo; ox < hi; ++ox) sum += d[ox] * static_cast<A>(row[ox * s + shift]);
            dw += sum;
          }
          dwp[ky * g.KW + kx] = dw;
        }
      }
      if (dh != nullptr) {
        T* out = dh + nc * plane;
#pragma omp simd
        for (int64_t i = 0; i < plane; ++i) out[i] = static_cast<T>(acc[i]);
      }
    }
  });
}

// ---- channels-last (N, H, W, C) ----------------------------------------------------------------

// z[n * OH*OW + p]: one output pixel at a time, taps as dot products along C. w is (KH*KW, C).
template <typename T, typename A>
void logits_cl(const T* h, const A* w, A* z, const ConvGeometry& g) {
  const int64_t C = g.C;
  at::parallel_for(0, g.N * g.OH, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.OH, oy = row % g.OH;
      for (int64_t ox = 0; ox < g.OW; ++ox) {
        A sum = 0;
        for (int64_t ky = 0; ky < g.KH; ++ky) {
          const int64_t iy = oy * g.stride - g.pad + ky;
          if (iy < 0 || iy >= g.H) continue;
          for (int64_t kx = 0; kx < g.KW; ++kx) {
            const int64_t ix = ox * g.stride - g.pad + kx;
            if (ix < 0 || ix >= g.W) continue;
            const T* x = h + ((n * g.H + iy) * g.W + ix) * C;
            const A* wt = w + (ky * g.KW + kx) * C;
#pragma omp simd reduction(+ : sum)
            for (int64_t c = 0; c < C; ++c) sum += wt[c] * static_cast<A>(x[c]);
          }
        }
        z[row * g.OW + ox] = sum;
      }
    }
  });
}

// One block of kRowBlock input rows at a time: for every input pixel, dh = sum over the taps that
// reach it of dz * w, and dw_partial[block][tap][c] += dz * h.
template <typename T, typename A>
void backward_cl(const T* h, const A* w, const A* dz, T* dh, A* dw_partial, const ConvGeometry& g) {
  const int64_t C = g.C, blocks = row_blocks(g.H), s = g.stride;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> acc(C);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, y0 = (task % blocks) * kRowBlock;
      A* dwp = dw_partial + task * g.taps() * C;
      std::fill(dwp, dwp + g.taps() * C, A(0));
      for (int64_t iy = y0; iy < std::min(g.H, y0 + kRowBlock); ++iy) {
        for (int64_t ix = 0; ix < g.W; ++ix) {
          const int64_t pixel = (n * g.H + iy) * g.W + ix;
          const T* x = h + pixel * C;
          std::fill(acc.begin(), acc.end(), A(0));
          for (int64_t ky = 0; ky < g.KH; ++ky) {
            const int64_t ty = iy + g.pad - ky;
            if (ty < 0 || ty % s != 0 || ty / s >= g.OH) continue;
            for (int64_t kx = 0; kx < g.KW; ++kx) {
              const int64_t tx = ix + g.pad - kx;
              if (tx < 0 || tx % s != 0 || tx / s >= g.OW) continue;
              const A d = dz[(n * g.OH + ty / s) * g.OW + tx / s];
              const int64_t tap = ky * g.KW + kx;
              const A* wt = w + tap * C;
              A* dw = dwp + tap * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                acc[c] += d * wt[c];
                dw[c] += d * static_cast<A>(x[c]);
              }
            }
          }
          if (dh != nullptr) {
            T* out = dh + pixel * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(acc[c]);
          }
        }
      }
    }
  });
}

// ---- the loss over the logit maps --------------------------------------------------------------

// For every sample n: z = bias + sum over the `parts` partial maps; loss and dl/dz per patch
// (dldz scaled by `factor`: 1/count for a mean); loss_map (when not nullptr) gets every loss and
// loss_sum[n] their sum. target is indexed through strides (zero strides broadcast).
template <typename A, int KIND>
void patch_losses(const A* partial, int64_t parts, A bias, const A* target, int64_t tn, int64_t ty, int64_t tx,
                  A* loss_map, A* dldz, double* loss_sum, int64_t N, int64_t OH, int64_t OW, A factor) {
  const int64_t P = OH * OW;
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      double total = 0;
      for (int64_t oy = 0; oy < OH; ++oy) {
        A row_sum = 0;
        for (int64_t ox = 0; ox < OW; ++ox) {
          const int64_t p = oy * OW + ox;
          A z = bias;
          for (int64_t k = 0; k < parts; ++k) z += partial[(n * parts + k) * P + p];
          const LossAndGrad<A> l = patch_loss<A>(KIND, z, target[n * tn + oy * ty + ox * tx]);
          if (loss_map != nullptr) loss_map[n * P + p] = l.loss;
          dldz[n * P + p] = l.grad * factor;
          row_sum += l.loss;
        }
        total += static_cast<double>(row_sum);
      }
      loss_sum[n] = total;
    }
  });
}
