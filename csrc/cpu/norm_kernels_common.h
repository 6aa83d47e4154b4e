// Plane and block kernels shared by the CPU norms (instance norm, batch norm).
// No include guard on purpose: each op's .cpp includes its kernel header twice, inside an AVX2+FMA
// namespace and a baseline one, and this file must be compiled into both.
// T is the storage type, A the accumulation type (float, or double for double inputs).

// Conversions between storage and accumulation types. bfloat16 is done with integer ops the
// compiler vectorises (c10's conversions are scalar): widen by a shift, narrow with round-to-
// nearest-even, NaN kept as a quiet NaN.
template <typename A, typename T>
inline A to_acc(T v) {
  return static_cast<A>(v);
}

template <>
inline float to_acc<float, c10::BFloat16>(c10::BFloat16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename T, typename A>
inline T from_acc(A v) {
  return static_cast<T>(v);
}

template <>
inline c10::BFloat16 from_acc<c10::BFloat16, float>(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return c10::BFloat16(static_cast<uint16_t>(v != v ? 0x7fc0u : rounded), c10::BFloat16::from_bits());
}

static constexpr int64_t kChunk = 512;  // elements per statistics chunk: stays in L1

template <typename T, typename A>
Moments plane_moments(const T* x, int64_t n) {
  Moments m;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t len = std::min(kChunk, n - i0);
    const T* p = x + i0;
    A sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < len; ++i) sum += to_acc<A>(p[i]);
    const A mean = sum / static_cast<A>(len);
    A m2 = 0;
#pragma omp simd reduction(+ : m2)
    for (int64_t i = 0; i < len; ++i) {
      const A d = to_acc<A>(p[i]) - mean;
      m2 += d * d;
    }
    m.merge(static_cast<double>(len), static_cast<double>(mean), static_cast<double>(m2));
  }
  return m;
}

// out = leaky((x - mean) * scale + shift, slope) [+ res]
template <typename T, typename A>
void plane_normalize(const T* x, const T* res, T* out, int64_t n, A mean, A scale, A shift, A slope) {
  if (res != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const A y = (to_acc<A>(x[i]) - mean) * scale + shift;
      out[i] = from_acc<T>(leaky(y, slope) + to_acc<A>(res[i]));
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const A y = (to_acc<A>(x[i]) - mean) * scale + shift;
      out[i] = from_acc<T>(leaky(y, slope));
    }
  }
}

#ifdef GANCORE_AVX2_KERNELS
// Outputs much larger than the caches are written with non-temporal stores: lines that are
// overwritten whole are not read first (a third less memory traffic) and the caches keep the input.
inline __m256 leaky8(__m256 y, __m256 slope) {
  return _mm256_blendv_ps(_mm256_mul_ps(y, slope), y, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
}

inline void plane_normalize_stream(const float* x, const float* res, float* out, int64_t n, float mean, float scale,
                                   float shift, float slope) {
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(out + i) % 32) != 0; ++i) {
    out[i] = leaky((x[i] - mean) * scale + shift, slope) + (res ? res[i] : 0.f);
  }
  const __m256 vm = _mm256_set1_ps(mean), vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift),
               vk = _mm256_set1_ps(slope);
  for (; i + 8 <= n; i += 8) {
    __m256 y = leaky8(_mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs, vb), vk);
    if (res) y = _mm256_add_ps(y, _mm256_loadu_ps(res + i));
    _mm256_stream_ps(out + i, y);
  }
  for (; i < n; ++i) out[i] = leaky((x[i] - mean) * scale + shift, slope) + (res ? res[i] : 0.f);
  _mm_sfence();
}

// Channels-last block (rows x C contiguous, C a multiple of 8, out 32-byte aligned).
inline void block_normalize_stream(const float* x, const float* res, float* out, int64_t rows, int64_t C,
                                   const float* mean, const float* scale, const float* shift, float slope) {
  const __m256 vk = _mm256_set1_ps(slope);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    for (int64_t c = 0; c < C; c += 8) {
      const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + o + c), _mm256_loadu_ps(mean + c));
      __m256 y = leaky8(_mm256_fmadd_ps(v, _mm256_loadu_ps(scale + c), _mm256_loadu_ps(shift + c)), vk);
      if (res) y = _mm256_add_ps(y, _mm256_loadu_ps(res + o + c));
      _mm256_stream_ps(out + o + c, y);
    }
  }
  _mm_sfence();
}

