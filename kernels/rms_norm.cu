// CUDA twin of kernels/rms_norm_cpu.cpp: one block per row; each thread keeps its elements' h (x + residual)
// in registers between the sum of squares and the scaling, so x and the residual are read once.
#include <cuda_runtime.h>

#include "cuda_status.h"
#include "rms_norm.h"

namespace rgpt {

namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 32;  // D <= kThreads * kPerThread = 8192 keeps h in registers

__global__ void rms_norm_kernel(RmsNormArgs a) {
  const int64_t r = blockIdx.x, d = a.x.shape[1];
  const DType t = a.x.dtype;
  float h[kPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(i) * kThreads;
    h[i] = 0.0f;
    if (c < d) {
      float v = load_as_float(a.x.data, a.x.offset(r, c), t);
      if (a.add) v = round_to(v + load_as_float(a.residual.data, a.residual.offset(r, c), t), t);
      if (a.has_sum) store_from_float(a.sum.data, a.sum.offset(r, c), t, v);
      h[i] = v;
      ss += v * v;
    }
  }
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  __shared__ float warp_ss[kThreads / 32];
  __shared__ float inv;
  if ((threadIdx.x & 31) == 0) warp_ss[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_ss[w];
    inv = rsqrtf(total / static_cast<float>(d) + a.eps);
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(i) * kThreads;
    if (c < d) {
      const float w = load_as_float(a.weight.data, a.weight.offset(c), t);
      store_from_float(a.y.data, a.y.offset(r, c), t, w * round_to(h[i] * inv, t));
    }
  }
}

}  // namespace

Status rms_norm_cuda(const RmsNormArgs& a, void* stream, int* cuda_error) {
  if (a.x.shape[1] > static_cast<int64_t>(kThreads) * kPerThread) return kTooLarge;
  if (a.x.shape[0] == 0) return kOk;
  rms_norm_kernel<<<static_cast<unsigned>(a.x.shape[0]), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return cuda_status(cudaGetLastError(), cuda_error);
}

}  // namespace rgpt
