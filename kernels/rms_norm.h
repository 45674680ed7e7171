// rms_norm: the decoder's RMSNorm, optionally fused with the residual add in front of it (one read of the
// residual stream per norm in the decode step).
//
//   x        [M, D]  f32 | f16 | bf16, unit stride along D, any row stride
//   residual [M, D]  optional (add = 0: unused), x's dtype, unit stride along D
//   weight   [D]     x's dtype
//   y        [M, D]  out, x's dtype, contiguous
//   sum      [M, D]  out, optional (has_sum = 0: not written), x's dtype, contiguous
// h = x + residual rounded to the dtype (or x); sum = h;
// y = weight * round(h / sqrt(mean(h^2) + eps)), the mean in fp32 (fp64 on the CPU), each product rounded to
// the dtype: the rounding steps of the reference model's RMSNorm.
// CUDA twin limit: D <= 8192 (each thread keeps its elements in registers); larger D returns kTooLarge.
#pragma once

#include "common.h"

namespace rgpt {

struct RmsNormArgs {
  View x;
  View residual;
  View weight;
  View y;
  View sum;
  int32_t add = 0;
  int32_t has_sum = 0;
  float eps = 1e-6f;
  int32_t threads = 0;  // CPU only: 0 = OpenMP default
};

Status rms_norm_cpu(const RmsNormArgs& a);
// `stream` is a cudaStream_t; on kCudaError *cuda_error holds the cudaError_t.
Status rms_norm_cuda(const RmsNormArgs& a, void* stream, int* cuda_error);

}  // namespace rgpt
