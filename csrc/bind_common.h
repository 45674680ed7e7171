// What rgpt_rt._C and rgpt_rt._C_cuda share: build_info and every op binding (csrc/ops/bind_<op>.h, one file
// per op, written once and compiled into each module; the CUDA module is compiled with RGPT_USE_CUDA).
#pragma once

#include <pybind11/pybind11.h>

#include "build_info.h"
#include "ops/bind_decode_attention.h"
#include "ops/bind_int8_linear.h"
#include "ops/bind_preprocess_frame.h"
#include "ops/bind_region_pool.h"
#include "ops/bind_rms_norm.h"
#include "ops/bind_rope_kv_write.h"

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

// The module's common surface: build_info and the ops, with the same Python signatures in both modules.
inline void bind_common(pybind11::module_& m) {
  m.def("build_info", &build_info_dict, "What this module was built with (dict).");
  bind_region_pool(m);
  bind_preprocess_frame(m);
  bind_int8_linear(m);
  bind_rms_norm(m);
  bind_rope_kv_write(m);
  bind_decode_attention(m);
}

}  // namespace rgpt
