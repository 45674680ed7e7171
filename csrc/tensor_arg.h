// One tensor description for both native modules, and the helpers every op binding (csrc/ops/*.h) uses.
//
// A Tensor argument is either
//   - a (pointer, dtype, shape, strides, extent) sequence: memory the caller owns (a torch tensor's storage,
//   a
//     cuda-python allocation), `extent` counting the elements from `pointer` to the end of the allocation, or
//   - an object exporting the buffer protocol (a numpy array), rgpt_rt._C only: dtype, shape, strides and
//     extent come from the buffer itself, so the view cannot reach outside the Python object's memory.
// Every op binding turns its Tensors into Views with input()/output(), fills the op's Args, runs the op's one
// check_<op> validator (csrc/op_checks.h) and only then calls the CPU twin (rgpt_rt._C) or the CUDA launcher
// (rgpt_rt._C_cuda; this header is compiled with RGPT_USE_CUDA there).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "op_checks.h"
#if defined(RGPT_USE_CUDA)
#include "device_probe.h"
#endif

namespace rgpt {

struct Tensor {
  View view;
  bool host_buffer = false;  // came from the buffer protocol (host memory)
  bool readonly = false;
  std::string bad_format;      // a buffer whose element type no op takes (e.g. float64): reported by name
  std::shared_ptr<void> keep;  // the exported buffer stays valid during the call
};

// How an op runs: CPU threads (0 = all cores) or a CUDA workspace and stream (cudaStream_t as an integer).
struct Exec {
  int threads = 0;
  uintptr_t workspace = 0;
  int64_t workspace_bytes = 0;
  uintptr_t stream = 0;
};

// Every op binding ends with the same keyword-only arguments, in both modules (each module uses its half).
#define RGPT_EXEC_PARAMS int threads, uintptr_t workspace, int64_t workspace_bytes, uintptr_t stream
#define RGPT_EXEC_ARGS                                                               \
  pybind11::kw_only(), pybind11::arg("threads") = 0, pybind11::arg("workspace") = 0, \
                       pybind11::arg("workspace_bytes") = 0, pybind11::arg("stream") = 0
#define RGPT_EXEC \
  Exec { checked_threads(threads), workspace, workspace_bytes, stream }

// RGPT_TWIN(cpu call, cuda call): the expression this module runs (the other one is not even compiled).
#if defined(RGPT_USE_CUDA)
#define RGPT_TWIN(cpu, cuda) (cuda)
#else
#define RGPT_TWIN(cpu, cuda) (cpu)
#endif

#if defined(RGPT_USE_CUDA)
constexpr bool kCudaModule = true;
inline const char* cuda_error_string(int code) { return rgpt_cuda_error_string(code); }
#else
constexpr bool kCudaModule = false;
inline const char* cuda_error_string(int) { return "no CUDA in this module"; }
#endif

inline View as_view(const Tensor& t, const char* name, bool output) {
  if (!t.bad_format.empty())
    throw std::invalid_argument(std::string(name) + " has an element type no op takes (buffer format '" +
                                t.bad_format + "')");
  if (kCudaModule && t.host_buffer)
    throw std::invalid_argument(std::string(name) +
                                " is a host buffer; rgpt_rt._C_cuda takes (pointer, dtype, shape, strides, "
                                "extent) descriptions of device memory");
  if (output && t.readonly) throw std::invalid_argument(std::string(name) + " (an output) is read-only");
  return t.view;
}
inline View input(const Tensor& t, const char* name) { return as_view(t, name, false); }
inline View output(const Tensor& t, const char* name) { return as_view(t, name, true); }
inline View input(const std::optional<Tensor>& t, const char* name) { return t ? input(*t, name) : View{}; }
inline View output(const std::optional<Tensor>& t, const char* name) { return t ? output(*t, name) : View{}; }

// threads: negative is refused; more than the machine's hardware threads is clamped to them (a larger team
// only adds start-up cost and per-thread scratch memory, and 10^5 threads would exhaust the process).
inline int32_t checked_threads(int threads) {
  if (threads < 0)
    throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::min(threads, cores);
}

inline void* as_ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

// A Status from a twin or launcher as an exception (validation has already run).
inline void raise_status(Status st, int cuda_error, const char* op) {
  switch (st) {
    case kOk:
      return;
    case kOutOfBounds:
      throw std::invalid_argument(std::string(op) + ": a position is outside the KV cache [0, S)");
    case kTooLarge:
      throw std::invalid_argument(std::string(op) +
                                  ": input too large for the CUDA kernel (the op's header in kernels/ gives "
                                  "its limits)");
    case kBadArgument:
      throw std::invalid_argument(std::string(op) + ": workspace missing or smaller than required");
    case kCudaError:
      throw std::runtime_error(std::string(op) + ": CUDA error: " + cuda_error_string(cuda_error));
    default:
      throw std::runtime_error(std::string(op) + ": failed with status " +
                               std::to_string(static_cast<int>(st)));
  }
}

// Run the op's twin (CPU) or launcher (CUDA) with the GIL released; a failed Status becomes an exception.
template <typename Fn>
void run_op(const char* op, Fn&& fn) {
  int err = 0;
  Status st;
  {
    pybind11::gil_scoped_release release;
    st = fn(&err);
  }
  raise_status(st, err, op);
}

}  // namespace rgpt

