// preprocess_frame / preprocess_masks (kernels/preprocess_frame.h) for rgpt_rt._C and rgpt_rt._C_cuda.
#pragma once

#include <array>

#include "preprocess_frame.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_preprocess_frame(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "preprocess_workspace_bytes",
      []([[maybe_unused]] int64_t side, [[maybe_unused]] int64_t size) -> int64_t {
        return RGPT_TWIN(0, preprocess_workspace_bytes(side, size));
      },
      py::arg("side"), py::arg("size"), "Workspace bytes of preprocess_frame/_masks (0 on the CPU).");
  m.def(
      "preprocess_frame",
      [](const Tensor& frame, const Tensor& out, bool bgr, std::array<int, 3> fill, std::array<float, 3> mean,
         std::array<float, 3> std, bool resize, RGPT_EXEC_PARAMS) {
        PreprocessFrameArgs a;
        a.frame = input(frame, "frame");
        a.out = output(out, "output");
        a.bgr = bgr ? 1 : 0;
        a.resize = resize ? 1 : 0;
        for (int c = 0; c < 3; ++c) {
          a.fill[c] = fill[c];
          a.mean[c] = mean[c];
          a.std[c] = std[c];
        }
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_preprocess_frame(a);
        run_op("preprocess_frame", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(
              preprocess_frame_cpu(a),
              preprocess_frame_cuda(a, as_ptr(e.workspace), e.workspace_bytes, as_ptr(e.stream), err));
        });
      },
      py::arg("frame"), py::arg("out"), py::arg("bgr"), py::arg("fill"), py::arg("mean"), py::arg("std"),
      py::arg("resize") = false, RGPT_EXEC_ARGS,
      "Pad to square (or stretch, resize=True), Pillow-exact bicubic resize, normalise "
      "(kernels/preprocess_frame.h).");
  m.def(
      "preprocess_masks",
      [](const Tensor& masks, const Tensor& out, bool resize, RGPT_EXEC_PARAMS) {
        PreprocessMasksArgs a;
        a.masks = input(masks, "masks");
        a.out = output(out, "output");
        a.resize = resize ? 1 : 0;
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_preprocess_masks(a);
        run_op("preprocess_masks", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(
              preprocess_masks_cpu(a),
              preprocess_masks_cuda(a, as_ptr(e.workspace), e.workspace_bytes, as_ptr(e.stream), err));
        });
      },
      py::arg("masks"), py::arg("out"), py::arg("resize") = false, RGPT_EXEC_ARGS,
      "Pad to square and Pillow-exact bilinear resize of masks (resize=True: OpenCV nearest-neighbour stretch).");
}

}  // namespace rgpt
