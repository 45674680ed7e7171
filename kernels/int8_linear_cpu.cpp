// CPU twin of kernels/int8_linear.cu: x rows converted to fp32 once, then one output column at a time
// (parallel over columns) with 8 independent partial sums per row so the compiler can vectorise.
#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "int8_linear.h"

namespace rgpt {

Status int8_linear_cpu(const Int8LinearArgs& a) {
  const int64_t m = a.x.shape[0], k = a.x.shape[1], n = a.q.shape[0];
  std::vector<float> xf(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c) xf[r * k + c] = load_as_float(a.x.data, a.x.offset(r, c), a.x.dtype);
  const int8_t* q = static_cast<const int8_t*>(a.q.data);
  const float* scale = static_cast<const float*>(a.scale.data);
#ifdef _OPENMP
  const int nthreads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
  for (int64_t col = 0; col < n; ++col) {
    const int8_t* w = q + a.q.offset(col, 0);
    std::vector<float> wf(static_cast<size_t>(k));
    for (int64_t c = 0; c < k; ++c) wf[c] = static_cast<float>(w[c]);
    const float s = scale[a.scale.offset(col)];
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = xf.data() + r * k;
      float lanes[8] = {};
      int64_t c = 0;
      for (; c + 8 <= k; c += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += xr[c + l] * wf[c + l];
      float acc = 0.0f;
      for (int l = 0; l < 8; ++l) acc += lanes[l];
      for (; c < k; ++c) acc += xr[c] * wf[c];
      store_from_float(a.y.data, a.y.offset(r, col), a.y.dtype, acc * s);
    }
  }
  return kOk;
}

}  // namespace rgpt