namespace pybind11::detail {

template <>
struct type_caster<rgpt::Tensor> {
  PYBIND11_TYPE_CASTER(rgpt::Tensor, const_name("Tensor"));

  bool load(handle src, bool) {
    if (PyObject_CheckBuffer(src.ptr())) return load_buffer(src);
    if (!isinstance<sequence>(src) || isinstance<str>(src)) return false;
    const sequence s = reinterpret_borrow<sequence>(src);
    if (s.size() != 5 || !isinstance<str>(s[1])) return false;
    try {
      const auto shape = s[2].cast<std::vector<int64_t>>();
      const auto strides = s[3].cast<std::vector<int64_t>>();
      if (shape.size() != strides.size() || shape.size() > 4)
        throw std::invalid_argument("a tensor description needs shape and strides of the same length (<= 4)");
      value.view.data = reinterpret_cast<void*>(s[0].cast<uintptr_t>());
      value.view.dtype = rgpt::parse_dtype(s[1].cast<std::string>());
      value.view.ndim = static_cast<int32_t>(shape.size());
      for (size_t i = 0; i < shape.size(); ++i) {
        value.view.shape[i] = shape[i];
        value.view.stride[i] = strides[i];
      }
      value.view.extent = s[4].cast<int64_t>();
    } catch (const cast_error&) {
      return false;
    }
    return true;
  }

 private:
  bool load_buffer(handle src) {
    auto info = std::make_shared<buffer_info>(reinterpret_borrow<buffer>(src).request());
    rgpt::View& v = value.view;
    const std::string f = info->format;
    const char kind = f.empty() ? '?' : f.back();
    if (kind == 'f' && info->itemsize == 4)
      v.dtype = rgpt::DType::kF32;
    else if (kind == 'e' && info->itemsize == 2)
      v.dtype = rgpt::DType::kF16;
    else if (kind == 'B' && info->itemsize == 1)
      v.dtype = rgpt::DType::kU8;
    else if (kind == 'b' && info->itemsize == 1)
      v.dtype = rgpt::DType::kI8;
    else if ((kind == 'q' || kind == 'l') && info->itemsize == 8)
      v.dtype = rgpt::DType::kI64;
    else
      value.bad_format = f.empty() ? "?" : f;
    if (info->ndim > 4) throw std::invalid_argument("a tensor has more than 4 dimensions");
    v.data = info->ptr;
    v.ndim = static_cast<int32_t>(info->ndim);
    int64_t last = 0, numel = 1;
    for (int i = 0; i < v.ndim; ++i) {
      if (info->strides[i] % info->itemsize != 0)
        throw std::invalid_argument("a tensor has a stride that is not a multiple of its element size");
      v.shape[i] = info->shape[i];
      v.stride[i] = info->strides[i] / info->itemsize;
      numel *= info->shape[i];
      if (info->shape[i] > 0) last += (info->shape[i] - 1) * (v.stride[i] > 0 ? v.stride[i] : 0);
    }
    v.extent = numel == 0 ? 0 : last + 1;
    value.host_buffer = true;
    value.readonly = info->readonly;
    value.keep = std::move(info);
    return true;
  }
};

}  // namespace pybind11::detail
