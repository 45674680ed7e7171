// decode_attention (kernels/decode_attention.h) for rgpt_rt._C and rgpt_rt._C_cuda: one signature, one
// validator.
#pragma once

#include <optional>

#include "decode_attention.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_decode_attention(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "decode_attention_workspace_bytes",
      []([[maybe_unused]] int64_t b, [[maybe_unused]] int64_t h, [[maybe_unused]] int64_t s,
         [[maybe_unused]] int64_t d) -> int64_t {
        return RGPT_TWIN(0, decode_attention_workspace_bytes(b, h, s, d));
      },
      py::arg("b"), py::arg("h"), py::arg("s"), py::arg("d"),
      "Workspace bytes of decode_attention (0 on the CPU).");
  m.def(
      "decode_attention",
      [](const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& pos, const Tensor& out,
         float scale, const std::optional<Tensor>& shared, RGPT_EXEC_PARAMS) {
        DecodeAttentionArgs a;
        a.q = input(q, "q");
        a.k_cache = input(k_cache, "k_cache");
        a.v_cache = input(v_cache, "v_cache");
        a.pos = input(pos, "pos");
        a.out = output(out, "output");
        a.has_shared = shared ? 1 : 0;
        a.shared = input(shared, "shared");
        a.scale = scale;
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_decode_attention(a);
        run_op("decode_attention", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(
              decode_attention_cpu(a),
              decode_attention_cuda(a, as_ptr(e.workspace), e.workspace_bytes, as_ptr(e.stream), err));
        });
      },
      py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("pos"), py::arg("out"), py::arg("scale"),
      py::arg("shared") = py::none(), RGPT_EXEC_ARGS,
      "One-token attention over each row's KV cache (kernels/decode_attention.h).");
}

}  // namespace rgpt
