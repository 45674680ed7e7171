// Shared by the CUDA kernels and their CPU twins: dtypes, portable fp16/bf16 conversion, status codes.
// No Python, no torch, no x86 intrinsics: the same code builds on x86_64 and aarch64 (Jetson).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define RGPT_HD __host__ __device__ __forceinline__
#else
#define RGPT_HD inline
#endif

namespace rgpt {

enum class DType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kU8 = 3, kI8 = 4, kI64 = 5 };

// Return codes of every launcher (0 = success). Messages: status_message().
enum Status : int32_t {
  kOk = 0,
  kBadRank = 1,
  kBadShape = 2,
  kBadDType = 3,
  kBadStride = 4,
  kOutOfBounds = 5,
  kNullPointer = 6,
  kTooLarge = 7,
  kCudaError = 8,
  kBadArgument = 9,
};

// Bit-exact IEEE half -> float (normals, subnormals, inf, nan). On the GPU, the hardware conversion (one
// instruction, the same value; only a NaN's payload may differ).
RGPT_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      man &= 0x3FFu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// float -> IEEE half, round to nearest even, overflow to inf, nan preserved (on the GPU: the hardware
// conversion, which rounds the same way).
RGPT_HD uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) return sign | (absx > 0x7F800000u ? 0x7E00u : 0x7C00u);
  if (absx >= 0x477FF000u) return sign | 0x7C00u;  // rounds to >= 65520: overflow
  if (absx < 0x38800000u) {                        // below the smallest normal half: subnormal or zero
    if (absx < 0x33000000u) return sign;           // < 2^-25 rounds to zero
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 + (113 - e)
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
  const uint32_t rem = r & 0x1FFFu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return sign | static_cast<uint16_t>(r);
#endif
}

RGPT_HD float bf16_bits_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

RGPT_HD uint16_t float_to_bf16_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  const uint32_t lsb = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7FFFu + lsb) >> 16);
}

// Element load/store by dtype (fp16 and bf16 stored as raw 16-bit patterns).
RGPT_HD float load_as_float(const void* base, int64_t i, DType t) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kF16:
      return half_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kBF16:
      return bf16_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kI8:
      return static_cast<float>(static_cast<const int8_t*>(base)[i]);
    default:
      return static_cast<float>(static_cast<const uint8_t*>(base)[i]);
  }
}

RGPT_HD void store_from_float(void* base, int64_t i, DType t, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(base)[i] = v;
      break;
    case DType::kF16:
      static_cast<uint16_t*>(base)[i] = float_to_half_bits(v);
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(base)[i] = float_to_bf16_bits(v);
      break;
    default:
      break;
  }
}

// v rounded to the precision of t (what storing it as t and loading it back gives).
RGPT_HD float round_to(float v, DType t) {
  switch (t) {
    case DType::kF16:
      return half_bits_to_float(float_to_half_bits(v));
    case DType::kBF16:
      return bf16_bits_to_float(float_to_bf16_bits(v));
    default:
      return v;
  }
}

// A strided view of up to 4 dimensions; strides in elements. `extent` is the number of elements reachable
// from `data` (the caller's allocation), used to bounds-check the view before any access.
struct View {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int32_t ndim = 0;
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t stride[4] = {0, 0, 0, 0};
  int64_t extent = 0;

  RGPT_HD int64_t offset(int64_t a, int64_t b = 0, int64_t c = 0, int64_t d = 0) const {
    return a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3];
  }
};

}  // namespace rgpt
