// rgpt_rt._C_cuda: the CUDA native module. Built only when nvcc is found; cudart is linked statically so the
// module imports on a machine without a GPU. The ops are rgpt_rt._C's bindings (csrc/ops/bind_<op>.h)
// compiled with RGPT_USE_CUDA: the same signatures and validators, launching the CUDA twins with a
// caller-allocated workspace on a cudaStream_t (keywords workspace, workspace_bytes, stream); tensors are
// (pointer, dtype, shape, strides, extent) descriptions of device memory. A missing GPU or a CUDA error is a
// RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bind_common.h"
#include "device_probe.h"

namespace py = pybind11;

namespace {

void check(int code, const char* what) {
  if (code != 0) throw std::runtime_error(std::string(what) + " failed: " + rgpt_cuda_error_string(code));
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

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "rgpt_rt CUDA native ops";
  rgpt::bind_common(m);
  m.def("device_count", &device_count, "Number of visible CUDA devices (0 without a driver or GPU).");
  m.def("runtime_version", []() {
    int v = 0;
    check(rgpt_runtime_version(&v), "cudaRuntimeGetVersion");
    return v;
  });
  m.def("probe", &probe, py::arg("n"),
        "Launch a tiny kernel writing out[i] = 3*i + 1 on device 0 and return the result; raises "
        "RuntimeError when no GPU is usable. Proves the compiled SM code runs on this GPU.");
}
