// What this native module was built with; exposed as rgpt_rt.build_info().
#pragma once

#include <string>

namespace rgpt {

struct BuildInfo {
  std::string version;        // package version the module was built for
  std::string compiler;       // host C++ compiler and version
  std::string cxx_standard;   // e.g. "201703"
  std::string target_arch;    // host CPU architecture the module was compiled for
  bool cuda = false;          // true only in rgpt_rt._C_cuda
  std::string cuda_archs;     // comma list of SM numbers, empty without CUDA
  std::string cuda_compiler;  // nvcc version, empty without CUDA
};

// Filled from compile-time macros; cheap, never fails.
BuildInfo build_info();

}  // namespace rgpt
