#include <cuda_runtime.h>

#include "device_probe.h"

namespace {

__global__ void probe_kernel(int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 3 * i + 1;
}

}  // namespace

extern "C" int rgpt_device_count(int* count) { return static_cast<int>(cudaGetDeviceCount(count)); }

extern "C" int rgpt_runtime_version(int* version) { return static_cast<int>(cudaRuntimeGetVersion(version)); }

extern "C" int rgpt_device_probe(int* host_out, int n) {
  if (host_out == nullptr || n <= 0) return static_cast<int>(cudaErrorInvalidValue);
  int* dev = nullptr;
  cudaError_t err = cudaMalloc(&dev, sizeof(int) * static_cast<size_t>(n));
  if (err != cudaSuccess) return static_cast<int>(err);
  const int threads = 256;
  probe_kernel<<<(n + threads - 1) / threads, threads>>>(dev, n);
  err = cudaGetLastError();
  if (err == cudaSuccess)
    err = cudaMemcpy(host_out, dev, sizeof(int) * static_cast<size_t>(n), cudaMemcpyDeviceToHost);
  cudaFree(dev);
  return static_cast<int>(err);
}

extern "C" const char* rgpt_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
