// int8_linear: weight-only int8 matrix product, the decode-time linear layer.
//
//   x     [M, K]  f32 | f16 | bf16, unit stride along K, any row stride
//   q     [N, K]  int8, row-major contiguous (per-output-channel quantised weight)
//   scale [N]     f32
//   y     [M, N]  x's dtype, row-major contiguous:  y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]
// fp32 accumulation. The CUDA kernel is written for decode (M = 1..8 rows, weight-bandwidth bound): one warp
// per output column streams that column's int8 row with 16-byte loads; larger M is processed 8 rows at a
// time.
#pragma once

#include "common.h"

namespace rgpt {

struct Int8LinearArgs {
  View x;
  View q;
  View scale;
  View y;
  int32_t threads = 0;  // CPU only: 0 = OpenMP default
};

Status int8_linear_cpu(const Int8LinearArgs& a);
// `stream` is a cudaStream_t; on kCudaError *cuda_error holds the cudaError_t.
Status int8_linear_cuda(const Int8LinearArgs& a, void* stream, int* cuda_error);

}  // namespace rgpt
