// int8_linear (kernels/int8_linear.h) for rgpt_rt._C and rgpt_rt._C_cuda: one signature, one validator.
#pragma once

#include "int8_linear.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_int8_linear(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "int8_linear",
      [](const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& out, RGPT_EXEC_PARAMS) {
        Int8LinearArgs a;
        a.x = input(x, "x");
        a.q = input(weight, "weight");
        a.scale = input(scale, "scale");
        a.y = output(out, "output");
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_int8_linear(a);
        run_op("int8_linear", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(int8_linear_cpu(a), int8_linear_cuda(a, as_ptr(e.stream), err));
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("scale"), py::arg("out"), RGPT_EXEC_ARGS,
      "y = x @ (weight * scale[:, None]).T (kernels/int8_linear.h).");
}

}  // namespace rgpt
