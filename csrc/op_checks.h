// Validation run by every launcher before any kernel touches memory. Each check throws
// std::invalid_argument (Python: ValueError) with a message naming the tensor and the problem.
#pragma once

#include <string>

#include "common.h"
#include "decode_attention.h"
#include "int8_linear.h"
#include "preprocess_frame.h"
#include "region_pool.h"
#include "rms_norm.h"
#include "rope_kv_write.h"

namespace rgpt {

DType parse_dtype(const std::string& name);  // "f32" | "f16" | "bf16" | "u8" | "i8" | "i64"
const char* dtype_name(DType t);
int64_t dtype_size(DType t);

// rank, non-negative strides, no int64 overflow, every reachable element inside [0, extent); outputs must be
// row-major contiguous (so no two outputs alias).
void check_view(const View& v, const char* name, int ndim, bool output);

void check_region_pool(const RegionPoolArgs& a);
void check_int8_linear(const Int8LinearArgs& a);
void check_preprocess_frame(const PreprocessFrameArgs& a);
void check_preprocess_masks(const PreprocessMasksArgs& a);
void check_rms_norm(const RmsNormArgs& a);
void check_rope_kv_write(const RopeKvWriteArgs& a);
void check_decode_attention(const DecodeAttentionArgs& a);

}  // namespace rgpt
