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
// outputs "wide", j = oy*Wp + ox with ox < Wp, tap t reads input index stride*j + off[t] with
// off[t] = ky*Wp + kx: every loop over j is long and contiguous (for stride 1). Columns ox >= OW
// are padding: their logits are never read and their dz is zero. Planes of a PatchGAN are small
// (31x31), so everything a plane needs stays in L1. All taps are applied in one pass over j, with
// the sum over taps in registers, rather than one read-modify-write pass over the outputs per tap.

struct WideGeometry {
  int64_t Wp, wide, padded, front;  // padded row, OH * Wp, padded plane buffer, largest tap offset
  std::vector<int64_t> off;         // off[t] for t = ky * KW + kx
};

inline WideGeometry wide_geometry(const ConvGeometry& g) {
  WideGeometry wg;
  wg.Wp = g.W + 2 * g.pad;
  wg.wide = g.OH * wg.Wp;
  wg.front = (g.KH - 1) * wg.Wp + g.KW - 1;
  const int64_t reach = g.stride * (wg.wide - 1) + wg.front + 1;  // one past the last index read
  wg.padded = std::max((g.H + 2 * g.pad) * wg.Wp, reach);
  for (int64_t ky = 0; ky < g.KH; ++ky)
    for (int64_t kx = 0; kx < g.KW; ++kx) wg.off.push_back(ky * wg.Wp + kx);
  return wg;
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
// w is (C, KH*KW). UNIT: stride 1, so the compiler sees contiguous reads. TAPS: KH*KW when known
// at compile time (16, PatchGAN's 4x4), so the loop over taps unrolls into plain vector loads;
// 0 for any other kernel (the vectoriser then gathers: correct, slower).
template <bool UNIT, int TAPS, typename T, typename A>
void logits_nchw_impl(const T* h, const A* w, A* partial, const ConvGeometry& g) {
  const int64_t chunks = channel_chunks(g.C), plane = g.H * g.W, s = UNIT ? 1 : g.stride;
  const int64_t taps = TAPS > 0 ? TAPS : g.taps();
  const WideGeometry wg = wide_geometry(g);
  const int64_t* off = wg.off.data();
  at::parallel_for(0, g.N * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> hp(wg.padded), z(wg.wide);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, c0 = (task % chunks) * kChannelChunk;
      std::fill(z.begin(), z.end(), A(0));
      A* zw = z.data();
      const A* src = hp.data();
      for (int64_t c = c0; c < std::min(g.C, c0 + kChannelChunk); ++c) {
        pad_plane<T, A>(h + (n * g.C + c) * plane, g, wg, hp.data());
        const A* wc = w + c * taps;
#pragma omp simd
        for (int64_t j = 0; j < wg.wide; ++j) {
          A acc = 0;
#pragma GCC unroll 16
          for (int64_t t = 0; t < taps; ++t) acc += wc[t] * src[s * j + off[t]];
          zw[j] += acc;
        }
      }
      A* out = partial + task * g.OH * g.OW;
      for (int64_t oy = 0; oy < g.OH; ++oy) std::copy(zw + oy * wg.Wp, zw + oy * wg.Wp + g.OW, out + oy * g.OW);
    }
  });
}

template <typename T, typename A>
void logits_nchw(const T* h, const A* w, A* partial, const ConvGeometry& g) {
  const bool k4 = g.taps() == 16;
  if (g.stride == 1) {
    (k4 ? logits_nchw_impl<true, 16, T, A> : logits_nchw_impl<true, 0, T, A>)(h, w, partial, g);
  } else {
    (k4 ? logits_nchw_impl<false, 16, T, A> : logits_nchw_impl<false, 0, T, A>)(h, w, partial, g);
  }
}

