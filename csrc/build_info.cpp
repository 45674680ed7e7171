#include "build_info.h"

#ifndef RGPT_VERSION
#define RGPT_VERSION "unknown"
#endif

namespace rgpt {

namespace {

std::string compiler_string() {
#if defined(__clang__)
  return "clang " + std::to_string(__clang_major__) + "." + std::to_string(__clang_minor__);
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

std::string arch_string() {
#if defined(__x86_64__) || defined(_M_X64)
  return "x86_64";
#elif defined(__aarch64__) || defined(_M_ARM64)
  return "aarch64";
#else
  return "other";
#endif
}

}  // namespace

BuildInfo build_info() {
  BuildInfo info;
  info.version = RGPT_VERSION;
  info.compiler = compiler_string();
  info.cxx_standard = std::to_string(__cplusplus);
  info.target_arch = arch_string();
#ifdef RGPT_USE_CUDA
  info.cuda = true;
  info.cuda_archs = RGPT_CUDA_ARCHS;
  info.cuda_compiler = RGPT_CUDA_COMPILER_VERSION;
#endif
  return info;
}

}  // namespace rgpt
