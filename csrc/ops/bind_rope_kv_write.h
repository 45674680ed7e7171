// rope_kv_write (kernels/rope_kv_write.h) for rgpt_rt._C and rgpt_rt._C_cuda: one signature, one validator.
#pragma once

#include "rope_kv_write.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_rope_kv_write(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "rope_kv_write",
      [](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& pos, const Tensor& inv_freq,
         const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache, RGPT_EXEC_PARAMS) {
        RopeKvWriteArgs a;
        a.q = input(q, "q");
        a.k = input(k, "k");
        a.v = input(v, "v");
        a.pos = input(pos, "pos");
        a.inv_freq = input(inv_freq, "inv_freq");
        a.q_out = output(q_out, "q output");
        a.k_cache = output(k_cache, "k_cache");
        a.v_cache = output(v_cache, "v_cache");
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_rope_kv_write(a);
        run_op("rope_kv_write", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(rope_kv_write_cpu(a), rope_kv_write_cuda(a, as_ptr(e.stream), err));
        });
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("pos"), py::arg("inv_freq"), py::arg("q_out"),
      py::arg("k_cache"), py::arg("v_cache"), RGPT_EXEC_ARGS,
      "Rotary embedding + KV-cache write of a decode step (kernels/rope_kv_write.h).");
}

}  // namespace rgpt
