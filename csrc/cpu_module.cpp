// rgpt_rt._C: the CPU native module. Always built. Each op: validate (op_checks), then the CPU twin in
// kernels/, with the GIL released while it runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "bind_common.h"
#include "buffer_view.h"
#include "int8_linear.h"
#include "op_checks.h"
#include "preprocess_frame.h"
#include "region_pool.h"

namespace py = pybind11;
using namespace rgpt;

namespace {

void region_pool(const py::buffer& fmap, const std::string& fmap_dtype, const py::buffer& masks,
                 const py::buffer& image, const py::buffer& regions, const std::string& out_dtype, int grid,
                 float eps, int threads) {
  RegionPoolArgs a;
  a.fmap = view_from_buffer(fmap, parse_dtype(fmap_dtype), "feature_map", false);
  a.masks = view_from_buffer(masks, DType::kF32, "masks", false);
  a.image = view_from_buffer(image, parse_dtype(out_dtype), "image output", true);
  a.regions = view_from_buffer(regions, parse_dtype(out_dtype), "regions output", true);
  a.grid = grid;
  a.eps = eps;
  a.threads = threads;
  check_region_pool(a);
  py::gil_scoped_release release;
  region_pool_cpu(a);
}

void preprocess_frame(const py::buffer& frame, const py::buffer& out, const std::string& out_dtype, bool bgr,
                      std::array<int, 3> fill, std::array<float, 3> mean, std::array<float, 3> std,
                      int threads) {
  PreprocessFrameArgs a;
  a.frame = view_from_buffer(frame, DType::kU8, "frame", false);
  a.out = view_from_buffer(out, parse_dtype(out_dtype), "output", true);
  a.bgr = bgr ? 1 : 0;
  for (int c = 0; c < 3; ++c) {
    a.fill[c] = fill[c];
    a.mean[c] = mean[c];
    a.std[c] = std[c];
  }
  a.threads = threads;
  check_preprocess_frame(a);
  py::gil_scoped_release release;
  preprocess_frame_cpu(a);
}

void preprocess_masks(const py::buffer& masks, const py::buffer& out, int threads) {
  PreprocessMasksArgs a;
  a.masks = view_from_buffer(masks, DType::kF32, "masks", false);
  a.out = view_from_buffer(out, DType::kF32, "output", true);
  a.threads = threads;
  check_preprocess_masks(a);
  py::gil_scoped_release release;
  preprocess_masks_cpu(a);
}

void int8_linear(const py::buffer& x, const std::string& x_dtype, const py::buffer& q,
                 const py::buffer& scale, const py::buffer& y, int threads) {
  Int8LinearArgs a;
  a.x = view_from_buffer(x, parse_dtype(x_dtype), "x", false);
  a.q = view_from_buffer(q, DType::kI8, "weight", false);
  a.scale = view_from_buffer(scale, DType::kF32, "scale", false);
  a.y = view_from_buffer(y, parse_dtype(x_dtype), "output", true);
  a.threads = threads;
  check_int8_linear(a);
  py::gil_scoped_release release;
  int8_linear_cpu(a);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "rgpt_rt CPU native ops";
  m.def("build_info", &rgpt::build_info_dict, "What this module was built with (dict).");
  m.def("region_pool", &region_pool, py::arg("feature_map"), py::arg("fmap_dtype"), py::arg("masks"),
        py::arg("image"), py::arg("regions"), py::arg("out_dtype"), py::arg("grid"), py::arg("eps"),
        py::arg("threads") = 0, "Fused patch merge + mask pooling (see kernels/region_pool.h).");
  m.def("preprocess_frame", &preprocess_frame, py::arg("frame"), py::arg("out"), py::arg("out_dtype"),
        py::arg("bgr"), py::arg("fill"), py::arg("mean"), py::arg("std"), py::arg("threads") = 0,
        "Pad to square, Pillow-exact bicubic resize, normalise (see kernels/preprocess_frame.h).");
  m.def("int8_linear", &int8_linear, py::arg("x"), py::arg("x_dtype"), py::arg("weight"), py::arg("scale"),
        py::arg("out"), py::arg("threads") = 0,
        "y = x @ (weight * scale[:, None]).T (see kernels/int8_linear.h).");
  m.def("preprocess_masks", &preprocess_masks, py::arg("masks"), py::arg("out"), py::arg("threads") = 0,
        "Pad to square and Pillow-exact bilinear resize of float masks.");
}
