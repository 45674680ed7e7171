// Helpers shared by the pybind11 modules rgpt_rt._C and rgpt_rt._C_cuda.
#pragma once

#include <pybind11/pybind11.h>

#include "build_info.h"

namespace rgpt {

inline pybind11::dict build_info_dict() {
  const BuildInfo info = build_info();
  pybind11::dict d;
  d["version"] = info.version;
  d["compiler"] = info.compiler;
  d["cxx_standard"] = info.cxx_standard;
  d["target_arch"] = info.target_arch;
  d["cuda"] = info.cuda;
  d["cuda_archs"] = info.cuda_archs;
  d["cuda_compiler"] = info.cuda_compiler;
  return d;
}

}  // namespace rgpt
