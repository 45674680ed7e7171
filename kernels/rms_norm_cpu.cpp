// CPU twin of kernels/rms_norm.cu: one row at a time (parallel over rows), the sum of squares in fp64.
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rms_norm.h"

namespace rgpt {

Status rms_norm_cpu(const RmsNormArgs& a) {
  const int64_t m = a.x.shape[0], d = a.x.shape[1];
  const DType t = a.x.dtype;
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nthreads) if (m > 1)
#endif
  for (int64_t r = 0; r < m; ++r) {
    double ss = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      float h = load_as_float(a.x.data, a.x.offset(r, c), t);
      if (a.add) h = round_to(h + load_as_float(a.residual.data, a.residual.offset(r, c), t), t);
      if (a.has_sum) store_from_float(a.sum.data, a.sum.offset(r, c), t, h);
      ss += static_cast<double>(h) * h;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + a.eps));
    for (int64_t c = 0; c < d; ++c) {
      float h = load_as_float(a.x.data, a.x.offset(r, c), t);
      if (a.add) h = round_to(h + load_as_float(a.residual.data, a.residual.offset(r, c), t), t);
      const float w = load_as_float(a.weight.data, a.weight.offset(c), t);
      store_from_float(a.y.data, a.y.offset(r, c), t, w * round_to(h * inv, t));
    }
  }
  return kOk;
}

}  // namespace rgpt
