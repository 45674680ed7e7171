// Python objects -> View: numpy-style buffers on the CPU, (pointer, shape, strides, extent) on the GPU.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "op_checks.h"

namespace rgpt {

// A CPU buffer viewed as `dtype` (bf16 arrives as a uint16 buffer). Shape, strides and extent come from the
// buffer itself, so the view can never reach outside the Python object's memory.
inline View view_from_buffer(const pybind11::buffer& b, DType dtype, const char* name, bool writable) {
  const pybind11::buffer_info info = b.request(writable);
  if (info.itemsize != dtype_size(dtype))
    throw std::invalid_argument(std::string(name) + ": element size " + std::to_string(info.itemsize) +
                                " does not match dtype " + dtype_name(dtype));
  if (info.ndim > 4) throw std::invalid_argument(std::string(name) + " has more than 4 dimensions");
  View v;
  v.data = info.ptr;
  v.dtype = dtype;
  v.ndim = static_cast<int32_t>(info.ndim);
  int64_t last = 0, numel = 1;
  for (int i = 0; i < v.ndim; ++i) {
    if (info.strides[i] % info.itemsize != 0)
      throw std::invalid_argument(std::string(name) +
                                  " has a stride that is not a multiple of its element size");
    v.shape[i] = info.shape[i];
    v.stride[i] = info.strides[i] / info.itemsize;
    numel *= info.shape[i];
    if (info.shape[i] > 0) last += (info.shape[i] - 1) * (v.stride[i] > 0 ? v.stride[i] : 0);
  }
  v.extent = numel == 0 ? 0 : last + 1;
  return v;
}

// A device allocation described by the caller (torch): `extent` counts the elements from `ptr` to the end of
// the allocation, which bounds every access.
inline View view_from_pointer(uintptr_t ptr, const std::string& dtype, const std::vector<int64_t>& shape,
                              const std::vector<int64_t>& stride, int64_t extent, const char* name) {
  if (shape.size() != stride.size() || shape.size() > 4)
    throw std::invalid_argument(std::string(name) + ": shape and strides must have the same length (<= 4)");
  View v;
  v.data = reinterpret_cast<void*>(ptr);
  v.dtype = parse_dtype(dtype);
  v.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    v.shape[i] = shape[i];
    v.stride[i] = stride[i];
  }
  v.extent = extent;
  return v;
}

}  // namespace rgpt
