// Which CPU bodies the CPU twins use: the AVX2 (+FMA) ones when the CPU reports those features, unless the
// environment variable RGPT_CPU_BASELINE is set to a non-zero value at load time (the tests set it in a
// subprocess to check the portable bodies, which aarch64 (Jetson) always runs, on x86 machines too).
#pragma once

#include <cstdlib>

namespace rgpt {

inline bool cpu_has_avx2(bool need_fma) {
#if defined(__x86_64__)
  const char* env = std::getenv("RGPT_CPU_BASELINE");
  if (env != nullptr && env[0] != '\0' && env[0] != '0') return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && (!need_fma || __builtin_cpu_supports("fma"));
#else
  (void)need_fma;
  return false;
#endif
}

}  // namespace rgpt