// dx = scale * (dy - mean_dy - xhat * mean_dy_xhat), streamed (see plane_normalize_stream).
inline void plane_grad_input_stream(const float* g, const float* x, float* dx, int64_t n, float mean, float rstd,
                                    float scale, float shift, float slope, float mean_dy, float mean_dy_xhat) {
  auto one = [&](int64_t i) {
    const float centred = x[i] - mean;
    const float dy = g[i] * leaky_grad(centred * scale + shift, slope);
    dx[i] = scale * (dy - mean_dy - centred * rstd * mean_dy_xhat);
  };
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dx + i) % 32) != 0; ++i) one(i);
  const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd * mean_dy_xhat), vs = _mm256_set1_ps(scale),
               vb = _mm256_set1_ps(shift), vk = _mm256_set1_ps(slope), vd = _mm256_set1_ps(mean_dy),
               one8 = _mm256_set1_ps(1.f);
  for (; i + 8 <= n; i += 8) {
    const __m256 centred = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    const __m256 y = _mm256_fmadd_ps(centred, vs, vb);
    const __m256 d = _mm256_blendv_ps(vk, one8, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
    const __m256 dy = _mm256_mul_ps(_mm256_loadu_ps(g + i), d);
    const __m256 v = _mm256_sub_ps(_mm256_sub_ps(dy, vd), _mm256_mul_ps(centred, vr));
    _mm256_stream_ps(dx + i, _mm256_mul_ps(vs, v));
  }
  for (; i < n; ++i) one(i);
  _mm_sfence();
}
#endif

// Streaming pays off only for outputs well beyond the last-level cache.
constexpr int64_t kStreamBytes = 16 << 20;

template <typename T>
bool stream_output(const T* out, int64_t total) {
  return std::is_same_v<T, float> && total * static_cast<int64_t>(sizeof(T)) >= kStreamBytes &&
         reinterpret_cast<uintptr_t>(out) % 32 == 0;
}

// dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
template <typename T, typename A>
void plane_grad_input(const T* g, const T* x, T* dx, int64_t n, A mean, A rstd, A scale, A shift, A slope,
                      A mean_dy, A mean_dy_xhat) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const A centred = to_acc<A>(x[i]) - mean;
    const A dy = to_acc<A>(g[i]) * leaky_grad(centred * scale + shift, slope);
    dx[i] = from_acc<T>(scale * (dy - mean_dy - centred * rstd * mean_dy_xhat));
  }
}

// ---- channels-last: a block of `rows` rows of C channels, contiguous --------------------------

// Per-channel mean and M2 of a block (two passes; the block is sized to stay in L2).
template <typename T, typename A>
void block_moments(const T* x, int64_t rows, int64_t C, A* mean, A* m2) {
  for (int64_t c = 0; c < C; ++c) mean[c] = 0, m2[c] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = x + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) mean[c] += to_acc<A>(p[c]);
  }
  const A inv = A(1) / static_cast<A>(rows);
  for (int64_t c = 0; c < C; ++c) mean[c] *= inv;
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = x + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const A d = to_acc<A>(p[c]) - mean[c];
      m2[c] += d * d;
    }
  }
}

// Channel c's moments over `total` rows cut into blocks of `rows`, from the blocks' partials,
// merged in block order with Chan's formula (deterministic, whatever the thread count).
template <typename A>
Moments merge_block_moments(const A* part_mean, const A* part_m2, int64_t blocks, int64_t rows, int64_t total,
                            int64_t C, int64_t c) {
  Moments m;
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t nr = std::min(rows, total - k * rows);
    m.merge(static_cast<double>(nr), static_cast<double>(part_mean[k * C + c]),
            static_cast<double>(part_m2[k * C + c]));
  }
  return m;
}

// Rows per channels-last block: ~64 KiB of input, so the second pass reads from L2.
template <typename T>
int64_t block_rows(int64_t C, int64_t S) {
  const int64_t rows = std::max<int64_t>(1, (64 * 1024) / (C * static_cast<int64_t>(sizeof(T))));
  return std::min<int64_t>({rows, 1024, S});
}

