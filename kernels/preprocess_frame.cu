// CUDA twin of kernels/preprocess_frame_cpu.cpp. Built with -fmad=false (see CMakeLists.txt) so the double
// coefficient arithmetic rounds exactly as on the host and the result stays Pillow-exact.
//
// 1. coeffs: one thread per output index computes Pillow's taps (bounds, double weights, 22-bit fixed point).
// 2. frame: one thread per output pixel evaluates the vertical taps over horizontally resampled, 8-bit
//    rounded rows computed on the fly (no intermediate image in memory), then normalises all 3 channels.
// 3. masks: the same with double weights and a float intermediate, as Pillow's "F" resampling; in resize mode
//    OpenCV's nearest-neighbour source index instead (no coefficients).
// Resize mode (a.resize) stretches each axis on its own: the x taps come from W -> S, the y taps from H -> S,
// each in its own slice of the workspace.
#include <cuda_runtime.h>

#include "cuda_status.h"
#include "preprocess_frame.h"

namespace rgpt {

namespace {

constexpr int kThreads = 256;

int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

struct Coeffs {
  int32_t* bounds;  // [S, 2]
  double* kd;       // [S, ksize]
  int32_t* ki;      // [S, ksize] fixed point
  int32_t ksize;
};

Coeffs carve(void* ws, int64_t s, int32_t ksize) {
  char* p = static_cast<char*>(ws);
  Coeffs c;
  c.bounds = reinterpret_cast<int32_t*>(p);
  c.kd = reinterpret_cast<double*>(p + align256(s * 2 * 4));
  c.ki = reinterpret_cast<int32_t*>(p + align256(s * 2 * 4) + align256(s * ksize * 8));
  c.ksize = ksize;
  return c;
}

__global__ void coeffs_kernel(int64_t in_size, int64_t out_size, int32_t bicubic, Coeffs co) {
  const int64_t xx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (xx >= out_size) return;
  double* k = co.kd + xx * co.ksize;
  int32_t first = 0, count = 0;
  pillow_taps(xx, in_size, out_size, bicubic != 0, co.ksize, k, &first, &count);
  const double one = static_cast<double>(1 << kPrecisionBits);
  for (int64_t x = 0; x < co.ksize; ++x) {
    const double v = x < count ? k[x] : 0.0;
    k[x] = v;
    co.ki[xx * co.ksize + x] =
        v < 0 ? static_cast<int32_t>(-0.5 + v * one) : static_cast<int32_t>(0.5 + v * one);
  }
  co.bounds[2 * xx] = first;
  co.bounds[2 * xx + 1] = count;
}

__device__ __forceinline__ int32_t clip8_d(int32_t v) {
  const int32_t s = v >> kPrecisionBits;
  return s < 0 ? 0 : (s > 255 ? 255 : s);
}

__global__ void frame_kernel(PreprocessFrameArgs a, Coeffs cx, Coeffs cy, int32_t identity, int32_t vfirst) {
  const int64_t s = a.out.shape[1];
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= s * s) return;
  const int64_t oy = p / s, ox = p % s;
  const int64_t h = a.frame.shape[0], w = a.frame.shape[1];
  const int64_t side = h > w ? h : w;
  const int64_t top = a.resize ? 0 : (side - h) / 2, left = a.resize ? 0 : (side - w) / 2;
  const uint8_t* fr = static_cast<const uint8_t*>(a.frame.data);
  const int src_c[3] = {a.bgr ? 2 : 0, 1, a.bgr ? 0 : 2};
  auto pixel = [&](int64_t yy, int64_t xx, int c) -> int32_t {
    if (yy < top || yy >= top + h || xx < left || xx >= left + w) return a.fill[c];
    return fr[a.frame.offset(yy - top, xx - left, src_c[c])];
  };
  int32_t v[3];
  if (identity) {
    for (int c = 0; c < 3; ++c) v[c] = pixel(oy, ox, c);
  } else {
    const int32_t ymin = cy.bounds[2 * oy], ymax = cy.bounds[2 * oy + 1];
    const int32_t xmin = cx.bounds[2 * ox], xmax = cx.bounds[2 * ox + 1];
    const int32_t* ky = cy.ki + oy * cy.ksize;
    const int32_t* kx = cx.ki + ox * cx.ksize;
    int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
    if (vfirst) {  // Pillow >= 13's order for a height that shrinks much more than the width (see the header)
      for (int32_t x = 0; x < xmax; ++x) {
        int32_t vs[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
        for (int32_t y = 0; y < ymax; ++y)
          for (int c = 0; c < 3; ++c) vs[c] += pixel(ymin + y, xmin + x, c) * ky[y];
        for (int c = 0; c < 3; ++c) acc[c] += clip8_d(vs[c]) * kx[x];
      }
    } else {
      for (int32_t y = 0; y < ymax; ++y) {
        int32_t hs[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
        for (int32_t x = 0; x < xmax; ++x)
          for (int c = 0; c < 3; ++c) hs[c] += pixel(ymin + y, xmin + x, c) * kx[x];
        for (int c = 0; c < 3; ++c) acc[c] += clip8_d(hs[c]) * ky[y];
      }
    }
    for (int c = 0; c < 3; ++c) v[c] = clip8_d(acc[c]);
  }
  for (int c = 0; c < 3; ++c) {
    const float f = static_cast<float>(v[c]) / 255.0f;
    store_from_float(a.out.data, a.out.offset(c, oy, ox), a.out.dtype,
                     __fdiv_rn(__fsub_rn(f, a.mean[c]), a.std[c]));
  }
}

__global__ void masks_nearest_kernel(PreprocessMasksArgs a) {
  const int64_t s = a.out.shape[1];
  const int64_t k = blockIdx.y;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= s * s) return;
  const int64_t oy = p / s, ox = p % s;
  const int64_t h = a.masks.shape[1], w = a.masks.shape[2];
  const float v = static_cast<const float*>(a.masks.data)[a.masks.offset(k, nearest_index(oy, h, s),
                                                                          nearest_index(ox, w, s))];
  static_cast<float*>(a.out.data)[a.out.offset(k, oy, ox)] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

__global__ void masks_kernel(PreprocessMasksArgs a, Coeffs co, int32_t identity) {
  const int64_t s = a.out.shape[1];
  const int64_t k = blockIdx.y;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= s * s) return;
  const int64_t oy = p / s, ox = p % s;
  const int64_t h = a.masks.shape[1], w = a.masks.shape[2];
  const int64_t side = h > w ? h : w, top = (side - h) / 2, left = (side - w) / 2;
  const float* md = static_cast<const float*>(a.masks.data);
  auto pixel = [&](int64_t yy, int64_t xx) -> float {
    if (yy < top || yy >= top + h || xx < left || xx >= left + w) return 0.0f;
    return md[a.masks.offset(k, yy - top, xx - left)];
  };
  float v;
  if (identity) {
    v = pixel(oy, ox);
  } else {
    const int32_t ymin = co.bounds[2 * oy], ymax = co.bounds[2 * oy + 1];
    const int32_t xmin = co.bounds[2 * ox], xmax = co.bounds[2 * ox + 1];
    const double* ky = co.kd + oy * co.ksize;
    const double* kx = co.kd + ox * co.ksize;
    double acc = 0.0;
    for (int32_t y = 0; y < ymax; ++y) {
      double hs = 0.0;
      for (int32_t x = 0; x < xmax; ++x) hs += static_cast<double>(pixel(ymin + y, xmin + x)) * kx[x];
      acc += static_cast<double>(static_cast<float>(hs)) * ky[y];
    }
    v = static_cast<float>(acc);
  }
  static_cast<float*>(a.out.data)[a.out.offset(k, oy, ox)] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

}  // namespace

int64_t preprocess_workspace_bytes(int64_t side, int64_t size) {
  const int64_t ksize = resample_ksize(side, size, Filter::kBicubic);  // the wider of the two filters
  // Two sets of taps (x then y), each sized for an input of up to `side` pixels.
  return 2 * (align256(size * 2 * 4) + align256(size * ksize * 8) + align256(size * ksize * 4));
}

Status preprocess_frame_cuda(const PreprocessFrameArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream_ptr, int* cuda_error) {
  const int64_t h = a.frame.shape[0], w = a.frame.shape[1], s = a.out.shape[1];
  const int64_t side = h > w ? h : w;
  if (workspace == nullptr || workspace_bytes < preprocess_workspace_bytes(side, s)) return kBadArgument;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t src_h = a.resize ? h : side, src_w = a.resize ? w : side;
  const int32_t wide = resample_ksize(side, s, Filter::kBicubic);
  const int64_t half = preprocess_workspace_bytes(side, s) / 2;
  Coeffs cx = carve(workspace, s, wide), cy = carve(static_cast<char*>(workspace) + half, s, wide);
  cx.ksize = resample_ksize(src_w, s, Filter::kBicubic);
  cy.ksize = resample_ksize(src_h, s, Filter::kBicubic);
  const int32_t identity = src_h == s && src_w == s ? 1 : 0;
  if (!identity) {
    const unsigned blocks = static_cast<unsigned>((s + kThreads - 1) / kThreads);
    coeffs_kernel<<<blocks, kThreads, 0, stream>>>(src_w, s, 1, cx);
    coeffs_kernel<<<blocks, kThreads, 0, stream>>>(src_h, s, 1, cy);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return cuda_status(err, cuda_error);
  }
  const int32_t vfirst = vertical_first(src_h, src_w, s) ? 1 : 0;
  frame_kernel<<<static_cast<unsigned>((s * s + kThreads - 1) / kThreads), kThreads, 0, stream>>>(a, cx, cy,
                                                                                                  identity, vfirst);
  return cuda_status(cudaGetLastError(), cuda_error);
}

Status preprocess_masks_cuda(const PreprocessMasksArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream_ptr, int* cuda_error) {
  const int64_t n = a.masks.shape[0], h = a.masks.shape[1], w = a.masks.shape[2], s = a.out.shape[1];
  if (n == 0) return kOk;
  const int64_t side = h > w ? h : w;
  if (workspace == nullptr || workspace_bytes < preprocess_workspace_bytes(side, s)) return kBadArgument;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (a.resize) {
    const dim3 grid(static_cast<unsigned>((s * s + kThreads - 1) / kThreads), static_cast<unsigned>(n));
    masks_nearest_kernel<<<grid, kThreads, 0, stream>>>(a);
    return cuda_status(cudaGetLastError(), cuda_error);
  }
  // Bilinear needs fewer taps than the bicubic ksize the workspace is sized for; keep Pillow's own ksize.
  const int32_t ksize = resample_ksize(side, s, Filter::kBilinear);
  const Coeffs co = carve(workspace, s, resample_ksize(side, s, Filter::kBicubic));
  Coeffs cb = co;
  cb.ksize = ksize;
  const int32_t identity = side == s ? 1 : 0;
  if (!identity) {
    coeffs_kernel<<<static_cast<unsigned>((s + kThreads - 1) / kThreads), kThreads, 0, stream>>>(side, s, 0,
                                                                                                 cb);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return cuda_status(err, cuda_error);
  }
  const dim3 grid(static_cast<unsigned>((s * s + kThreads - 1) / kThreads), static_cast<unsigned>(n));
  masks_kernel<<<grid, kThreads, 0, stream>>>(a, cb, identity);
  return cuda_status(cudaGetLastError(), cuda_error);
}

}  // namespace rgpt
