// Gradient-penalty kernels over a batch of N samples of S elements each (sample n occupies
// [n*S, (n+1)*S) in memory: contiguous and channels-last tensors alike).
// Included twice by gradient_penalty.cpp: once compiled for AVX2+FMA, once for the baseline ISA.
// T is the storage type, A the accumulation type (float, or double for double inputs).
// Reductions are split into chunks of a fixed size whose partial sums go to a staging buffer
// summed in a fixed order afterwards: the result does not depend on the number of threads.

static constexpr int64_t kGpChunk = 16384;  // elements per partial sum / parallel task

inline int64_t gp_chunks(int64_t S) { return (S + kGpChunk - 1) / kGpChunk; }

// Runs body(n, chunk, offset, len) for every (sample, chunk) in parallel.
template <typename F>
void for_each_chunk(int64_t N, int64_t S, const F& body) {
  const int64_t chunks = gp_chunks(S);
  at::parallel_for(0, N * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, k = task % chunks;
      const int64_t i0 = k * kGpChunk;
      body(n, k, n * S + i0, std::min(kGpChunk, S - i0));
    }
  });
}

// out = alpha[n] * real + (1 - alpha[n]) * fake
template <typename T, typename A>
void interpolate(const T* real, const T* fake, const A* alpha, T* out, int64_t N, int64_t S) {
  for_each_chunk(N, S, [&](int64_t n, int64_t, int64_t off, int64_t len) {
    const A a = alpha[n], b = A(1) - a;
    const T* r = real + off;
    const T* f = fake + off;
    T* o = out + off;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) o[i] = static_cast<T>(a * static_cast<A>(r[i]) + b * static_cast<A>(f[i]));
  });
}

// dreal = g * alpha[n], dfake = g * (1 - alpha[n]) (either may be nullptr: not needed);
// partial[n * chunks + k] = sum over chunk k of g * (real - fake) when partial != nullptr.
template <typename T, typename A>
void interpolate_backward(const T* g, const T* real, const T* fake, const A* alpha, T* dreal, T* dfake,
                          double* partial, int64_t N, int64_t S) {
  const int64_t chunks = gp_chunks(S);
  for_each_chunk(N, S, [&](int64_t n, int64_t k, int64_t off, int64_t len) {
    const A a = alpha[n], b = A(1) - a;
    const T* gp = g + off;
    if (dreal != nullptr) {
      T* d = dreal + off;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) d[i] = static_cast<T>(static_cast<A>(gp[i]) * a);
    }
    if (dfake != nullptr) {
      T* d = dfake + off;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) d[i] = static_cast<T>(static_cast<A>(gp[i]) * b);
    }
    if (partial != nullptr) {
      const T* r = real + off;
      const T* f = fake + off;
      A sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < len; ++i) sum += static_cast<A>(gp[i]) * (static_cast<A>(r[i]) - static_cast<A>(f[i]));
      partial[n * chunks + k] = static_cast<double>(sum);
    }
  });
}

// partial[n * chunks + k] = sum over chunk k of sample n of g^2
template <typename T, typename A>
void sum_squares(const T* g, double* partial, int64_t N, int64_t S) {
  const int64_t chunks = gp_chunks(S);
  for_each_chunk(N, S, [&](int64_t n, int64_t k, int64_t off, int64_t len) {
    const T* p = g + off;
    A sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < len; ++i) {
      const A v = static_cast<A>(p[i]);
      sum += v * v;
    }
    partial[n * chunks + k] = static_cast<double>(sum);
  });
}

// dg = g * scale[n]
template <typename T, typename A>
void scale_samples(const T* g, const A* scale, T* dg, int64_t N, int64_t S) {
  for_each_chunk(N, S, [&](int64_t n, int64_t, int64_t off, int64_t len) {
    const A s = scale[n];
    const T* p = g + off;
    T* d = dg + off;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) d[i] = static_cast<T>(static_cast<A>(p[i]) * s);
  });
}
