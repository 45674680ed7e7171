// CPU twin of kernels/preprocess_frame.cu. The padded square is never materialised: rows are assembled
// on the fly, and rows that lie entirely in the padding band are resampled once and reused.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_dispatch.h"
#include "preprocess_frame.h"

namespace rgpt {

namespace {

inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;
  return static_cast<uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
}

// One pixel as four int32 lanes (R, G, B, 0), so a tap is one vector multiply-add on any target (GCC/Clang
// vector extensions: SSE on x86-64, NEON on aarch64); integer arithmetic keeps Pillow's exact result.
#if defined(__GNUC__)
typedef int32_t Pixel4 __attribute__((vector_size(16)));
#else
struct Pixel4 {
  int32_t v[4];
};
#endif

// Pillow's horizontal 8-bit pass over one padded row (3 bytes per pixel) into `out` (S pixels, 3 bytes each).
// On x86-64 an SSE4.1 clone (packed 32-bit multiply) is picked at run time where the CPU has it.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("sse4.1", "default")))
#endif
void horizontal_pass(const uint8_t* row, int64_t side, int64_t s, const int32_t* bounds, const int32_t* kk,
                     int32_t ksize, Pixel4* wide, uint8_t* out) {
  for (int64_t x = 0; x < side; ++x) {
#if defined(__GNUC__)
    wide[x] = Pixel4{row[3 * x], row[3 * x + 1], row[3 * x + 2], 0};
#else
    wide[x] = Pixel4{{row[3 * x], row[3 * x + 1], row[3 * x + 2], 0}};
#endif
  }
  const int32_t half = 1 << (kPrecisionBits - 1);
  for (int64_t xx = 0; xx < s; ++xx) {
    const int32_t xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1];
    const int32_t* k = kk + xx * ksize;
    const Pixel4* p = wide + xmin;
#if defined(__GNUC__)
    Pixel4 acc = {half, half, half, 0};
    for (int32_t x = 0; x < xmax; ++x) acc += p[x] * k[x];
    out[3 * xx] = clip8(acc[0]), out[3 * xx + 1] = clip8(acc[1]), out[3 * xx + 2] = clip8(acc[2]);
#else
    int32_t acc[3] = {half, half, half};
    for (int32_t x = 0; x < xmax; ++x)
      for (int c = 0; c < 3; ++c) acc[c] += p[x].v[c] * k[x];
    out[3 * xx] = clip8(acc[0]), out[3 * xx + 1] = clip8(acc[1]), out[3 * xx + 2] = clip8(acc[2]);
#endif
  }
}

#if defined(__GNUC__)
typedef int32_t Pixel8 __attribute__((vector_size(32)));

// Two rows at once (the taps are the same for every row): lanes hold (R, G, B, 0) of row a then of row b, so
// one 8-lane multiply-add serves both rows. Compiled for the baseline and for AVX2, picked by CPU features.
__attribute__((always_inline)) inline void horizontal_pass2_body(const uint8_t* ra, const uint8_t* rb,
                                                                 int64_t side, int64_t s,
                                                                 const int32_t* bounds, const int32_t* kk,
                                                                 int32_t ksize, Pixel8* wide, uint8_t* oa,
                                                                 uint8_t* ob) {
  for (int64_t x = 0; x < side; ++x)
    wide[x] = Pixel8{ra[3 * x], ra[3 * x + 1], ra[3 * x + 2], 0, rb[3 * x], rb[3 * x + 1], rb[3 * x + 2], 0};
  const int32_t half = 1 << (kPrecisionBits - 1);
  for (int64_t xx = 0; xx < s; ++xx) {
    const int32_t xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1];
    const int32_t* k = kk + xx * ksize;
    const Pixel8* p = wide + xmin;
    Pixel8 acc = {half, half, half, 0, half, half, half, 0};
    for (int32_t x = 0; x < xmax; ++x) acc += p[x] * k[x];
    oa[3 * xx] = clip8(acc[0]), oa[3 * xx + 1] = clip8(acc[1]), oa[3 * xx + 2] = clip8(acc[2]);
    ob[3 * xx] = clip8(acc[4]), ob[3 * xx + 1] = clip8(acc[5]), ob[3 * xx + 2] = clip8(acc[6]);
  }
}

using Pass2 = void (*)(const uint8_t*, const uint8_t*, int64_t, int64_t, const int32_t*, const int32_t*,
                       int32_t, Pixel8*, uint8_t*, uint8_t*);

