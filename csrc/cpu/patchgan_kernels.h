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
// Each plane is copied once into a zero-padded buffer of row length Wp = W + 2*pad. Indexing the
// outputs "wide", j = oy*Wp + ox with ox < Wp, every tap becomes one long loop with a constant
// offset: input index stride*j + ky*Wp + kx. Columns ox >= OW are padding: their logits are never
// read and their dz is zero. Planes of a PatchGAN are small (31x31), so all of it stays in L1.

struct WideGeometry {
  int64_t Wp, wide, padded;  // padded row length, OH * Wp, length of the padded plane buffer
};

inline WideGeometry wide_geometry(const ConvGeometry& g) {
  const int64_t Wp = g.W + 2 * g.pad, wide = g.OH * Wp;
  const int64_t reach = g.stride * (wide - 1) + (g.KH - 1) * Wp + g.KW;  // one past the last index read
  return {Wp, wide, std::max((g.H + 2 * g.pad) * Wp, reach)};
}

// hp[(iy + pad) * Wp + ix + pad] = x[iy, ix], zero elsewhere.
template <typename T, typename A>
void pad_plane(const T* x, const ConvGeometry& g, const WideGeometry& wg, A* hp) {
  std::fill(hp, hp + wg.padded, A(0));
  for (int64_t iy = 0; iy < g.H; ++iy) {
    A* dst = hp + (iy + g.pad) * wg.Wp + g.pad;
    const T* src = x + iy * g.W;
#pragma omp simd
    for (int64_t ix = 0; ix < g.W; ++ix) dst[ix] = static_cast<A>(src[ix]);
  }
}

// partial[(n * chunks + k) * OH*OW + p]: the logit map of sample n over channel chunk k.
// w is (C, KH*KW). UNIT: stride 1, so every tap's loop reads contiguously.
template <bool UNIT, typename T, typename A>
void logits_nchw_impl(const T* h, const A* w, A* partial, const ConvGeometry& g) {
  const int64_t chunks = channel_chunks(g.C), plane = g.H * g.W, s = UNIT ? 1 : g.stride;
  const WideGeometry wg = wide_geometry(g);
  at::parallel_for(0, g.N * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> hp(wg.padded), z(wg.wide);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, c0 = (task % chunks) * kChannelChunk;
      std::fill(z.begin(), z.end(), A(0));
      A* zw = z.data();
      for (int64_t c = c0; c < std::min(g.C, c0 + kChannelChunk); ++c) {
        pad_plane<T, A>(h + (n * g.C + c) * plane, g, wg, hp.data());
        for (int64_t ky = 0; ky < g.KH; ++ky) {
          for (int64_t kx = 0; kx < g.KW; ++kx) {
            const A wv = w[c * g.taps() + ky * g.KW + kx];
            const A* src = hp.data() + ky * wg.Wp + kx;
#pragma omp simd
            for (int64_t j = 0; j < wg.wide; ++j) zw[j] += wv * src[s * j];
          }
        }
      }
      A* out = partial + task * g.OH * g.OW;
      for (int64_t oy = 0; oy < g.OH; ++oy) std::copy(zw + oy * wg.Wp, zw + oy * wg.Wp + g.OW, out + oy * g.OW);
    }
  });
}

template <typename T, typename A>
void logits_nchw(const T* h, const A* w, A* partial, const ConvGeometry& g) {
  if (g.stride == 1) {
    logits_nchw_impl<true, T, A>(h, w, partial, g);
  } else {
    logits_nchw_impl<false, T, A>(h, w, partial, g);
  }
}

// One (n, c) plane at a time, from dz laid out wide (zero in the padding columns):
// dw_partial[(n * C + c) * taps + tap] = sum_j dz[j] * hp[s*j + tap offset] and, when dh is wanted,
// dh_padded[s*j + tap offset] += w[tap] * dz[j] (one tap's indices never collide), then cropped.
template <bool UNIT, typename T, typename A>
void backward_nchw_impl(const T* h, const A* w, const A* dz, T* dh, A* dw_partial, const ConvGeometry& g) {
  const int64_t plane = g.H * g.W, s = UNIT ? 1 : g.stride;
  const WideGeometry wg = wide_geometry(g);
  std::vector<A> dz_wide(g.N * wg.wide, A(0));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oy = 0; oy < g.OH; ++oy)
      std::copy(dz + (n * g.OH + oy) * g.OW, dz + (n * g.OH + oy + 1) * g.OW, dz_wide.data() + n * wg.wide + oy * wg.Wp);
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> hp(wg.padded), dhp(dh != nullptr ? wg.padded : 0);
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C;
      const A* d = dz_wide.data() + n * wg.wide;
      pad_plane<T, A>(h + nc * plane, g, wg, hp.data());
      std::fill(dhp.begin(), dhp.end(), A(0));
      for (int64_t ky = 0; ky < g.KH; ++ky) {
        for (int64_t kx = 0; kx < g.KW; ++kx) {
          const int64_t tap = ky * g.KW + kx, offset = ky * wg.Wp + kx;
          const A* src = hp.data() + offset;
          A sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < wg.wide; ++j) sum += d[j] * src[s * j];
          dw_partial[nc * g.taps() + tap] = sum;
          if (dh != nullptr) {
            const A wv = w[c * g.taps() + tap];
            A* dst = dhp.data() + offset;
#pragma omp simd
            for (int64_t j = 0; j < wg.wide; ++j) dst[s * j] += wv * d[j];
          }
        }
      }
      if (dh != nullptr) {
        T* out = dh + nc * plane;
        for (int64_t iy = 0; iy < g.H; ++iy) {
          const A* src = dhp.data() + (iy + g.pad) * wg.Wp + g.pad;
#pragma omp simd
          for (int64_t ix = 0; ix < g.W; ++ix) out[iy * g.W + ix] = static_cast<T>(src[ix]);
        }
      }
    }
  });
}

template <typename T, typename A>
void backward_nchw(const T* h, const A* w, const A* dz, T* dh, A* dw_partial, const ConvGeometry& g) {
  if (g.stride == 1) {
    backward_nchw_impl<true, T, A>(h, w, dz, dh, dw_partial, g);
  } else {
    backward_nchw_impl<false, T, A>(h, w, dz, dh, dw_partial, g);
  }
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
