// CPU twin of kernels/decode_attention.cu: one (row, query head) per task, two-pass softmax in fp32.
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "decode_attention.h"

namespace rgpt {

Status decode_attention_cpu(const DecodeAttentionArgs& a) {
  const int64_t batch = a.q.shape[0], heads = a.q.shape[1], d = a.q.shape[2];
  const int64_t group = heads / a.k_cache.shape[1], slots = a.k_cache.shape[2];
  const int64_t* pos = static_cast<const int64_t*>(a.pos.data);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t p = pos[a.pos.offset(b)];
    if (p < 0 || p >= slots) return kOutOfBounds;
  }
  const DType ct = a.k_cache.dtype;
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) num_threads(nthreads) if (batch * heads > 1)
#endif
  for (int64_t task = 0; task < batch * heads; ++task) {
    const int64_t b = task / heads, h = task % heads, kvh = h / group;
    const int64_t n = pos[a.pos.offset(b)] + 1;
    std::vector<float> q(static_cast<size_t>(d)), acc(static_cast<size_t>(d), 0.0f),
        p(static_cast<size_t>(n));
    for (int64_t c = 0; c < d; ++c) q[c] = load_as_float(a.q.data, a.q.offset(b, h, c), a.q.dtype) * a.scale;
    float m = -INFINITY;
    for (int64_t s = 0; s < n; ++s) {
      float dot = 0.0f;
      for (int64_t c = 0; c < d; ++c)
        dot += q[c] * load_as_float(a.k_cache.data, a.k_cache.offset(b, kvh, s, c), ct);
      p[s] = dot;
      m = dot > m ? dot : m;
    }
    float l = 0.0f;
    for (int64_t s = 0; s < n; ++s) {
      p[s] = std::exp(p[s] - m);
      l += p[s];
    }
    for (int64_t s = 0; s < n; ++s)
      for (int64_t c = 0; c < d; ++c)
        acc[c] += p[s] * load_as_float(a.v_cache.data, a.v_cache.offset(b, kvh, s, c), ct);
    for (int64_t c = 0; c < d; ++c)
      store_from_float(a.out.data, a.out.offset(b, h, c), a.out.dtype, acc[c] / l);
  }
  return kOk;
}

}  // namespace rgpt
