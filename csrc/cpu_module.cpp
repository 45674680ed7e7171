// rgpt_rt._C: the CPU native module. Always built. Each op: validate (op_checks), then the CPU twin in
// kernels/, with the GIL released while it runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "bind_common.h"
#include "buffer_view.h"
#include "decode_attention.h"
#include "int8_linear.h"
#include "op_checks.h"
#include "preprocess_frame.h"
#include "region_pool.h"
#include "rms_norm.h"
#include "rope_kv_write.h"

namespace py = pybind11;
using namespace rgpt;

namespace {

// Run a CPU twin with the GIL released and turn a failed Status into an exception (the twins return
// kOutOfBounds only for a decode position outside the KV cache; validation has already run).
template <typename Args>
void run(Status (*twin)(const Args&), const Args& a, const char* op) {
  Status st;
  {
    py::gil_scoped_release release;
    st = twin(a);
  }
  if (st == kOutOfBounds)
    throw std::invalid_argument(std::string(op) + ": a position is outside the KV cache [0, S)");
  if (st != kOk) throw std::runtime_error(std::string(op) + ": failed with status " + std::to_string(st));
}

void region_pool(const py::buffer& fmap, const std::string& fmap_dtype, const py::buffer& masks,
                 const py::buffer& image, const py::buffer& regions, const std::string& out_dtype, int grid,
                 float eps, int threads) {
  RegionPoolArgs a;
  a.fmap = view_from_buffer(fmap, parse_dtype(fmap_dtype), "feature_map", false);
  a.masks = view_from_buffer(masks, DType::kF32, "masks", false);
  a.image = view_from_buffer(image, parse_dtype(out_dtype), "image output", true);
  a.regions = view_from_buffer(regions, parse_dtype(out_dtype), "regions output", true);
  a.grid = grid;
  a.eps = eps;
  a.threads = threads;
  check_region_pool(a);
  run(region_pool_cpu, a, "region_pool");
}

void preprocess_frame(const py::buffer& frame, const py::buffer& out, const std::string& out_dtype, bool bgr,
                      std::array<int, 3> fill, std::array<float, 3> mean, std::array<float, 3> std,
                      int threads) {
  PreprocessFrameArgs a;
  a.frame = view_from_buffer(frame, DType::kU8, "frame", false);
  a.out = view_from_buffer(out, parse_dtype(out_dtype), "output", true);
  a.bgr = bgr ? 1 : 0;
  for (int c = 0; c < 3; ++c) {
    a.fill[c] = fill[c];
    a.mean[c] = mean[c];
    a.std[c] = std[c];
  }
  a.threads = threads;
  check_preprocess_frame(a);
  run(preprocess_frame_cpu, a, "preprocess_frame");
}

void preprocess_masks(const py::buffer& masks, const py::buffer& out, int threads) {
  PreprocessMasksArgs a;
  a.masks = view_from_buffer(masks, DType::kF32, "masks", false);
  a.out = view_from_buffer(out, DType::kF32, "output", true);
  a.threads = threads;
  check_preprocess_masks(a);
  run(preprocess_masks_cpu, a, "preprocess_masks");
}

void int8_linear(const py::buffer& x, const std::string& x_dtype, const py::buffer& q,
                 const py::buffer& scale, const py::buffer& y, int threads) {
  Int8LinearArgs a;
  a.x = view_from_buffer(x, parse_dtype(x_dtype), "x", false);
  a.q = view_from_buffer(q, DType::kI8, "weight", false);
  a.scale = view_from_buffer(scale, DType::kF32, "scale", false);
  a.y = view_from_buffer(y, parse_dtype(x_dtype), "output", true);
  a.threads = threads;
  check_int8_linear(a);
  run(int8_linear_cpu, a, "int8_linear");
}

void rms_norm(const py::buffer& x, const std::string& dtype, const py::buffer& weight, const py::buffer& y,
              const py::object& residual, const py::object& sum, float eps, int threads) {
  RmsNormArgs a;
  const DType t = parse_dtype(dtype);
  a.x = view_from_buffer(x, t, "x", false);
  a.weight = view_from_buffer(weight, t, "weight", false);
  a.y = view_from_buffer(y, t, "output", true);
  a.add = residual.is_none() ? 0 : 1;
  if (a.add) a.residual = view_from_buffer(residual.cast<py::buffer>(), t, "residual", false);
  a.has_sum = sum.is_none() ? 0 : 1;
  if (a.has_sum) a.sum = view_from_buffer(sum.cast<py::buffer>(), t, "sum output", true);
  a.eps = eps;
  a.threads = threads;
  check_rms_norm(a);
  run(rms_norm_cpu, a, "rms_norm");
}

void rope_kv_write(const py::buffer& q, const py::buffer& k, const py::buffer& v, const std::string& dtype,
                   const py::buffer& pos, const py::buffer& inv_freq, const py::buffer& q_out,
                   const py::buffer& k_cache, const py::buffer& v_cache, const std::string& cache_dtype) {
  RopeKvWriteArgs a;
  const DType t = parse_dtype(dtype), ct = parse_dtype(cache_dtype);
  a.q = view_from_buffer(q, t, "q", false);
  a.k = view_from_buffer(k, t, "k", false);
  a.v = view_from_buffer(v, t, "v", false);
  a.pos = view_from_buffer(pos, DType::kI64, "pos", false);
  a.inv_freq = view_from_buffer(inv_freq, DType::kF32, "inv_freq", false);
  a.q_out = view_from_buffer(q_out, t, "q output", true);
  a.k_cache = view_from_buffer(k_cache, ct, "k_cache", true);
  a.v_cache = view_from_buffer(v_cache, ct, "v_cache", true);
  check_rope_kv_write(a);
  run(rope_kv_write_cpu, a, "rope_kv_write");
}

void decode_attention(const py::buffer& q, const std::string& dtype, const py::buffer& k_cache,
                      const py::buffer& v_cache, const std::string& cache_dtype, const py::buffer& pos,
                      const py::buffer& out, float scale, const py::object& shared, int threads) {
  DecodeAttentionArgs a;
  const DType t = parse_dtype(dtype), ct = parse_dtype(cache_dtype);
  a.q = view_from_buffer(q, t, "q", false);
  a.k_cache = view_from_buffer(k_cache, ct, "k_cache", false);
  a.v_cache = view_from_buffer(v_cache, ct, "v_cache", false);
  a.pos = view_from_buffer(pos, DType::kI64, "pos", false);
  a.out = view_from_buffer(out, t, "output", true);
  a.has_shared = shared.is_none() ? 0 : 1;
  if (a.has_shared) a.shared = view_from_buffer(shared.cast<py::buffer>(), DType::kI64, "shared", false);
  a.scale = scale;
  a.threads = threads;
  check_decode_attention(a);
  run(decode_attention_cpu, a, "decode_attention");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "rgpt_rt CPU native ops";
  m.def("build_info", &rgpt::build_info_dict, "What this module was built with (dict).");
  m.def("region_pool", &region_pool, py::arg("feature_map"), py::arg("fmap_dtype"), py::arg("masks"),
        py::arg("image"), py::arg("regions"), py::arg("out_dtype"), py::arg("grid"), py::arg("eps"),
        py::arg("threads") = 0, "Fused patch merge + mask pooling (see kernels/region_pool.h).");
  m.def("preprocess_frame", &preprocess_frame, py::arg("frame"), py::arg("out"), py::arg("out_dtype"),
        py::arg("bgr"), py::arg("fill"), py::arg("mean"), py::arg("std"), py::arg("threads") = 0,
        "Pad to square, Pillow-exact bicubic resize, normalise (see kernels/preprocess_frame.h).");
  m.def("int8_linear", &int8_linear, py::arg("x"), py::arg("x_dtype"), py::arg("weight"), py::arg("scale"),
        py::arg("out"), py::arg("threads") = 0,
        "y = x @ (weight * scale[:, None]).T (see kernels/int8_linear.h).");
  m.def("preprocess_masks", &preprocess_masks, py::arg("masks"), py::arg("out"), py::arg("threads") = 0,
        "Pad to square and Pillow-exact bilinear resize of float masks.");
  m.def("rms_norm", &rms_norm, py::arg("x"), py::arg("dtype"), py::arg("weight"), py::arg("out"),
        py::arg("residual") = py::none(), py::arg("sum") = py::none(), py::arg("eps") = 1e-6f,
        py::arg("threads") = 0, "RMSNorm, optionally after a residual add (see kernels/rms_norm.h).");
  m.def("rope_kv_write", &rope_kv_write, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("dtype"),
        py::arg("pos"), py::arg("inv_freq"), py::arg("q_out"), py::arg("k_cache"), py::arg("v_cache"),
        py::arg("cache_dtype"),
        "Rotary embedding + KV-cache write of a decode step (see kernels/rope_kv_write.h).");
  m.def("decode_attention", &decode_attention, py::arg("q"), py::arg("dtype"), py::arg("k_cache"),
        py::arg("v_cache"), py::arg("cache_dtype"), py::arg("pos"), py::arg("out"), py::arg("scale"),
        py::arg("shared") = py::none(), py::arg("threads") = 0,
        "One-token attention over each row's KV cache (see kernels/decode_attention.h).");
}
