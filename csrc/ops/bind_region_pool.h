// region_pool (kernels/region_pool.h) for rgpt_rt._C and rgpt_rt._C_cuda: one signature, one validator.
#pragma once

#include "region_pool.h"
#include "tensor_arg.h"

namespace rgpt {

inline void bind_region_pool(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "region_pool_workspace_bytes",
      []([[maybe_unused]] int64_t n, [[maybe_unused]] int64_t h, [[maybe_unused]] int64_t w,
         [[maybe_unused]] int64_t c) -> int64_t {
        return RGPT_TWIN(0, region_pool_workspace_bytes(n, h, w, c));
      },
      py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"),
      "Workspace bytes of region_pool (0 on the CPU).");
  m.def(
      "region_pool",
      [](const Tensor& fmap, const Tensor& masks, const Tensor& image, const Tensor& regions, int grid,
         float eps, RGPT_EXEC_PARAMS) {
        RegionPoolArgs a;
        a.fmap = input(fmap, "feature_map");
        a.masks = input(masks, "masks");
        a.image = output(image, "image output");
        a.regions = output(regions, "regions output");
        a.grid = grid;
        a.eps = eps;
        [[maybe_unused]] const Exec e = RGPT_EXEC;
        a.threads = e.threads;
        check_region_pool(a);
        run_op("region_pool", [&]([[maybe_unused]] int* err) {
          return RGPT_TWIN(region_pool_cpu(a), region_pool_cuda(a, as_ptr(e.workspace), e.workspace_bytes,
                                                                as_ptr(e.stream), err));
        });
      },
      py::arg("feature_map"), py::arg("masks"), py::arg("image"), py::arg("regions"), py::arg("grid"),
      py::arg("eps"), RGPT_EXEC_ARGS, "Fused patch merge + mask pooling (kernels/region_pool.h).");
}

}  // namespace rgpt
