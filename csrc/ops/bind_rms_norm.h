// rms_norm (kernels/rms_norm.h) for rgpt_rt._C and rgpt_rt._C_cuda: one signature, one validator.
#pragma once

#include <optional>

#include "rms_norm.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_rms_norm(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "rms_norm",
      [](const Tensor& x, const Tensor& weight, const Tensor& out, const std::optional<Tensor>& residual,
         const std::optional<Tensor>& sum, float eps, RGPT_EXEC_PARAMS) {
        RmsNormArgs a;
        a.x = input(x, "x");
        a.weight = input(weight, "weight");
        a.y = output(out, "output");
        a.add = residual ? 1 : 0;
        a.residual = input(residual, "residual");
        a.has_sum = sum ? 1 : 0;
        a.sum = output(sum, "sum output");
        a.eps = eps;
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_rms_norm(a);
        run_op("rms_norm", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(rms_norm_cpu(a), rms_norm_cuda(a, as_ptr(e.stream), err));
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("residual") = py::none(),
      py::arg("sum") = py::none(), py::arg("eps") = 1e-6f, RGPT_EXEC_ARGS,
      "RMSNorm, optionally after a residual add (kernels/rms_norm.h).");
}

}  // namespace rgpt
