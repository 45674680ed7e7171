// rgpt_rt._C_cuda: the CUDA native module. Built only when nvcc is found; cudart is linked statically so the
// module imports on a machine without a GPU. Ops take device pointers described by (pointer, dtype, shape,
// strides, extent) plus a caller-allocated workspace and a cudaStream_t (torch's current stream); they are
// validated exactly like the CPU ops before any launch. A missing GPU or a CUDA error is a RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bind_common.h"
#include "buffer_view.h"
#include "decode_attention.h"
#include "device_probe.h"
#include "int8_linear.h"
#include "op_checks.h"
#include "preprocess_frame.h"
#include "region_pool.h"
#include "rms_norm.h"
#include "rope_kv_write.h"

namespace py = pybind11;
using namespace rgpt;

namespace {

void check(int code, const char* what) {
  if (code != 0) throw std::runtime_error(std::string(what) + " failed: " + rgpt_cuda_error_string(code));
}

void check_status(Status st, int cuda_error, const char* op) {
  switch (st) {
    case kOk:
      return;
    case kCudaError:
      throw std::runtime_error(std::string(op) + ": CUDA error: " + rgpt_cuda_error_string(cuda_error));
    case kTooLarge:
      throw std::invalid_argument(
          std::string(op) +
          ": input too large for the CUDA kernel (the op's header in kernels/ gives its limits)");
    case kBadArgument:
      throw std::invalid_argument(std::string(op) + ": workspace missing or smaller than required");
    default:
      throw std::runtime_error(std::string(op) + ": failed with status " +
                               std::to_string(static_cast<int>(st)));
  }
}

int device_count() {
  int n = 0;
  if (rgpt_device_count(&n) != 0) return 0;  // no driver or no device is an answer, not an error
  return n;
}

std::vector<int> probe(int n) {
  if (n <= 0 || n > (1 << 20)) throw std::invalid_argument("probe: n must be in [1, 2^20]");
  std::vector<int> out(static_cast<size_t>(n), -1);
  check(rgpt_device_probe(out.data(), n), "device probe");
  return out;
}

using Dims = std::vector<int64_t>;

void region_pool(uintptr_t f, const std::string& fd, const Dims& fs, const Dims& fst, int64_t fe, uintptr_t m,
                 const std::string& md, const Dims& ms, const Dims& mst, int64_t me, uintptr_t i,
                 const std::string& id, const Dims& is, const Dims& ist, int64_t ie, uintptr_t r,
                 const std::string& rd, const Dims& rs, const Dims& rst, int64_t re, int grid, float eps,
                 uintptr_t ws, int64_t ws_bytes, uintptr_t stream) {
  RegionPoolArgs a;
  a.fmap = view_from_pointer(f, fd, fs, fst, fe, "feature_map");
  a.masks = view_from_pointer(m, md, ms, mst, me, "masks");
  a.image = view_from_pointer(i, id, is, ist, ie, "image output");
  a.regions = view_from_pointer(r, rd, rs, rst, re, "regions output");
  a.grid = grid;
  a.eps = eps;
  check_region_pool(a);
  int err = 0;
  Status st;
  {
    py::gil_scoped_release release;
    st = region_pool_cuda(a, reinterpret_cast<void*>(ws), ws_bytes, reinterpret_cast<void*>(stream), &err);
  }
  check_status(st, err, "region_pool");
}

void preprocess_frame(uintptr_t f, const std::string& fd, const Dims& fs, const Dims& fst, int64_t fe,
                      uintptr_t o, const std::string& od, const Dims& os, const Dims& ost, int64_t oe,
                      bool bgr, std::array<int, 3> fill, std::array<float, 3> mean, std::array<float, 3> std,
                      uintptr_t ws, int64_t ws_bytes, uintptr_t stream) {
  PreprocessFrameArgs a;
  a.frame = view_from_pointer(f, fd, fs, fst, fe, "frame");
  a.out = view_from_pointer(o, od, os, ost, oe, "output");
  a.bgr = bgr ? 1 : 0;
  for (int c = 0; c < 3; ++c) {
    a.fill[c] = fill[c];
    a.mean[c] = mean[c];
    a.std[c] = std[c];
  }
  check_preprocess_frame(a);
  int err = 0;
  Status st;
  {
    py::gil_scoped_release release;
    st = preprocess_frame_cuda(a, reinterpret_cast<void*>(ws), ws_bytes, reinterpret_cast<void*>(stream),
                               &err);
  }
  check_status(st, err, "preprocess_frame");
}

void preprocess_masks(uintptr_t m, const std::string& md, const Dims& ms, const Dims& mst, int64_t me,
                      uintptr_t o, const std::string& od, const Dims& os, const Dims& ost, int64_t oe,
                      uintptr_t ws, int64_t ws_bytes, uintptr_t stream) {
  PreprocessMasksArgs a;
  a.masks = view_from_pointer(m, md, ms, mst, me, "masks");
  a.out = view_from_pointer(o, od, os, ost, oe, "output");
  check_preprocess_masks(a);
  int err = 0;
  Status st;
  {
    py::gil_scoped_release release;
    st = preprocess_masks_cuda(a, reinterpret_cast<void*>(ws), ws_bytes, reinterpret_cast<void*>(stream),
                               &err);
  }
  check_status(st, err, "preprocess_masks");
}

void int8_linear(uintptr_t x, const std::string& xd, const Dims& xs, const Dims& xst, int64_t xe, uintptr_t q,
                 const std::string& qd, const Dims& qs, const Dims& qst, int64_t qe, uintptr_t sc,
                 const std::string& sd, const Dims& ss, const Dims& sst, int64_t se, uintptr_t y,
                 const std::string& yd, const Dims& ys, const Dims& yst, int64_t ye, uintptr_t stream) {
  Int8LinearArgs a;
  a.x = view_from_pointer(x, xd, xs, xst, xe, "x");
  a.q = view_from_pointer(q, qd, qs, qst, qe, "weight");
  a.scale = view_from_pointer(sc, sd, ss, sst, se, "scale");
  a.y = view_from_pointer(y, yd, ys, yst, ye, "output");
  check_int8_linear(a);
  int err = 0;
  Status st;
  {
    py::gil_scoped_release release;
    st = int8_linear_cuda(a, reinterpret_cast<void*>(stream), &err);
  }
  check_status(st, err, "int8_linear");
}

// A device tensor as passed from Python: (pointer, dtype, shape, strides, extent).
using DevTensor = std::tuple<uintptr_t, std::string, Dims, Dims, int64_t>;

View dev_view(const DevTensor& t, const char* name) {
  return view_from_pointer(std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t),
                           name);
}

