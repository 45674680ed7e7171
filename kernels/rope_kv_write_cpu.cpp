// CPU twin of kernels/rope_kv_write.cu. Every position is checked before anything is written.
#include <cmath>
#include <initializer_list>

#include "rope_kv_write.h"

namespace rgpt {

namespace {

// Rotate the pair (i, i + D/2) of head `h` of row `b` of `x` and store it into `out` at (o0, o1).
inline void rotate_pair(const View& x, int64_t b, int64_t h, int64_t i, int64_t half, float c, float s,
                        void* out, DType out_t, DType round_t, int64_t o0, int64_t o1) {
  const float x1 = load_as_float(x.data, x.offset(b, h, i), x.dtype);
  const float x2 = load_as_float(x.data, x.offset(b, h, i + half), x.dtype);
  store_from_float(out, o0, out_t, round_to(x1 * c - x2 * s, round_t));
  store_from_float(out, o1, out_t, round_to(x2 * c + x1 * s, round_t));
}

}  // namespace

Status rope_kv_write_cpu(const RopeKvWriteArgs& a) {
  const int64_t batch = a.q.shape[0], heads = a.q.shape[1], d = a.q.shape[2], half = d / 2;
  const int64_t kv_heads = a.k.shape[1], slots = a.k_cache.shape[2];
  const int64_t* pos = static_cast<const int64_t*>(a.pos.data);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t p = pos[a.pos.offset(b)];
    if (p < 0 || p >= slots) return kOutOfBounds;
  }
  const DType t = a.q.dtype, ct = a.k_cache.dtype;
  const float* inv_freq = static_cast<const float*>(a.inv_freq.data);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t p = pos[a.pos.offset(b)];
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[a.inv_freq.offset(i)];
      const float c = round_to(std::cos(angle), t), s = round_to(std::sin(angle), t);
      for (int64_t h = 0; h < heads; ++h)
        rotate_pair(a.q, b, h, i, half, c, s, a.q_out.data, t, t, a.q_out.offset(b, h, i),
                    a.q_out.offset(b, h, i + half));
      for (int64_t h = 0; h < kv_heads; ++h) {
        rotate_pair(a.k, b, h, i, half, c, s, a.k_cache.data, ct, t, a.k_cache.offset(b, h, p, i),
                    a.k_cache.offset(b, h, p, i + half));
        for (int64_t j : {i, i + half})
          store_from_float(a.v_cache.data, a.v_cache.offset(b, h, p, j), ct,
                           load_as_float(a.v.data, a.v.offset(b, h, j), t));
      }
    }
  }
  return kOk;
}

}  // namespace rgpt
