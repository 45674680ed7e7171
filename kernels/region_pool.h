// region_pool: patch merge + mask pooling of one refined map in one read of the map.
//
//   fmap    [C, H, W]   f32 | f16 | bf16, any non-negative strides (channels-first: the layout the
//   refinement's
//                       transposed convolutions produce, so no transpose pass is needed before the op)
//   masks   [N, Hm, Wm] f32 soft masks in [0, 1] at the vision input size, any non-negative strides
//   image   [G*G, C]    out, dtype of fmap or f32, row-major contiguous: adaptive average pool to G x G
//   regions [N, C]      out, same dtype as image, row-major contiguous:
//                       w_n = bilinear resize (align_corners=False) of mask n to H x W,
//                       r_n = sum(w_n * f) / (sum(w_n) + eps); an all-zero mask gives zeros
// Accumulation is fp32 (weights and normalisers in fp64). Returns a Status; never aborts.
#pragma once

#include "common.h"

namespace rgpt {

struct RegionPoolArgs {
  View fmap;
  View masks;
  View image;
  View regions;
  int32_t grid = 0;
  float eps = 1e-8f;
  int32_t threads = 0;  // CPU only: 0 = OpenMP default
};

// Separable resampling taps shared by both twins.
// Bilinear, align_corners=False: out index i reads in[i0], in[i1] with weights (1 - l, l).
struct LinearTap {
  int32_t i0, i1;
  float w0, w1;
};

RGPT_HD LinearTap linear_tap(int64_t i, int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  double src = (static_cast<double>(i) + 0.5) * scale - 0.5;
  if (src < 0) src = 0;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in_size - 1) i0 = in_size - 1;
  const int64_t i1 = i0 + 1 < in_size ? i0 + 1 : in_size - 1;
  const double l = src - static_cast<double>(i0);
  return LinearTap{static_cast<int32_t>(i0), static_cast<int32_t>(i1), static_cast<float>(1.0 - l),
                   static_cast<float>(l)};
}

// Adaptive average pooling window of output i: [floor(i*in/out), ceil((i+1)*in/out)).
RGPT_HD void pool_window(int64_t i, int64_t in_size, int64_t out_size, int64_t* lo, int64_t* hi) {
  *lo = (i * in_size) / out_size;
  *hi = ((i + 1) * in_size + out_size - 1) / out_size;
}

Status region_pool_cpu(const RegionPoolArgs& a);

// CUDA twin (kernels/region_pool.cu). `workspace` is device memory of at least region_pool_workspace_bytes()
// bytes; `stream` is a cudaStream_t. On kCudaError, *cuda_error holds the cudaError_t value.
int64_t region_pool_workspace_bytes(int64_t n, int64_t h, int64_t w, int64_t c);
Status region_pool_cuda(const RegionPoolArgs& a, void* workspace, int64_t workspace_bytes, void* stream,
                        int* cuda_error);

}  // namespace rgpt
