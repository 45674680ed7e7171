// CPU twin of kernels/int8_linear.cu: x rows converted to fp32 once; then, in parallel over output columns,
// each int8 weight row is read once for up to 8 rows of x: 8 weights at a time are widened to fp32 in a
// vector register and multiplied into accumulator vectors per row. An AVX2+FMA body (intrinsics) and a
// portable one; the AVX2 one is picked once at load time when the CPU reports AVX2 and FMA.
#include <algorithm>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_dispatch.h"
#include "int8_linear.h"

namespace rgpt {

namespace {

typedef float V8 __attribute__((vector_size(32)));

// Portable body: sums[r] = sum_c x[r * k + c] * w[c] for R rows of x (row stride k). Weights are widened
// 64 at a time into a small buffer (a plain loop the compiler vectorises for the baseline ISA and NEON), then
// multiplied in 8-lane vectors (two accumulators per row for up to 4 rows).
template <int R>
void rows_dot_base(const float* x, int64_t k, const int8_t* w, float* sums) {
  constexpr int kChunk = 64;
  V8 acc[2][R];
  for (int r = 0; r < R; ++r) acc[0][r] = acc[1][r] = V8{};
  float wf[kChunk];
  int64_t c = 0;
  for (; c + kChunk <= k; c += kChunk) {
    for (int i = 0; i < kChunk; ++i) wf[i] = static_cast<float>(w[c + i]);
    for (int i = 0; i < kChunk; i += 16) {
      V8 w0, w1;
      memcpy(&w0, wf + i, sizeof(w0));
      memcpy(&w1, wf + i + 8, sizeof(w1));
      for (int r = 0; r < R; ++r) {
        V8 x0, x1;
        memcpy(&x0, x + r * k + c + i, sizeof(x0));
        memcpy(&x1, x + r * k + c + i + 8, sizeof(x1));
        acc[0][r] += w0 * x0;
        acc[R <= 4 ? 1 : 0][r] += w1 * x1;  // two chains per row while they fit in registers
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const V8 v = acc[0][r] + acc[1][r];
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += v[l];
    for (int64_t t = c; t < k; ++t) s += x[r * k + t] * static_cast<float>(w[t]);
    sums[r] = s;
  }
}

#if defined(__x86_64__)
// AVX2+FMA: 8 weights widened with one sign-extend and one convert; U independent accumulators per row (so a
// single row is not one long chain of dependent FMAs).
template <int R, int U>
__attribute__((target("avx2,fma"))) void rows_dot_avx2(const float* x, int64_t k, const int8_t* w,
                                                       float* sums) {
  __m256 acc[U][R];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r) acc[u][r] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 * U <= k; c += 8 * U) {
    for (int u = 0; u < U; ++u) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + c + 8 * u));
      const __m256 wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
      for (int r = 0; r < R; ++r)
        acc[u][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * k + c + 8 * u), acc[u][r]);
    }
  }
  for (; c + 8 <= k; c += 8) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + c));
    const __m256 wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    for (int r = 0; r < R; ++r) acc[0][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * k + c), acc[0][r]);
  }
  for (int r = 0; r < R; ++r) {
    __m256 v = acc[0][r];
    for (int u = 1; u < U; ++u) v = _mm256_add_ps(v, acc[u][r]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += lanes[l];
    for (int64_t t = c; t < k; ++t) s += x[r * k + t] * static_cast<float>(w[t]);
    sums[r] = s;
  }
}
#endif

using RowsDot = void (*)(const float*, int64_t, const int8_t*, float*);

// Per row count 1..8: the AVX2 body when the CPU has AVX2 and FMA, else the portable one.
struct RowsDotTable {
  RowsDot fn[9];
  RowsDotTable() {
    fn[0] = nullptr;
    fn[1] = rows_dot_base<1>, fn[2] = rows_dot_base<2>, fn[3] = rows_dot_base<3>, fn[4] = rows_dot_base<4>;
    fn[5] = rows_dot_base<5>, fn[6] = rows_dot_base<6>, fn[7] = rows_dot_base<7>, fn[8] = rows_dot_base<8>;
#if defined(__x86_64__)
    if (cpu_has_avx2(true)) {
      fn[1] = rows_dot_avx2<1, 4>, fn[2] = rows_dot_avx2<2, 2>, fn[3] = rows_dot_avx2<3, 2>;
      fn[4] = rows_dot_avx2<4, 1>, fn[5] = rows_dot_avx2<5, 1>, fn[6] = rows_dot_avx2<6, 1>;
      fn[7] = rows_dot_avx2<7, 1>, fn[8] = rows_dot_avx2<8, 1>;
    }
#endif
  }
};

const RowsDotTable rows_dot;

constexpr int kRows = 8;

}  // namespace

Status int8_linear_cpu(const Int8LinearArgs& a) {
  const int64_t m = a.x.shape[0], k = a.x.shape[1], n = a.q.shape[0];
  std::vector<float> xf(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c) xf[r * k + c] = load_as_float(a.x.data, a.x.offset(r, c), a.x.dtype);
  const int8_t* q = static_cast<const int8_t*>(a.q.data);
  const float* scale = static_cast<const float*>(a.scale.data);
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nthreads) if (n * k * m > 65536)
#endif
  for (int64_t col = 0; col < n; ++col) {
    const int8_t* w = q + a.q.offset(col, 0);
    const float s = scale[a.scale.offset(col)];
    float sums[kRows];
    for (int64_t r0 = 0; r0 < m; r0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, m - r0));
      rows_dot.fn[rows](xf.data() + r0 * k, k, w, sums);
      for (int r = 0; r < rows; ++r)
        store_from_float(a.y.data, a.y.offset(r0 + r, col), a.y.dtype, sums[r] * s);
    }
  }
  return kOk;
}

}  // namespace rgpt
