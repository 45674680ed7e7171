// The CUDA launchers' error convention: kOk, or kCudaError with the cudaError_t value in *cuda_error.
#pragma once

#include <cuda_runtime.h>

#include "common.h"

namespace rgpt {

inline Status cuda_status(cudaError_t err, int* cuda_error) {
  if (err == cudaSuccess) return kOk;
  if (cuda_error) *cuda_error = static_cast<int>(err);
  return kCudaError;
}

}  // namespace rgpt
