// CPU twin of kernels/decode_attention.cu: one (row, kv head) per task, so each K and V row is read once for
// the G query heads that share it; rows are converted to fp32 once (a plain copy for contiguous fp32 caches)
// and the dot products and P V updates run over contiguous fp32 arrays with 8 independent lanes, which the
// compiler vectorises. Two-pass softmax in fp32.
#include <cmath>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "decode_attention.h"

namespace rgpt {

namespace {

// Row (b, h, s, :) of a cache as fp32 in `out` (D elements).
inline const float* cache_row(const View& c, int64_t b, int64_t h, int64_t s, int64_t d, float* out) {
  const int64_t base = c.offset(b, h, s, 0);
  if (c.dtype == DType::kF32 && (c.stride[3] == 1 || d == 1)) return static_cast<const float*>(c.data) + base;
  for (int64_t i = 0; i < d; ++i) out[i] = load_as_float(c.data, base + i * c.stride[3], c.dtype);
  return out;
}

inline float dot(const float* a, const float* b, int64_t d) {
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += a[i + l] * b[i + l];
  float acc = 0.0f;
  for (int l = 0; l < 8; ++l) acc += lanes[l];
  for (; i < d; ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

Status decode_attention_cpu(const DecodeAttentionArgs& a) {
  const int64_t batch = a.q.shape[0], heads = a.q.shape[1], d = a.q.shape[2];
  const int64_t kv_heads = a.k_cache.shape[1], group = heads / kv_heads, slots = a.k_cache.shape[2];
  const int64_t* pos = static_cast<const int64_t*>(a.pos.data);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t p = pos[a.pos.offset(b)];
    if (p < 0 || p >= slots) return kOutOfBounds;
  }
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) num_threads(nthreads) if (batch * kv_heads > 1)
#endif
  for (int64_t task = 0; task < batch * kv_heads; ++task) {
    const int64_t b = task / kv_heads, kvh = task % kv_heads;
    const int64_t n = pos[a.pos.offset(b)] + 1;
    const int64_t shared_end = decode_shared_end(a.shared, a.has_shared, b);
    std::vector<float> q(static_cast<size_t>(group * d)), acc(static_cast<size_t>(group * d), 0.0f);
    std::vector<float> p(static_cast<size_t>(group * n)), row(static_cast<size_t>(d));
    for (int64_t g = 0; g < group; ++g)
      for (int64_t c = 0; c < d; ++c)
        q[g * d + c] = load_as_float(a.q.data, a.q.offset(b, kvh * group + g, c), a.q.dtype) * a.scale;
    for (int64_t s = 0; s < n; ++s) {
      const float* k = cache_row(a.k_cache, s < shared_end ? 0 : b, kvh, s, d, row.data());
      for (int64_t g = 0; g < group; ++g) p[g * n + s] = dot(q.data() + g * d, k, d);
    }
    for (int64_t g = 0; g < group; ++g) {
      float* pg = p.data() + g * n;
      float m = -INFINITY;
      for (int64_t s = 0; s < n; ++s) m = pg[s] > m ? pg[s] : m;
      float l = 0.0f;
      for (int64_t s = 0; s < n; ++s) {
        pg[s] = std::exp(pg[s] - m);
        l += pg[s];
      }
      for (int64_t s = 0; s < n; ++s) pg[s] /= l;
    }
    for (int64_t s = 0; s < n; ++s) {
      const float* v = cache_row(a.v_cache, s < shared_end ? 0 : b, kvh, s, d, row.data());
      for (int64_t g = 0; g < group; ++g) {
        const float w = p[g * n + s];
        float* ag = acc.data() + g * d;
        for (int64_t c = 0; c < d; ++c) ag[c] += w * v[c];
      }
    }
    for (int64_t g = 0; g < group; ++g)
      for (int64_t c = 0; c < d; ++c)
        store_from_float(a.out.data, a.out.offset(b, kvh * group + g, c), a.out.dtype, acc[g * d + c]);
  }
  return kOk;
}

}  // namespace rgpt
