// CUDA twin of kernels/region_pool_cpu.cpp.
//
// 1. resize_masks: masks -> bilinear weights w[N, H, W] (fp32) and their sums (fp64), one atomic per block.
// 2. pool: one block per (channel tile, grid row i). The block stages rows [lo_i, hi_i) of its channels in
//    shared memory (the map is read once, except rows shared by two overlapping pooling windows when H is not
//    a multiple of G), writes the G image tokens of row i, and adds the region partial sums over the rows
//    [lo_i, lo_{i+1}) it owns into an fp32 accumulator with one atomicAdd per (region, channel).
// 3. finalize: regions = acc / (sum + eps), cast to the output dtype.
#include <cuda_runtime.h>

#include "cuda_status.h"
#include "region_pool.h"

namespace rgpt {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBudget = 48 * 1024;

int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

__global__ void resize_masks_kernel(View masks, int64_t h, int64_t w, float* wts, double* sums) {
  const int64_t k = blockIdx.y;
  const int64_t hm = masks.shape[1], wm = masks.shape[2];
  const float* md = static_cast<const float*>(masks.data);
  double local = 0.0;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < h * w;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = p / w, x = p % w;
    const LinearTap a = linear_tap(y, hm, h), b = linear_tap(x, wm, w);
    const float v00 = md[masks.offset(k, a.i0, b.i0)], v01 = md[masks.offset(k, a.i0, b.i1)];
    const float v10 = md[masks.offset(k, a.i1, b.i0)], v11 = md[masks.offset(k, a.i1, b.i1)];
    const float v = a.w0 * (b.w0 * v00 + b.w1 * v01) + a.w1 * (b.w0 * v10 + b.w1 * v11);
    wts[k * h * w + p] = v;
    local += v;
  }
  __shared__ double part[kThreads];
  part[threadIdx.x] = local;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(&sums[k], part[0]);
}

__global__ void pool_kernel(View fmap, const float* wts, int64_t n, int64_t g, int64_t ct, int64_t band_max,
                            float* acc, View image) {
  extern __shared__ float tile[];  // [ct][band_max][W]
  const int64_t c_all = fmap.shape[0], h = fmap.shape[1], w = fmap.shape[2];
  const int64_t c0 = blockIdx.x * ct, i = blockIdx.y;
  const int64_t cc = c_all - c0 < ct ? c_all - c0 : ct;
  int64_t ylo, yhi;
  pool_window(i, h, g, &ylo, &yhi);
  const int64_t rows = yhi - ylo;
  for (int64_t e = threadIdx.x; e < cc * rows * w; e += blockDim.x) {
    const int64_t c = e / (rows * w), r = (e / w) % rows, x = e % w;
    tile[(c * band_max + r) * w + x] = load_as_float(fmap.data, fmap.offset(c0 + c, ylo + r, x), fmap.dtype);
  }
  __syncthreads();
  // Image tokens of grid row i; channel fastest so that neighbouring threads write neighbouring outputs.
  for (int64_t e = threadIdx.x; e < cc * g; e += blockDim.x) {
    const int64_t c = e % cc, j = e / cc;
    int64_t xlo, xhi;
    pool_window(j, w, g, &xlo, &xhi);
    float s = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t x = xlo; x < xhi; ++x) s += tile[(c * band_max + r) * w + x];
    store_from_float(image.data, image.offset(i * g + j, c0 + c), image.dtype,
                     s / static_cast<float>(rows * (xhi - xlo)));
  }
  // Region partial sums over the rows this block owns.
  const int64_t own_hi = i + 1 < g ? ((i + 1) * h) / g : h;
  for (int64_t e = threadIdx.x; e < cc * n; e += blockDim.x) {
    const int64_t c = e % cc, k = e / cc;
    float s = 0.0f;
    for (int64_t y = ylo; y < own_hi; ++y) {
      const float* wr = wts + (k * h + y) * w;
      const float* fr = tile + (c * band_max + (y - ylo)) * w;
      for (int64_t x = 0; x < w; ++x) s += wr[x] * fr[x];
    }
    if (own_hi > ylo) atomicAdd(&acc[k * c_all + c0 + c], s);
  }
}

__global__ void finalize_kernel(const float* acc, const double* sums, int64_t n, int64_t c_all, float eps,
                                View regions) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * c_all) return;
  const int64_t k = e / c_all, c = e % c_all;
  const double total = sums[k];
  const float inv = total > 0.0 ? static_cast<float>(1.0 / (total + static_cast<double>(eps))) : 0.0f;
  store_from_float(regions.data, regions.offset(k, c), regions.dtype, acc[e] * inv);
}

}  // namespace

int64_t region_pool_workspace_bytes(int64_t n, int64_t h, int64_t w, int64_t c) {
  return align256(n * h * w * 4) + align256(n * 8) + align256(n * c * 4);
}

Status region_pool_cuda(const RegionPoolArgs& a, void* workspace, int64_t workspace_bytes, void* stream_ptr,
                        int* cuda_error) {
  const int64_t c_all = a.fmap.shape[0], h = a.fmap.shape[1], w = a.fmap.shape[2];
  const int64_t n = a.masks.shape[0], g = a.grid;
  if (workspace_bytes < region_pool_workspace_bytes(n, h, w, c_all) || (workspace == nullptr && n > 0))
    return kBadArgument;
  int64_t band_max = 0;
  for (int64_t i = 0; i < g; ++i) {
    int64_t lo, hi;
    pool_window(i, h, g, &lo, &hi);
    band_max = hi - lo > band_max ? hi - lo : band_max;
  }
  const int64_t row_bytes = band_max * w * 4;
  if (row_bytes > kSharedBudget) return kTooLarge;
  int64_t ct = kSharedBudget / row_bytes;
  ct = ct > 32 ? 32 : ct;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  char* ws = static_cast<char*>(workspace);
  float* wts = reinterpret_cast<float*>(ws);
  double* sums = reinterpret_cast<double*>(ws + align256(n * h * w * 4));
  float* acc = reinterpret_cast<float*>(ws + align256(n * h * w * 4) + align256(n * 8));
  cudaError_t err = cudaSuccess;
  if (n > 0) {
    err = cudaMemsetAsync(sums, 0, static_cast<size_t>(n * 8), stream);
    if (err == cudaSuccess) err = cudaMemsetAsync(acc, 0, static_cast<size_t>(n * c_all * 4), stream);
    if (err == cudaSuccess) {
      int64_t bx = (h * w + kThreads - 1) / kThreads;
      bx = bx > 64 ? 64 : bx;
      resize_masks_kernel<<<dim3(static_cast<unsigned>(bx), static_cast<unsigned>(n)), kThreads, 0, stream>>>(
          a.masks, h, w, wts, sums);
      err = cudaGetLastError();
    }
  }
  if (err == cudaSuccess) {
    const dim3 grid(static_cast<unsigned>((c_all + ct - 1) / ct), static_cast<unsigned>(g));
    const size_t shared = static_cast<size_t>(ct * row_bytes);
    pool_kernel<<<grid, kThreads, shared, stream>>>(a.fmap, wts, n, g, ct, band_max, acc, a.image);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess && n > 0) {
    const int64_t total = n * c_all;
    finalize_kernel<<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        acc, sums, n, c_all, a.eps, a.regions);
    err = cudaGetLastError();
  }
  return cuda_status(err, cuda_error);
}

}  // namespace rgpt