template <typename Launch>
void launch(Launch&& fn, const char* op) {
  int err = 0;
  Status st;
  {
    py::gil_scoped_release release;
    st = fn(&err);
  }
  check_status(st, err, op);
}

void rms_norm(const DevTensor& x, const DevTensor& weight, const DevTensor& y,
              const std::optional<DevTensor>& residual, const std::optional<DevTensor>& sum, float eps,
              uintptr_t stream) {
  RmsNormArgs a;
  a.x = dev_view(x, "x");
  a.weight = dev_view(weight, "weight");
  a.y = dev_view(y, "output");
  a.add = residual ? 1 : 0;
  if (residual) a.residual = dev_view(*residual, "residual");
  a.has_sum = sum ? 1 : 0;
  if (sum) a.sum = dev_view(*sum, "sum output");
  a.eps = eps;
  check_rms_norm(a);
  launch([&](int* e) { return rms_norm_cuda(a, reinterpret_cast<void*>(stream), e); }, "rms_norm");
}

void rope_kv_write(const DevTensor& q, const DevTensor& k, const DevTensor& v, const DevTensor& pos,
                   const DevTensor& inv_freq, const DevTensor& q_out, const DevTensor& k_cache,
                   const DevTensor& v_cache, uintptr_t stream) {
  RopeKvWriteArgs a;
  a.q = dev_view(q, "q");
  a.k = dev_view(k, "k");
  a.v = dev_view(v, "v");
  a.pos = dev_view(pos, "pos");
  a.inv_freq = dev_view(inv_freq, "inv_freq");
  a.q_out = dev_view(q_out, "q output");
  a.k_cache = dev_view(k_cache, "k_cache");
  a.v_cache = dev_view(v_cache, "v_cache");
  check_rope_kv_write(a);
  launch([&](int* e) { return rope_kv_write_cuda(a, reinterpret_cast<void*>(stream), e); }, "rope_kv_write");
}

void decode_attention(const DevTensor& q, const DevTensor& k_cache, const DevTensor& v_cache,
                      const DevTensor& pos, const DevTensor& out, float scale,
                      const std::optional<DevTensor>& shared, uintptr_t ws, int64_t ws_bytes,
                      uintptr_t stream) {
  DecodeAttentionArgs a;
  a.q = dev_view(q, "q");
  a.k_cache = dev_view(k_cache, "k_cache");
  a.v_cache = dev_view(v_cache, "v_cache");
  a.pos = dev_view(pos, "pos");
  a.out = dev_view(out, "output");
  a.has_shared = shared ? 1 : 0;
  if (shared) a.shared = dev_view(*shared, "shared");
  a.scale = scale;
  check_decode_attention(a);
  launch(
      [&](int* e) {
        return decode_attention_cuda(a, reinterpret_cast<void*>(ws), ws_bytes,
                                     reinterpret_cast<void*>(stream), e);
      },
      "decode_attention");
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "rgpt_rt CUDA native ops";
  m.def("build_info", &rgpt::build_info_dict, "What this module was built with (dict).");
  m.def("device_count", &device_count, "Number of visible CUDA devices (0 without a driver or GPU).");
  m.def("runtime_version", []() {
    int v = 0;
    check(rgpt_runtime_version(&v), "cudaRuntimeGetVersion");
    return v;
  });
  m.def("probe", &probe, py::arg("n"),
        "Launch a tiny kernel writing out[i] = 3*i + 1 on device 0 and return the result; raises "
        "RuntimeError when no GPU is usable. Proves the compiled SM code runs on this GPU.");
  m.def("region_pool_workspace_bytes", &region_pool_workspace_bytes, py::arg("n"), py::arg("h"), py::arg("w"),
        py::arg("c"));
  m.def("region_pool", &region_pool, "region_pool on device pointers (see rgpt_rt/ops/_torch_ops.py).");
  m.def("preprocess_workspace_bytes", &preprocess_workspace_bytes, py::arg("side"), py::arg("size"));
  m.def("preprocess_frame", &preprocess_frame, "preprocess_frame on device pointers.");
  m.def("preprocess_masks", &preprocess_masks, "preprocess_masks on device pointers.");
  m.def("int8_linear", &int8_linear, "int8_linear on device pointers.");
  m.def("rms_norm", &rms_norm, py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("residual"),
        py::arg("sum"), py::arg("eps"), py::arg("stream"),
        "rms_norm on device tensors (pointer, dtype, shape, strides, extent).");
  m.def("rope_kv_write", &rope_kv_write, "rope_kv_write on device tensors.");
  m.def("decode_attention_workspace_bytes", &decode_attention_workspace_bytes, py::arg("b"), py::arg("h"),
        py::arg("s"), py::arg("d"));
  m.def("decode_attention", &decode_attention, "decode_attention on device tensors.");
}
