// A minimal CUDA surface used to check that the compiled device code runs on the present GPU.
// All functions return a cudaError_t value as int (0 = success); they never abort.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// Writes the number of visible devices into *count.
int rgpt_device_count(int* count);
// Writes the CUDA runtime version (e.g. 13000) into *version.
int rgpt_runtime_version(int* version);
// Runs a kernel on the current device writing host_out[i] = 3*i + 1 for i < n (via a device buffer).
int rgpt_device_probe(int* host_out, int n);
// Human-readable text for a code returned above.
const char* rgpt_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif
