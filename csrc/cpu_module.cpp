// rgpt_rt._C: the CPU native module. Always built; native ops register here next to their CUDA twins.
#include <pybind11/pybind11.h>

#include "bind_common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "rgpt_rt CPU native ops";
  m.def("build_info", &rgpt::build_info_dict, "What this module was built with (dict).");
}
