// CUDA twin of kernels/rope_kv_write_cpu.cpp: one thread per (row, head, rotation pair), the heads being the
// H query heads, then the Hkv key heads, then the Hkv value heads (a plain copy of the pair into the cache).
#include <cuda_runtime.h>

#include "cuda_status.h"
#include "rope_kv_write.h"

namespace rgpt {

namespace {

__global__ void rope_kv_write_kernel(RopeKvWriteArgs a) {
  const int64_t heads = a.q.shape[1], kv_heads = a.k.shape[1], half = a.q.shape[2] / 2;
  const int64_t per_row = (heads + 2 * kv_heads) * half;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.q.shape[0] * per_row) return;
  const int64_t b = idx / per_row, rest = idx % per_row, h = rest / half, i = rest % half;
  const int64_t p = static_cast<const int64_t*>(a.pos.data)[a.pos.offset(b)];
  const bool slot_ok = p >= 0 && p < a.k_cache.shape[2];
  const DType t = a.q.dtype, ct = a.k_cache.dtype;
  if (h >= heads + kv_heads) {  // value: copy the pair
    if (!slot_ok) return;
    const int64_t kh = h - heads - kv_heads;
    for (int64_t j = i; j < 2 * half; j += half)
      store_from_float(a.v_cache.data, a.v_cache.offset(b, kh, p, j), ct,
                       load_as_float(a.v.data, a.v.offset(b, kh, j), t));
    return;
  }
  const float angle =
      static_cast<float>(p) * static_cast<const float*>(a.inv_freq.data)[a.inv_freq.offset(i)];
  float s, c;
  sincosf(angle, &s, &c);
  c = round_to(c, t);
  s = round_to(s, t);
  const bool is_q = h < heads;
  const View& x = is_q ? a.q : a.k;
  const int64_t xh = is_q ? h : h - heads;
  const float x1 = load_as_float(x.data, x.offset(b, xh, i), t);
  const float x2 = load_as_float(x.data, x.offset(b, xh, i + half), t);
  const float r1 = round_to(x1 * c - x2 * s, t), r2 = round_to(x2 * c + x1 * s, t);
  if (is_q) {
    store_from_float(a.q_out.data, a.q_out.offset(b, xh, i), t, r1);
    store_from_float(a.q_out.data, a.q_out.offset(b, xh, i + half), t, r2);
  } else if (slot_ok) {
    store_from_float(a.k_cache.data, a.k_cache.offset(b, xh, p, i), ct, r1);
    store_from_float(a.k_cache.data, a.k_cache.offset(b, xh, p, i + half), ct, r2);
  }
}

}  // namespace

Status rope_kv_write_cuda(const RopeKvWriteArgs& a, void* stream, int* cuda_error) {
  const int64_t total = a.q.shape[0] * (a.q.shape[1] + 2 * a.k.shape[1]) * (a.q.shape[2] / 2);
  if (total == 0) return kOk;
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>((total + kThreads - 1) / kThreads);
  rope_kv_write_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return cuda_status(cudaGetLastError(), cuda_error);
}

}  // namespace rgpt
