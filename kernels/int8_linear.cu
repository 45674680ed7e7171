// CUDA twin of kernels/int8_linear_cpu.cpp. One warp per output column n: the warp streams q[n, :] with
// 16-byte loads when K is a multiple of 16 and the row is aligned (scalar loads otherwise), multiplies by up
// to 8 rows of x (read through the cache with 16-byte loads when aligned; every warp shares them), reduces
// with shuffles and applies scale[n].
#include <cuda_runtime.h>

#include "cuda_status.h"
#include "int8_linear.h"

namespace rgpt {

namespace {

constexpr int kRows = 8;
constexpr int kWarps = 8;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// 16 consecutive elements of x from element `off` (16-byte aligned), as fp32: 4 (f32) or 2 (f16, bf16)
// vector loads and register conversions instead of 16 scalar loads.
__device__ __forceinline__ void load_x16(const View& x, int64_t off, float* out) {
  if (x.dtype == DType::kF32) {
    const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(x.data) + off);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float4 v = p[i];
      out[4 * i] = v.x;
      out[4 * i + 1] = v.y;
      out[4 * i + 2] = v.z;
      out[4 * i + 3] = v.w;
    }
    return;
  }
  const int4* p = reinterpret_cast<const int4*>(static_cast<const uint16_t*>(x.data) + off);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int4 v = p[i];
    const uint32_t* u = reinterpret_cast<const uint32_t*>(&v);  // element 2j in the low half (little-endian)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (x.dtype == DType::kF16) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[j]));
        out[8 * i + 2 * j] = f.x;
        out[8 * i + 2 * j + 1] = f.y;
      } else {  // bf16: the upper 16 bits of a float
        out[8 * i + 2 * j] = __uint_as_float(u[j] << 16);
        out[8 * i + 2 * j + 1] = __uint_as_float(u[j] & 0xFFFF0000u);
      }
    }
  }
}

// vec16: q rows 16-byte aligned with K % 16 == 0 (16-byte weight loads, the next one issued before the
// current one is used); xvec: x also 16-byte aligned with unit stride and a row stride of whole 16-element
// groups.
__global__ void int8_linear_kernel(View x, View q, View scale, View y, int64_t row0, int rows, int vec16,
                                   int xvec) {
  const int lane = threadIdx.x & 31;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t n = q.shape[0], k = q.shape[1];
  if (col >= n) return;
  const int8_t* w = static_cast<const int8_t*>(q.data) + q.offset(col, 0);
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  if (vec16) {
    int64_t c = static_cast<int64_t>(lane) * 16;
    int4 next = c < k ? *reinterpret_cast<const int4*>(w + c) : int4{0, 0, 0, 0};
    for (; c < k; c += 32 * 16) {
      const int4 packed = next;
      if (c + 32 * 16 < k) next = *reinterpret_cast<const int4*>(w + c + 32 * 16);
      const int8_t* b = reinterpret_cast<const int8_t*>(&packed);
      float wf[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) wf[j] = static_cast<float>(b[j]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r >= rows) break;
        float xv[16];
        if (xvec) {
          load_x16(x, x.offset(row0 + r, c), xv);
        } else {
#pragma unroll
          for (int j = 0; j < 16; ++j) xv[j] = load_as_float(x.data, x.offset(row0 + r, c + j), x.dtype);
        }
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; ++j) s += wf[j] * xv[j];
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
  const int xvec = vec16 && (a.x.stride[1] == 1) && (a.x.stride[0] % 16 == 0 || m == 1) &&
                           (reinterpret_cast<uintptr_t>(a.x.data) % 16 == 0)
                       ? 1
                       : 0;
  const unsigned blocks = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  for (int64_t r0 = 0; r0 < m; r0 += kRows) {
    const int rows = static_cast<int>(m - r0 < kRows ? m - r0 : kRows);
    int8_linear_kernel<<<blocks, kWarps * 32, 0, stream>>>(a.x, a.q, a.scale, a.y, r0, rows, vec16, xvec);
    const Status st = cuda_status(cudaGetLastError(), cuda_error);
    if (st != kOk) return st;
  }
  return kOk;
}

}  // namespace rgpt
