// decode_attention: one query token per row against that row's KV cache, grouped-query aware.
//
//   q       [B, H, D]          f32 | f16 | bf16, any non-negative strides
//   k_cache [Bc, Hkv, S, D]    f32 | f16 | bf16, any non-negative strides; v_cache: same dtype and shape
//   pos     [B]                i64: row b attends to cache slots 0..pos[b] (its causal window)
//   out     [B, H, D]          out, q's dtype, contiguous
//   shared  [B]                i64, optional (has_shared = 0: unused): slots [0, shared[b]) of row b are read
//                              from cache row 0 instead. describe_many's rows share one prefix (the template
//                              head and the image): reading it from one row lets the rows' blocks hit the
//                              same cache lines (L2 on a GPU) instead of B copies. The caller guarantees that
//                              those slots of row b equal row 0's.
// out[b, h] = softmax_s(scale * q[b, h] . k[b, h / G, s]) v[b, h / G, s] over s <= pos[b], G = H / Hkv (query
// head h reads kv head h / G, the Hugging Face mapping). fp32 scores, softmax and accumulation.
// Only slots 0..pos[b] are read: the cost follows the context, not the cache size, and no shape depends on
// the positions, so the step can be captured in a CUDA graph.
// The CUDA twin splits the window into chunks of kDecodeChunk slots (one block per chunk, row and kv head;
// the G query heads of a kv head share each K/V read) and merges the chunks' partial softmaxes in a second
// kernel. A position outside [0, S): the CPU twin returns kOutOfBounds; the CUDA twin writes zeros.
// Limits (both twins): D <= 256, G <= 16.
#pragma once

#include "common.h"

namespace rgpt {

constexpr int kDecodeChunk = 64;
constexpr int kDecodeMaxHeadDim = 256;
constexpr int kDecodeMaxGroup = 16;

// Row b reads slots [0, decode_shared_end(...)) from cache row 0 (see `shared` above).
RGPT_HD int64_t decode_shared_end(const View& shared, int32_t has_shared, int64_t b) {
  return has_shared ? static_cast<const int64_t*>(shared.data)[shared.offset(b)] : 0;
}

struct DecodeAttentionArgs {
  View q;
  View k_cache;
  View v_cache;
  View pos;
  View out;
  View shared;
  int32_t has_shared = 0;
  float scale = 1.0f;
  int32_t threads = 0;  // CPU only
};

Status decode_attention_cpu(const DecodeAttentionArgs& a);
// `workspace`: device memory of at least decode_attention_workspace_bytes(B, H, S, D) bytes.
int64_t decode_attention_workspace_bytes(int64_t b, int64_t h, int64_t s, int64_t d);
Status decode_attention_cuda(const DecodeAttentionArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream, int* cuda_error);

}  // namespace rgpt
