// CUDA twin of kernels/int8_linear_cpu.cpp. One warp per output column n: the warp streams q[n, :] with
// 16-byte loads when K is a multiple of 16 and the row is aligned (scalar loads otherwise), multiplies by up
// to 8 rows of x (read through the cache; every warp shares them), reduces with shuffles and applies
// scale[n].
#include <cuda_runtime.h>

#include "int8_linear.h"

namespace rgpt {

namespace {

constexpr int kRows = 8;
constexpr int kWarps = 8;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void int8_linear_kernel(View x, View q, View scale, View y, int64_t row0, int rows, int vec16) {
  const int lane = threadIdx.x & 31;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t n = q.shape[0], k = q.shape[1];
  if (col >= n) return;
  const int8_t* w = static_cast<const int8_t*>(q.data) + q.offset(col, 0);
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  if (vec16) {
    for (int64_t c = static_cast<int64_t>(lane) * 16; c < k; c += 32 * 16) {
      const int4 packed = *reinterpret_cast<const int4*>(w + c);
      const int8_t* b = reinterpret_cast<const int8_t*>(&packed);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r >= rows) break;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; ++j)
          s += static_cast<float>(b[j]) * load_as_float(x.data, x.offset(row0 + r, c + j), x.dtype);
        acc[r] += s;
      }
    }
  } else {
    for (int64_t c = lane; c < k; c += 32) {
      const float wv = static_cast<float>(w[c]);
      for (int r = 0; r < rows; ++r) acc[r] += wv * load_as_float(x.data, x.offset(row0 + r, c), x.dtype);
    }
  }
  const float s = static_cast<const float*>(scale.data)[scale.offset(col)];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;
    const float v = warp_sum(acc[r]);
    if (lane == 0) store_from_float(y.data, y.offset(row0 + r, col), y.dtype, v * s);
  }
}

}  // namespace

Status int8_linear_cuda(const Int8LinearArgs& a, void* stream_ptr, int* cuda_error) {
  const int64_t m = a.x.shape[0], n = a.q.shape[0], k = a.q.shape[1];
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int vec16 = (k % 16 == 0) && (reinterpret_cast<uintptr_t>(a.q.data) % 16 == 0) ? 1 : 0;
  const unsigned blocks = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  for (int64_t r0 = 0; r0 < m; r0 += kRows) {
    const int rows = static_cast<int>(m - r0 < kRows ? m - r0 : kRows);
    int8_linear_kernel<<<blocks, kWarps * 32, 0, stream>>>(a.x, a.q, a.scale, a.y, r0, rows, vec16);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
      if (cuda_error) *cuda_error = static_cast<int>(err);
      return kCudaError;
    }
  }
  return kOk;
}

}  // namespace rgpt
