// CPU twin of kernels/region_pool.cu, organised like the CUDA kernel: the map is walked band by band, where
// band i holds the rows of grid row i's pooling windows. A band of a few channels is small enough to stay in
// L1 while it feeds both branches, and the mask weights of one band (all regions) stay in L2 while every
// channel block passes over them, so the map is read once from memory.
//
// Region branch micro-kernel: 4 channels x 2 regions of partial dot products in 8-lane vectors
// (GCC/Clang vector extensions; an AVX2+FMA clone is chosen at run time on x86-64, NEON on aarch64).
// Zero mask weights are skipped per (band, region pair) using each region's non-zero column range.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_dispatch.h"
#include "region_pool.h"

namespace rgpt {

namespace {

constexpr int kCB = 8;  // channels per block: one weight load feeds 8 multiply-adds

struct Weights {
  int64_t n = 0, h = 0, w = 0;
  std::vector<float> w_;        // [N, H, W] masks bilinearly resized to the map grid
  std::vector<float> inv;       // [N] 1 / (sum + eps), 0 for an all-zero mask
  std::vector<int32_t> x0, x1;  // [N, H] non-zero column range of each row (x0 >= x1: empty row)
};

Weights resize_masks(const View& m, int64_t h, int64_t w, float eps, int nthreads) {
  Weights r;
  r.n = m.shape[0], r.h = h, r.w = w;
  const int64_t n = r.n, hm = m.shape[1], wm = m.shape[2];
  r.w_.assign(static_cast<size_t>(n * h * w), 0.0f);
  r.inv.assign(static_cast<size_t>(n), 0.0f);
  r.x0.assign(static_cast<size_t>(n * h), static_cast<int32_t>(w));
  r.x1.assign(static_cast<size_t>(n * h), 0);
  std::vector<LinearTap> ty(static_cast<size_t>(h)), tx(static_cast<size_t>(w));
  for (int64_t y = 0; y < h; ++y) ty[y] = linear_tap(y, hm, h);
  for (int64_t x = 0; x < w; ++x) tx[x] = linear_tap(x, wm, w);
  const float* md = static_cast<const float*>(m.data);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
#else
  (void)nthreads;
#endif
  for (int64_t k = 0; k < n; ++k) {
    double total = 0.0;
    for (int64_t y = 0; y < h; ++y) {
      const LinearTap a = ty[y];
      float* out = r.w_.data() + (k * h + y) * w;
      int32_t lo = static_cast<int32_t>(w), hi = 0;
      for (int64_t x = 0; x < w; ++x) {
        const LinearTap b = tx[x];
        const float v00 = md[m.offset(k, a.i0, b.i0)], v01 = md[m.offset(k, a.i0, b.i1)];
        const float v10 = md[m.offset(k, a.i1, b.i0)], v11 = md[m.offset(k, a.i1, b.i1)];
        const float v = a.w0 * (b.w0 * v00 + b.w1 * v01) + a.w1 * (b.w0 * v10 + b.w1 * v11);
        out[x] = v;
        if (v != 0.0f) {
          total += v;
          lo = std::min(lo, static_cast<int32_t>(x));
          hi = static_cast<int32_t>(x) + 1;
        }
      }
      r.x0[k * h + y] = lo;
      r.x1[k * h + y] = hi;
    }
    r.inv[k] = total > 0.0 ? static_cast<float>(1.0 / (total + static_cast<double>(eps))) : 0.0f;
  }
  return r;
}

#if defined(__GNUC__)
typedef float V8 __attribute__((vector_size(32)));

inline V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float hsum(V8 v) {
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

// acc[c] += sum over rows y of sum_{x in [x0_y, x1_y)} w[y*W + x] * f_c[y*W + x] for kCB channel bands f:
// one region, its own non-zero column range on every row, so sparse masks cost only their support.
// The body is compiled twice, for the baseline and for AVX2+FMA, and picked once at load time by what the CPU
// reports (GCC's target_clones picks "arch=" clones by CPU model, not by features, so it is not used here).
__attribute__((always_inline)) inline void dot_rows_body(const float* const* f, const float* w, int64_t width,
                                                         int64_t rows, const int32_t* x0, const int32_t* x1,
                                                         float* acc) {
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
  float tail[kCB] = {};
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = r * width;
    int64_t x = base + x0[r];
    const int64_t end = base + x1[r];
    for (; x + 8 <= end; x += 8) {
      const V8 u = load8(w + x);
      a0 += load8(f[0] + x) * u, a1 += load8(f[1] + x) * u, a2 += load8(f[2] + x) * u,
          a3 += load8(f[3] + x) * u;
      a4 += load8(f[4] + x) * u, a5 += load8(f[5] + x) * u, a6 += load8(f[6] + x) * u,
          a7 += load8(f[7] + x) * u;
    }
    for (; x < end; ++x)
      for (int c = 0; c < kCB; ++c) tail[c] += f[c][x] * w[x];
  }
  const V8 a[kCB] = {a0, a1, a2, a3, a4, a5, a6, a7};
  for (int c = 0; c < kCB; ++c) acc[c] += hsum(a[c]) + tail[c];
}

using DotRows = void (*)(const float* const*, const float*, int64_t, int64_t, const int32_t*, const int32_t*,
                         float*);

void dot_rows_base(const float* const* f, const float* w, int64_t width, int64_t rows, const int32_t* x0,
                   const int32_t* x1, float* acc) {
  dot_rows_body(f, w, width, rows, x0, x1, acc);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void dot_rows_avx2(const float* const* f, const float* w, int64_t width,
                                                       int64_t rows, const int32_t* x0, const int32_t* x1,
                                                       float* acc) {
  dot_rows_body(f, w, width, rows, x0, x1, acc);
}
#endif

DotRows pick_dot_rows() {
#if defined(__x86_64__)
  if (cpu_has_avx2(true)) return dot_rows_avx2;
#endif
  return dot_rows_base;
}

const DotRows dot_rows = pick_dot_rows();
#else
void dot_rows(const float* const* f, const float* w, int64_t width, int64_t rows, const int32_t* x0,
              const int32_t* x1, float acc[kCB]) {
  for (int c = 0; c < kCB; ++c) {
    float s = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t x = r * width + x0[r]; x < r * width + x1[r]; ++x) s += f[c][x] * w[x];
    acc[c] += s;
  }
}
#endif

// Rows [y0, y1) of channel c as fp32 with row stride w: a pointer into the map when it already is packed
// fp32, else a converted copy in `buf`.
const float* band_rows(const View& f, int64_t c, int64_t y0, int64_t y1, float* buf) {
  const int64_t w = f.shape[2];
  if (f.dtype == DType::kF32 && f.stride[2] == 1 && f.stride[1] == w)
    return static_cast<const float*>(f.data) + f.offset(c, y0, 0);
  for (int64_t y = y0; y < y1; ++y) {
    float* dst = buf + (y - y0) * w;
    const int64_t base = f.offset(c, y, 0);
    if (f.stride[2] == 1) {
      if (f.dtype == DType::kF32) {
        std::memcpy(dst, static_cast<const float*>(f.data) + base, static_cast<size_t>(w) * sizeof(float));
      } else {
        const uint16_t* src = static_cast<const uint16_t*>(f.data) + base;
        if (f.dtype == DType::kF16)
          for (int64_t x = 0; x < w; ++x) dst[x] = half_bits_to_float(src[x]);
        else
          for (int64_t x = 0; x < w; ++x) dst[x] = bf16_bits_to_float(src[x]);
      }
    } else {
      for (int64_t x = 0; x < w; ++x) dst[x] = load_as_float(f.data, base + x * f.stride[2], f.dtype);
    }
  }
  return buf;
}

}  // namespace

Status region_pool_cpu(const RegionPoolArgs& a) {
  const int64_t c_all = a.fmap.shape[0], h = a.fmap.shape[1], w = a.fmap.shape[2];
  const int64_t n = a.masks.shape[0], g = a.grid;
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#else
  const int nthreads = 1;
#endif
  const Weights rw = resize_masks(a.masks, h, w, a.eps, nthreads);
  std::vector<int64_t> ylo(g), yhi(g), xlo(g), xhi(g), own_hi(g);
  int64_t band_max = 0;
  for (int64_t i = 0; i < g; ++i) {
    pool_window(i, h, g, &ylo[i], &yhi[i]);
    pool_window(i, w, g, &xlo[i], &xhi[i]);
    own_hi[i] = i + 1 < g ? ((i + 1) * h) / g : h;  // rows [ylo_i, own_hi_i) belong to band i for regions
    band_max = std::max(band_max, yhi[i] - ylo[i]);
  }
  // Flat non-zero span of each region inside each band's own rows, relative to the band's first row.
  std::vector<int64_t> span(static_cast<size_t>(n * g * 2), 0);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < g; ++i) {
      int64_t lo = INT64_MAX, hi = 0;
      for (int64_t y = ylo[i]; y < own_hi[i]; ++y) {
        if (rw.x0[k * h + y] >= rw.x1[k * h + y]) continue;
        lo = std::min(lo, (y - ylo[i]) * w + rw.x0[k * h + y]);
        hi = std::max(hi, (y - ylo[i]) * w + rw.x1[k * h + y]);
      }
      span[(k * g + i) * 2] = lo == INT64_MAX ? 0 : lo;
      span[(k * g + i) * 2 + 1] = hi;
    }
  // Region accumulators [N, C] in fp32; each thread owns whole channel blocks, so no two threads share one.
  std::vector<float> racc(static_cast<size_t>(n * c_all), 0.0f);
  const int64_t blocks = (c_all + kCB - 1) / kCB;
  // Bands outside, channel blocks inside: one band's mask weights (all regions) stay hot in cache while
  // every channel block passes over them. The static schedule gives each thread the same channel blocks in
  // every band, so the fp32 region accumulators of a channel are only ever touched by one thread.
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
#endif
  {
    std::vector<float> buf(static_cast<size_t>(kCB * band_max * w));
    std::vector<float> zero(static_cast<size_t>(band_max * w), 0.0f);
    std::vector<float> colsum(static_cast<size_t>(w));
    for (int64_t i = 0; i < g; ++i) {
      const int64_t rows = yhi[i] - ylo[i];
#ifdef _OPENMP
#pragma omp for schedule(static) nowait
#endif
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t c0 = blk * kCB;
        const int cb = static_cast<int>(std::min<int64_t>(kCB, c_all - c0));
        const float* band[kCB];
        for (int c = 0; c < kCB; ++c)
          band[c] =
              c < cb ? band_rows(a.fmap, c0 + c, ylo[i], yhi[i], buf.data() + c * band_max * w) : zero.data();
        // Image tokens of grid row i: column sums over the band's rows, then the window sums along x.
        for (int c = 0; c < cb; ++c) {
          float* col = colsum.data();
          std::memcpy(col, band[c], static_cast<size_t>(w) * sizeof(float));
          for (int64_t r = 1; r < rows; ++r) {
            const float* src = band[c] + r * w;
            for (int64_t x = 0; x < w; ++x) col[x] += src[x];
          }
          for (int64_t j = 0; j < g; ++j) {
            float s = 0.0f;
            for (int64_t x = xlo[j]; x < xhi[j]; ++x) s += col[x];
            store_from_float(a.image.data, a.image.offset(i * g + j, c0 + c), a.image.dtype,
                             s / static_cast<float>(rows * (xhi[j] - xlo[j])));
          }
        }
        // Region partial sums over the rows this band owns, one region at a time over its non-zero columns.
        const int64_t own = own_hi[i] - ylo[i];
        for (int64_t k = 0; k < n; ++k) {
          if (span[(k * g + i) * 2] >= span[(k * g + i) * 2 + 1]) continue;  // no weight in this band
          float acc[kCB] = {};
          dot_rows(band, rw.w_.data() + (k * h + ylo[i]) * w, w, own, rw.x0.data() + k * h + ylo[i],
                   rw.x1.data() + k * h + ylo[i], acc);
          for (int c = 0; c < cb; ++c) racc[k * c_all + c0 + c] += acc[c];
        }
      }
    }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp for schedule(static)
#endif
    for (int64_t k = 0; k < n; ++k)
      for (int64_t c = 0; c < c_all; ++c)
        store_from_float(a.regions.data, a.regions.offset(k, c), a.regions.dtype,
                         racc[k * c_all + c] * rw.inv[k]);
  }
  return kOk;
}

}  // namespace rgpt
