// rgpt_rt._C: the CPU native module, always built. Each op (csrc/ops/bind_<op>.h) validates its arguments
// with check_<op> (op_checks.h), then runs the CPU twin in kernels/ with the GIL released. Tensors are numpy
// arrays (bounds from the buffer) or (pointer, dtype, shape, strides, extent) descriptions
// (csrc/tensor_arg.h).
#include <pybind11/pybind11.h>

#include "bind_common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "rgpt_rt CPU native ops";
  rgpt::bind_common(m);
}
