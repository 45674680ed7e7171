// rgpt_rt._C_cuda: the CUDA native module. Built only when nvcc is found; cudart is linked statically so the
// module imports on a machine without a GPU. Ops take device tensors as (pointer, dtype, shape, strides,
// extent) tuples plus a caller-allocated workspace and a cudaStream_t (torch's current stream); they are
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

// A device tensor as passed from Python: (pointer, dtype, shape, strides, extent in elements).
using DevTensor = std::tuple<uintptr_t, std::string, Dims, Dims, int64_t>;

View dev_view(const DevTensor& t, const char* name) {
  return view_from_pointer(std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t),
                           name);
}

// Run a launcher with the GIL released; turn its Status into an exception.
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

void* ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

void region_pool(const DevTensor& fmap, const DevTensor& masks, const DevTensor& image,
                 const DevTensor& regions, int grid, float eps, uintptr_t ws, int64_t ws_bytes,
                 uintptr_t stream) {
  RegionPoolArgs a;
  a.fmap = dev_view(fmap, "feature_map");
  a.masks = dev_view(masks, "masks");
  a.image = dev_view(image, "image output");
  a.regions = dev_view(regions, "regions output");
  a.grid = grid;
  a.eps = eps;
  check_region_pool(a);
  launch([&](int* e) { return region_pool_cuda(a, ptr(ws), ws_bytes, ptr(stream), e); }, "region_pool");
}

void preprocess_frame(const DevTensor& frame, const DevTensor& out, bool bgr, std::array<int, 3> fill,
                      std::array<float, 3> mean, std::array<float, 3> std, uintptr_t ws, int64_t ws_bytes,
                      uintptr_t stream) {
  PreprocessFrameArgs a;
  a.frame = dev_view(frame, "frame");
  a.out = dev_view(out, "output");
  a.bgr = bgr ? 1 : 0;
  for (int c = 0; c < 3; ++c) {
    a.fill[c] = fill[c];
    a.mean[c] = mean[c];
    a.std[c] = std[c];
  }
  check_preprocess_frame(a);
  launch([&](int* e) { return preprocess_frame_cuda(a, ptr(ws), ws_bytes, ptr(stream), e); },
         "preprocess_frame");
}

void preprocess_masks(const DevTensor& masks, const DevTensor& out, uintptr_t ws, int64_t ws_bytes,
                      uintptr_t stream) {
  PreprocessMasksArgs a;
  a.masks = dev_view(masks, "masks");
  a.out = dev_view(out, "output");
  check_preprocess_masks(a);
  launch([&](int* e) { return preprocess_masks_cuda(a, ptr(ws), ws_bytes, ptr(stream), e); },
         "preprocess_masks");
}

void int8_linear(const DevTensor& x, const DevTensor& q, const DevTensor& scale, const DevTensor& y,
                 uintptr_t stream) {
  Int8LinearArgs a;
  a.x = dev_view(x, "x");
  a.q = dev_view(q, "weight");
  a.scale = dev_view(scale, "scale");
  a.y = dev_view(y, "output");
  check_int8_linear(a);
  launch([&](int* e) { return int8_linear_cuda(a, ptr(stream), e); }, "int8_linear");
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
  launch([&](int* e) { return rms_norm_cuda(a, ptr(stream), e); }, "rms_norm");
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
  launch([&](int* e) { return rope_kv_write_cuda(a, ptr(stream), e); }, "rope_kv_write");
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
  launch([&](int* e) { return decode_attention_cuda(a, ptr(ws), ws_bytes, ptr(stream), e); },
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
