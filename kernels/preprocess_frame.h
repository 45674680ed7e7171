// preprocess_frame: camera frame -> normalised vision input, and the same geometry for masks.
//
//   frame [H, W, 3] u8 RGB (or BGR with bgr=1), any non-negative strides
//   out   [3, S, S] f32 | f16, row-major contiguous:
//         resize=0 ("pad", LLaVA's expand2square): pad to a square of side max(H, W) with the fill colour
//                  (frame centred), bicubic resize to S x S;
//         resize=1 ("resize", SpatialRGPT's releases): bicubic stretch of W x H to S x S (each axis its own
//                  scale and taps, no padding; fill unused);
//         then (v / 255 - mean[c]) / std[c]
//   The resize reproduces Pillow's Image.resize(BICUBIC) for 8-bit images exactly: separable, horizontal
//   pass first (vertical first where Pillow >= 13 does, see vertical_first), 22-bit fixed-point coefficients,
//   an 8-bit rounded intermediate (Pillow's Resample.c).
//
//   masks [N, H, W] f32 in [0, 1] -> out [N, S, S] f32, clamped to [0, 1]:
//         resize=0: the same pad (fill 0) and Pillow's BILINEAR resize of float ("F") images (double
//                   accumulation);
//         resize=1: OpenCV's INTER_NEAREST stretch to S x S, as SpatialRGPT resizes its masks:
//                   out[y, x] = m[min(floor(y * (1 / (S / H))), H - 1), min(floor(x * (1 / (S / W))), W - 1)]
//                   (the reciprocal of the double scale, exactly as cv::resize computes it).
#pragma once

#include <vector>

#include "common.h"

namespace rgpt {

struct PreprocessFrameArgs {
  View frame;
  View out;
  int32_t bgr = 0;
  int32_t resize = 0;           // 0: pad to square then resize; 1: stretch each axis to S
  int32_t fill[3] = {0, 0, 0};  // pad colour, 0..255 per RGB channel
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
  int32_t threads = 0;
};

struct PreprocessMasksArgs {
  View masks;
  View out;
  int32_t resize = 0;  // 0: pad (fill 0) + bilinear; 1: nearest-neighbour stretch
  int32_t threads = 0;
};

// Pillow's precompute_coeffs for one axis of a resize from in_size to out_size.
// bounds[2*i] = first input index, bounds[2*i+1] = tap count; coeffs[i*ksize + t] normalised weights.
struct ResampleCoeffs {
  int32_t ksize = 0;
  std::vector<int32_t> bounds;
  std::vector<double> coeffs;
};

enum class Filter : int32_t { kBilinear = 0, kBicubic = 1 };

// Pillow's filters (bicubic: a = -0.5, support 2; bilinear: support 1), shared by both twins.
RGPT_HD double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

RGPT_HD double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Pillow's precompute_coeffs for output index xx: writes the normalised weights of its taps to k[0 .. count)
// (count <= ksize) and returns the first input index in *first and the tap count in *count. Shared by both
// twins so that they cannot drift apart (the CUDA file is built without FMA contraction to round alike).
RGPT_HD void pillow_taps(int64_t xx, int64_t in_size, int64_t out_size, bool bicubic, int32_t ksize,
                         double* k, int32_t* first, int32_t* count) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = (bicubic ? 2.0 : 1.0) * filterscale;
  const double center = (static_cast<double>(xx) + 0.5) * scale;
  const double ss = 1.0 / filterscale;
  int64_t xmin = static_cast<int64_t>(center - support + 0.5);
  if (xmin < 0) xmin = 0;
  int64_t xmax = static_cast<int64_t>(center + support + 0.5);
  if (xmax > in_size) xmax = in_size;
  xmax -= xmin;
  if (xmax > ksize) xmax = ksize;  // cannot happen with resample_ksize(); guards the writes below
  double ww = 0.0;
  for (int64_t x = 0; x < xmax; ++x) {
    const double arg = (static_cast<double>(x + xmin) - center + 0.5) * ss;
    const double v = bicubic ? bicubic_filter(arg) : bilinear_filter(arg);
    k[x] = v;
    ww += v;
  }
  for (int64_t x = 0; x < xmax; ++x)
    if (ww != 0.0) k[x] /= ww;
  *first = static_cast<int32_t>(xmin);
  *count = static_cast<int32_t>(xmax);
}

ResampleCoeffs resample_coeffs(int64_t in_size, int64_t out_size, Filter filter);

// The order of the two passes (each rounds to 8 bits, so the order shows in the result). Pillow >= 13 runs the
// vertical pass first when the height shrinks by more than twice as many pixels as the width; older Pillow
// always runs the horizontal pass first. The two agree for every padded square and every stretch that does not
// shrink the height that much (landscape camera frames included).
RGPT_HD bool vertical_first(int64_t in_h, int64_t in_w, int64_t size) {
  return in_h - size > 0 && in_h - size > (in_w - size) * 2;
}

// Pillow's normalize_coeffs_8bpc: 22-bit fixed point, rounding half away from zero.
constexpr int kPrecisionBits = 32 - 8 - 2;
std::vector<int32_t> fixed_point(const std::vector<double>& coeffs);

Status preprocess_frame_cpu(const PreprocessFrameArgs& a);
Status preprocess_masks_cpu(const PreprocessMasksArgs& a);

// Taps per output sample for a resize from `side` to `size` (what resample_coeffs allocates).
int32_t resample_ksize(int64_t side, int64_t size, Filter filter);

// OpenCV's INTER_NEAREST source index of output index `i` for a resize from in_size to out_size (shared by
// both twins; the CUDA file is built without FMA contraction, so the double product rounds alike).
RGPT_HD int64_t nearest_index(int64_t i, int64_t in_size, int64_t out_size) {
  const double inv = 1.0 / (static_cast<double>(out_size) / static_cast<double>(in_size));
  const double v = static_cast<double>(i) * inv;
  int64_t s = static_cast<int64_t>(v);
  if (static_cast<double>(s) > v) --s;  // floor
  return s < in_size - 1 ? s : in_size - 1;
}

// CUDA twins (kernels/preprocess_frame.cu): coefficients are computed on the device (no host copies, so the
// ops can be captured in CUDA graphs) into `workspace` of preprocess_workspace_bytes(side, size) bytes, side =
// max(H, W) (room for the taps of both axes).
int64_t preprocess_workspace_bytes(int64_t side, int64_t size);
Status preprocess_frame_cuda(const PreprocessFrameArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream, int* cuda_error);
Status preprocess_masks_cuda(const PreprocessMasksArgs& a, void* workspace, int64_t workspace_bytes,
                             void* stream, int* cuda_error);

}  // namespace rgpt
