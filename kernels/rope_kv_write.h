// rope_kv_write: the rotary embedding of one decode step's queries and keys, fused with the KV-cache write.
//
//   q        [B, H, D]        f32 | f16 | bf16, any non-negative strides (views of the fused qkv projection)
//   k, v     [B, Hkv, D]      q's dtype, any non-negative strides
//   pos      [B]              i64 absolute positions
//   inv_freq [D/2]            f32 rotary inverse frequencies (rgpt_rt.model.llama.rope_inv_freq)
//   q_out    [B, H, D]        out, q's dtype, contiguous: q rotated at pos[b]
//   k_cache, v_cache [Bc, Hkv, S, D]  in/out, one dtype (f32 | f16 | bf16), contiguous, B <= Bc:
//                             k_cache[b, :, pos[b]] = k rotated at pos[b]; v_cache[b, :, pos[b]] = v
// Rotate-half convention: for i < D/2, (x_i, x_{i+D/2}) -> (x_i c - x_{i+D/2} s, x_{i+D/2} c + x_i s) with
// c, s = cos, sin(float(pos) * inv_freq[i]) computed in fp32 and rounded to q's dtype (as the reference
// model does); each output is computed in fp32 and rounded once.
// A position outside [0, S): the CPU twin returns kOutOfBounds before writing anything; the CUDA twin (which
// cannot report without a host sync) writes no cache slot for that row.
#pragma once

#include "common.h"

namespace rgpt {

struct RopeKvWriteArgs {
  View q;
  View k;
  View v;
  View pos;
  View inv_freq;
  View q_out;
  View k_cache;
  View v_cache;
  int32_t threads = 0;  // CPU only
};

Status rope_kv_write_cpu(const RopeKvWriteArgs& a);
Status rope_kv_write_cuda(const RopeKvWriteArgs& a, void* stream, int* cuda_error);

}  // namespace rgpt