// dw[t] = sum_j d[j] * hp[s*j + off[t]] for every tap, four taps of a kernel row per pass over j
// (four independent accumulators instead of one latency-bound chain).
template <bool UNIT, typename A>
void tap_dots(const A* d, const A* hp, const ConvGeometry& g, const WideGeometry& wg, A* dw) {
  const int64_t s = UNIT ? 1 : g.stride;
  for (int64_t ky = 0; ky < g.KH; ++ky) {
    int64_t kx = 0;
    for (; kx + 4 <= g.KW; kx += 4) {
      const A* r = hp + ky * wg.Wp + kx;
      A s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t j = 0; j < wg.wide; ++j) {
        const A dv = d[j];
        s0 += dv * r[s * j];
        s1 += dv * r[s * j + 1];
        s2 += dv * r[s * j + 2];
        s3 += dv * r[s * j + 3];
      }
      A* out = dw + ky * g.KW + kx;
      out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
    }
    for (; kx < g.KW; ++kx) {
      const A* r = hp + ky * wg.Wp + kx;
      A sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < wg.wide; ++j) sum += d[j] * r[s * j];
      dw[ky * g.KW + kx] = sum;
    }
  }
}

// One (n, c) plane at a time, from dz laid out wide (zero in the padding columns):
// dw_partial[(n * C + c) * taps + t] = sum_j dz[j] * hp[s*j + off[t]], and dh. For stride 1, dh is
// gathered: dh at padded index k = sum_t w[t] * dz[k - off[t]], read from dz with `front` zeros in
// front; for other strides it is scattered, dh_padded[s*j + off[t]] += w[t] * dz[j] (one tap's
// indices never collide), then cropped.
template <bool UNIT, int TAPS, typename T, typename A>
void backward_nchw_impl(const T* h, const A* w, const A* dz, T* dh, A* dw_partial, const ConvGeometry& g) {
  const int64_t plane = g.H * g.W, s = UNIT ? 1 : g.stride;
  const int64_t taps = TAPS > 0 ? TAPS : g.taps();
  const WideGeometry wg = wide_geometry(g);
  const int64_t* off = wg.off.data();
  // per sample: dz wide, behind `front` zeros and followed by enough zeros for every gather
  const int64_t stride_dz = wg.front + std::max(wg.padded, wg.wide);
  std::vector<A> dz_pad(g.N * stride_dz, A(0));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oy = 0; oy < g.OH; ++oy)
      std::copy(dz + (n * g.OH + oy) * g.OW, dz + (n * g.OH + oy + 1) * g.OW,
                dz_pad.data() + n * stride_dz + wg.front + oy * wg.Wp);
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> hp(wg.padded), dhp(!UNIT && dh != nullptr ? wg.padded : 0);
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C;
      const A* dpad = dz_pad.data() + n * stride_dz;
      const A* d = dpad + wg.front;
      const A* wc = w + c * taps;
      pad_plane<T, A>(h + nc * plane, g, wg, hp.data());
      tap_dots<UNIT, A>(d, hp.data(), g, wg, dw_partial + nc * taps);
      if (dh == nullptr) continue;
      T* out = dh + nc * plane;
      if constexpr (UNIT) {
        for (int64_t iy = 0; iy < g.H; ++iy) {
          const A* row = d + (iy + g.pad) * wg.Wp + g.pad;  // index k - front of dz_pad's row start
#pragma omp simd
          for (int64_t ix = 0; ix < g.W; ++ix) {
            A acc = 0;
#pragma GCC unroll 16
            for (int64_t t = 0; t < taps; ++t) acc += wc[t] * row[ix - off[t]];
            out[iy * g.W + ix] = static_cast<T>(acc);
          }
        }
      } else {
        std::fill(dhp.begin(), dhp.end(), A(0));
        for (int64_t t = 0; t < taps; ++t) {
          A* dst = dhp.data() + off[t];
          const A wv = wc[t];
#pragma omp simd
          for (int64_t j = 0; j < wg.wide; ++j) dst[s * j] += wv * d[j];
        }
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
  const bool k4 = g.taps() == 16;
  if (g.stride == 1) {
    (k4 ? backward_nchw_impl<true, 16, T, A> : backward_nchw_impl<true, 0, T, A>)(h, w, dz, dh, dw_partial, g);
  } else {
    (k4 ? backward_nchw_impl<false, 16, T, A> : backward_nchw_impl<false, 0, T, A>)(h, w, dz, dh, dw_partial, g);
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
