// CUDA twin of kernels/decode_attention_cpu.cpp (split-K "flash decoding").
//
// 1. partial: grid (chunks, Hkv, B), 4 warps. The block scores the slots [chunk * 64, chunk * 64 + 64) of
//    its row's window against the G query heads of its kv head (q staged in shared memory, each K row read
//    once for all G heads: a warp per slot, lanes along D), takes the chunk's softmax (max m, sum l) and
//    accumulates P V with threads along (head, D). It writes (acc[D], m, l) per query head to the workspace;
//    chunks past pos[b] exit at once.
// 2. combine: one block per (row, query head) merges its chunks' partials: out = sum acc_c e^(m_c - M) /
//    sum l_c e^(m_c - M).
#include <cuda_runtime.h>

#include <cmath>

#include "cuda_status.h"
#include "decode_attention.h"

namespace rgpt {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kLaneDims = kDecodeMaxHeadDim / 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ bool window(const DecodeAttentionArgs& a, int64_t b, int64_t* p) {
  *p = static_cast<const int64_t*>(a.pos.data)[a.pos.offset(b)];
  return *p >= 0 && *p < a.k_cache.shape[2];
}

__global__ void partial_kernel(DecodeAttentionArgs a, float* ws, int64_t chunks) {
  const int64_t chunk = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int64_t heads = a.q.shape[1], d = a.q.shape[2], group = heads / a.k_cache.shape[1];
  const int64_t start = chunk * kDecodeChunk;
  int64_t p;
  if (!window(a, b, &p) || start > p) return;  // the combine step reads only chunks 0..p / kDecodeChunk
  const int64_t n = (p + 1 - start) < kDecodeChunk ? (p + 1 - start) : kDecodeChunk;
  const DType ct = a.k_cache.dtype;
  const int64_t shared_end = decode_shared_end(a.shared, a.has_shared, b);
  __shared__ float qs[kDecodeMaxGroup * kDecodeMaxHeadDim];
  __shared__ float scores[kDecodeMaxGroup * kDecodeChunk];
  __shared__ float stat_m[kDecodeMaxGroup], stat_l[kDecodeMaxGroup];
  for (int64_t i = threadIdx.x; i < group * d; i += kThreads)
    qs[i] = load_as_float(a.q.data, a.q.offset(b, kvh * group + i / d, i % d), a.q.dtype) * a.scale;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t j = warp; j < n; j += kWarps) {
    const int64_t src = start + j < shared_end ? 0 : b;
    float kr[kLaneDims];
#pragma unroll
    for (int i = 0; i < kLaneDims; ++i) {
      const int64_t c = lane + 32 * i;
      kr[i] = c < d ? load_as_float(a.k_cache.data, a.k_cache.offset(src, kvh, start + j, c), ct) : 0.0f;
    }
    for (int64_t g = 0; g < group; ++g) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kLaneDims; ++i) {
        const int64_t c = lane + 32 * i;
        if (c < d) dot += kr[i] * qs[g * d + c];
      }
      dot = warp_sum(dot);
      if (lane == 0) scores[g * kDecodeChunk + j] = dot;
    }
  }
  __syncthreads();
  for (int64_t g = warp; g < group; g += kWarps) {
    float m = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, scores[g * kDecodeChunk + j]);
    m = warp_max(m);
    float l = 0.0f;
    for (int64_t j = lane; j < n; j += 32) {
      const float e = expf(scores[g * kDecodeChunk + j] - m);
      scores[g * kDecodeChunk + j] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) {
      stat_m[g] = m;
      stat_l[g] = l;
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < group * d; i += kThreads) {
    const int64_t g = i / d, c = i % d;
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j)
      acc += scores[g * kDecodeChunk + j] *
             load_as_float(a.v_cache.data,
                           a.v_cache.offset(start + j < shared_end ? 0 : b, kvh, start + j, c), ct);
    float* part = ws + ((b * heads + kvh * group + g) * chunks + chunk) * (d + 2);
    part[c] = acc;
    if (c == 0) {
      part[d] = stat_m[g];
      part[d + 1] = stat_l[g];
    }
  }
}

__global__ void combine_kernel(DecodeAttentionArgs a, const float* ws, int64_t chunks) {
  const int64_t heads = a.q.shape[1], d = a.q.shape[2];
  const int64_t b = blockIdx.x / heads, h = blockIdx.x % heads;
  int64_t p;
  if (!window(a, b, &p)) {
    for (int64_t c = threadIdx.x; c < d; c += kThreads)
      store_from_float(a.out.data, a.out.offset(b, h, c), a.out.dtype, 0.0f);
    return;
  }
  const int64_t used = p / kDecodeChunk + 1;
  const float* base = ws + (b * heads + h) * chunks * (d + 2);
  float big = -INFINITY;
  for (int64_t k = 0; k < used; ++k) big = fmaxf(big, base[k * (d + 2) + d]);
  float total = 0.0f;
  for (int64_t k = 0; k < used; ++k) total += base[k * (d + 2) + d + 1] * expf(base[k * (d + 2) + d] - big);
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    float acc = 0.0f;
    for (int64_t k = 0; k < used; ++k) acc += base[k * (d + 2) + c] * expf(base[k * (d + 2) + d] - big);
    store_from_float(a.out.data, a.out.offset(b, h, c), a.out.dtype, acc / total);
  }
}

int64_t chunk_count(int64_t s) { return (s + kDecodeChunk - 1) / kDecodeChunk; }

}  // namespace

int64_t decode_attention_workspace_bytes(int64_t b, int64_t h, int64_t s, int64_t d) {
  return b * h * chunk_count(s) * (d + 2) * static_cast<int64_t>(sizeof(float));
}

Status decode_attention_cuda(const DecodeAttentionArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream, int* cuda_error) {
  const int64_t batch = a.q.shape[0], heads = a.q.shape[1], d = a.q.shape[2];
  const int64_t kv_heads = a.k_cache.shape[1], slots = a.k_cache.shape[2];
  if (batch == 0) return kOk;
  if (workspace == nullptr || workspace_bytes < decode_attention_workspace_bytes(batch, heads, slots, d))
    return kBadArgument;
  const int64_t chunks = chunk_count(slots);
  if (chunks > 65535 || kv_heads > 65535 || batch > 65535) return kTooLarge;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  float* ws = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(kv_heads),
                  static_cast<unsigned>(batch));
  partial_kernel<<<grid, kThreads, 0, s>>>(a, ws, chunks);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    combine_kernel<<<static_cast<unsigned>(batch * heads), kThreads, 0, s>>>(a, ws, chunks);
    err = cudaGetLastError();
  }
  return cuda_status(err, cuda_error);
}

}  // namespace rgpt