void horizontal_pass2_base(const uint8_t* ra, const uint8_t* rb, int64_t side, int64_t s,
                           const int32_t* bounds, const int32_t* kk, int32_t ksize, Pixel8* wide, uint8_t* oa,
                           uint8_t* ob) {
  horizontal_pass2_body(ra, rb, side, s, bounds, kk, ksize, wide, oa, ob);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void horizontal_pass2_avx2(const uint8_t* ra, const uint8_t* rb, int64_t side,
                                                           int64_t s, const int32_t* bounds,
                                                           const int32_t* kk, int32_t ksize, Pixel8* wide,
                                                           uint8_t* oa, uint8_t* ob) {
  horizontal_pass2_body(ra, rb, side, s, bounds, kk, ksize, wide, oa, ob);
}

Pass2 pick_pass2() { return cpu_has_avx2(false) ? horizontal_pass2_avx2 : horizontal_pass2_base; }
const Pass2 horizontal_pass2 = pick_pass2();
#else
const Pass2 horizontal_pass2 = horizontal_pass2_base;
#endif
#endif

int nthreads(int32_t requested) {
#ifdef _OPENMP
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

}  // namespace

int32_t resample_ksize(int64_t side, int64_t size, Filter filter) {
  const double scale = static_cast<double>(side) / static_cast<double>(size);
  const double support = (filter == Filter::kBicubic ? 2.0 : 1.0) * (scale < 1.0 ? 1.0 : scale);
  return static_cast<int32_t>(std::ceil(support)) * 2 + 1;
}

ResampleCoeffs resample_coeffs(int64_t in_size, int64_t out_size, Filter filter) {
  ResampleCoeffs r;
  r.ksize = resample_ksize(in_size, out_size, filter);
  r.bounds.assign(static_cast<size_t>(out_size * 2), 0);
  r.coeffs.assign(static_cast<size_t>(out_size * r.ksize), 0.0);
  for (int64_t xx = 0; xx < out_size; ++xx)
    pillow_taps(xx, in_size, out_size, filter == Filter::kBicubic, r.ksize, r.coeffs.data() + xx * r.ksize,
                &r.bounds[2 * xx], &r.bounds[2 * xx + 1]);
  return r;
}

std::vector<int32_t> fixed_point(const std::vector<double>& coeffs) {
  std::vector<int32_t> out(coeffs.size());
  const double one = static_cast<double>(1 << kPrecisionBits);
  for (size_t i = 0; i < coeffs.size(); ++i)
    out[i] = coeffs[i] < 0 ? static_cast<int32_t>(-0.5 + coeffs[i] * one)
                           : static_cast<int32_t>(0.5 + coeffs[i] * one);
  return out;
}

Status preprocess_frame_cpu(const PreprocessFrameArgs& a) {
  const int64_t h = a.frame.shape[0], w = a.frame.shape[1], s = a.out.shape[1];
  // The image the resize reads: the padded square (pad) or the frame itself (resize), src_h x src_w.
  const int64_t side = std::max(h, w);
  const int64_t src_h = a.resize ? h : side, src_w = a.resize ? w : side;
  const int64_t top = (src_h - h) / 2, left = (src_w - w) / 2;
  const uint8_t* fr = static_cast<const uint8_t*>(a.frame.data);
  const int src_c[3] = {a.bgr ? 2 : 0, 1, a.bgr ? 0 : 2};
  auto store = [&](int c, int64_t y, int64_t x, uint8_t v) {
    const float f = static_cast<float>(v) / 255.0f;
    store_from_float(a.out.data, a.out.offset(c, y, x), a.out.dtype, (f - a.mean[c]) / a.std[c]);
  };
  // Source row `yy`, 3 bytes per pixel. Only the pad bands are filled: the frame part is copied (memcpy for
  // packed RGB rows, a channel swap for BGR, the strided loop otherwise).
  const bool packed = a.frame.stride[1] == 3 && a.frame.stride[2] == 1;
  auto padded_row = [&](int64_t yy, uint8_t* row) {
    const bool inside = yy >= top && yy < top + h;
    for (int64_t x = 0; x < src_w; ++x) {
      if (inside && x == left) x = left + w;
      if (x >= src_w) break;
      row[3 * x] = static_cast<uint8_t>(a.fill[0]);
      row[3 * x + 1] = static_cast<uint8_t>(a.fill[1]);
      row[3 * x + 2] = static_cast<uint8_t>(a.fill[2]);
    }
    if (!inside) return;
    const uint8_t* src = fr + a.frame.offset(yy - top, 0, 0);
    uint8_t* dst = row + 3 * left;
    if (packed && !a.bgr) {
      std::memcpy(dst, src, static_cast<size_t>(3 * w));
    } else if (packed) {
      for (int64_t x = 0; x < w; ++x) {
        dst[3 * x] = src[3 * x + 2];
        dst[3 * x + 1] = src[3 * x + 1];
        dst[3 * x + 2] = src[3 * x];
      }
    } else {
      for (int64_t x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) dst[3 * x + c] = src[a.frame.offset(0, x, src_c[c])];
    }
  };
  const int nt = nthreads(a.threads);

  if (src_h == s && src_w == s) {  // Pillow returns a copy when the size already matches: no resampling at all
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t y = 0; y < s; ++y) {
      std::vector<uint8_t> row(static_cast<size_t>(3 * src_w));
      padded_row(y, row.data());
      for (int64_t x = 0; x < s; ++x)
        for (int c = 0; c < 3; ++c) store(c, y, x, row[3 * x + c]);
    }
    return kOk;
  }

  // One axis of the same size as S has identity taps (weight 1 on its own pixel): exactly Pillow's skipped pass.
  const ResampleCoeffs cx = resample_coeffs(src_w, s, Filter::kBicubic);
  const ResampleCoeffs cy = resample_coeffs(src_h, s, Filter::kBicubic);
  const std::vector<int32_t> kx = fixed_point(cx.coeffs), ky = fixed_point(cy.coeffs);
  if (vertical_first(src_h, src_w, s)) {
    // Pillow >= 13 runs the vertical pass first here (an 8-bit rounded [S, src_w] intermediate, row by row).
    // Only a stretch can get here (a padded square shrinks both axes alike), so every source pixel is the frame's.
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      std::vector<uint8_t> vrow(static_cast<size_t>(3 * src_w)), hout(static_cast<size_t>(3 * s));
      std::vector<Pixel4> wide(static_cast<size_t>(src_w));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t yy = 0; yy < s; ++yy) {
        const int32_t ymin = cy.bounds[2 * yy], ymax = cy.bounds[2 * yy + 1];
        const int32_t* k = ky.data() + yy * cy.ksize;
        for (int64_t x = 0; x < src_w; ++x) {
          int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
          for (int32_t y = 0; y < ymax; ++y)
            for (int c = 0; c < 3; ++c) acc[c] += fr[a.frame.offset(ymin + y - top, x - left, src_c[c])] * k[y];
          for (int c = 0; c < 3; ++c) vrow[3 * x + c] = clip8(acc[c]);
        }
        horizontal_pass(vrow.data(), src_w, s, cx.bounds.data(), kx.data(), cx.ksize, wide.data(), hout.data());
        for (int64_t xx = 0; xx < s; ++xx)
          for (int c = 0; c < 3; ++c) store(c, yy, xx, hout[3 * xx + c]);
      }
    }
    return kOk;
  }
  const int64_t y_first = cy.bounds[0];
  const int64_t y_last = cy.bounds[2 * s - 2] + cy.bounds[2 * s - 1];
  const int64_t rows = y_last - y_first;
  // Horizontal pass into an 8-bit intermediate [rows, S, 3].
  std::vector<uint8_t> temp(static_cast<size_t>(rows * s * 3));
  auto horizontal = [&](const uint8_t* row, Pixel4* wide, uint8_t* out) {
    horizontal_pass(row, src_w, s, cx.bounds.data(), kx.data(), cx.ksize, wide, out);
  };
  std::vector<uint8_t> fill_row(static_cast<size_t>(3 * src_w)), fill_out(static_cast<size_t>(3 * s));
  std::vector<Pixel4> fill_wide(static_cast<size_t>(src_w));
  if (src_h > h) {  // rows entirely in the pad band resample to one row, computed once
    padded_row(-1, fill_row.data());
    horizontal(fill_row.data(), fill_wide.data(), fill_out.data());
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
  {
    std::vector<uint8_t> row(static_cast<size_t>(3 * src_w)),
        row_b(static_cast<size_t>(3 * src_w));  // per thread
    std::vector<Pixel4> wide(static_cast<size_t>(src_w));
#if defined(__GNUC__)
    std::vector<Pixel8> wide2(static_cast<size_t>(src_w));
#endif
    auto one_row = [&](int64_t r) {
      const int64_t yy = y_first + r;
      uint8_t* out = temp.data() + r * s * 3;
      if (yy < top || yy >= top + h) {
        std::copy(fill_out.begin(), fill_out.end(), out);
      } else {
        padded_row(yy, row.data());
        horizontal(row.data(), wide.data(), out);
      }
    };
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t pr = 0; pr < (rows + 1) / 2; ++pr) {  // rows in pairs: both frame rows -> the two-row kernel
      const int64_t r = 2 * pr;
      const bool both = r + 1 < rows && y_first + r >= top && y_first + r + 1 < top + h;
#if defined(__GNUC__)
      if (both) {
        padded_row(y_first + r, row.data());
        padded_row(y_first + r + 1, row_b.data());
        horizontal_pass2(row.data(), row_b.data(), src_w, s, cx.bounds.data(), kx.data(), cx.ksize, wide2.data(),
                         temp.data() + r * s * 3, temp.data() + (r + 1) * s * 3);
        continue;
      }
#else
      (void)both;
#endif
      one_row(r);
      if (r + 1 < rows) one_row(r + 1);
    }
  }
  // Vertical pass, then normalisation, written channels-first.
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
  for (int64_t yy = 0; yy < s; ++yy) {
    const int32_t ymin = cy.bounds[2 * yy] - static_cast<int32_t>(y_first), ymax = cy.bounds[2 * yy + 1];
    const int32_t* k = ky.data() + yy * cy.ksize;
    for (int64_t xx = 0; xx < s; ++xx) {
      int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int32_t y = 0; y < ymax; ++y) {
        const uint8_t* p = temp.data() + ((ymin + y) * s + xx) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += p[c] * k[y];
      }
      for (int c = 0; c < 3; ++c) store(c, yy, xx, clip8(acc[c]));
    }
  }
  return kOk;
}

namespace {

// SpatialRGPT's mask resize: OpenCV INTER_NEAREST from H x W straight to S x S (no padding).
Status preprocess_masks_nearest(const PreprocessMasksArgs& a) {
  const int64_t n = a.masks.shape[0], h = a.masks.shape[1], w = a.masks.shape[2], s = a.out.shape[1];
  const float* md = static_cast<const float*>(a.masks.data);
  float* od = static_cast<float*>(a.out.data);
  std::vector<int64_t> xs(static_cast<size_t>(s)), ys(static_cast<size_t>(s));
  for (int64_t i = 0; i < s; ++i) xs[i] = nearest_index(i, w, s), ys[i] = nearest_index(i, h, s);
  const int nt = nthreads(a.threads);
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
#endif
  for (int64_t k = 0; k < n; ++k)
    for (int64_t y = 0; y < s; ++y)
      for (int64_t x = 0; x < s; ++x)
        od[a.out.offset(k, y, x)] = std::min(std::max(md[a.masks.offset(k, ys[y], xs[x])], 0.0f), 1.0f);
  return kOk;
}

}  // namespace

Status preprocess_masks_cpu(const PreprocessMasksArgs& a) {
  if (a.resize) return preprocess_masks_nearest(a);
  const int64_t n = a.masks.shape[0], h = a.masks.shape[1], w = a.masks.shape[2], s = a.out.shape[1];
  const int64_t side = std::max(h, w), top = (side - h) / 2, left = (side - w) / 2;
  const float* md = static_cast<const float*>(a.masks.data);
  float* od = static_cast<float*>(a.out.data);
  auto pixel = [&](int64_t k, int64_t yy, int64_t xx) -> float {
    if (yy < top || yy >= top + h || xx < left || xx >= left + w) return 0.0f;
    return md[a.masks.offset(k, yy - top, xx - left)];
  };
  const int nt = nthreads(a.threads);
  if (side == s) {
    for (int64_t k = 0; k < n; ++k)
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x)
          od[a.out.offset(k, y, x)] = std::min(std::max(pixel(k, y, x), 0.0f), 1.0f);
    return kOk;
  }
  const ResampleCoeffs co = resample_coeffs(side, s, Filter::kBilinear);
  const int64_t y_first = co.bounds[0];
  const int64_t rows = co.bounds[2 * s - 2] + co.bounds[2 * s - 1] - y_first;
  for (int64_t k = 0; k < n; ++k) {
    std::vector<float> temp(static_cast<size_t>(rows * s), 0.0f);  // pad rows resample to exact zeros
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
      std::vector<float> row(static_cast<size_t>(side), 0.0f);  // per thread; pad columns stay zero
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t yy = y_first + r;
        if (yy < top || yy >= top + h) continue;
        for (int64_t x = 0; x < w; ++x) row[left + x] = md[a.masks.offset(k, yy - top, x)];
        for (int64_t xx = 0; xx < s; ++xx) {
          const int32_t xmin = co.bounds[2 * xx], xmax = co.bounds[2 * xx + 1];
          const double* kx = co.coeffs.data() + xx * co.ksize;
          const float* px = row.data() + xmin;
          double acc = 0.0;
          for (int32_t x = 0; x < xmax; ++x) acc += px[x] * kx[x];
          temp[r * s + xx] = static_cast<float>(acc);
        }
      }
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t yy = 0; yy < s; ++yy) {
      const int32_t ymin = co.bounds[2 * yy] - static_cast<int32_t>(y_first), ymax = co.bounds[2 * yy + 1];
      const double* ky = co.coeffs.data() + yy * co.ksize;
      for (int64_t xx = 0; xx < s; ++xx) {
        double acc = 0.0;
        for (int32_t y = 0; y < ymax; ++y) acc += temp[(ymin + y) * s + xx] * ky[y];
        const float v = static_cast<float>(acc);
        od[a.out.offset(k, yy, xx)] = std::min(std::max(v, 0.0f), 1.0f);
      }
    }
  }
  return kOk;
}

}  // namespace rgpt
