// IEEE binary16 storage type shared by host and device code.
//
// The tiler writes float16 tiles and the stitcher reads them; both backends
// must round the same way (round-to-nearest-even, as numpy's astype and the
// F16C / CUDA conversions do). On the device the conversions are the CUDA
// intrinsics; on the host they use F16C when the build enables it and a
// portable bit-exact routine otherwise.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

#if CELLRT_DEVICE_PASS
#include <cuda_fp16.h>
#elif defined(__F16C__)
#include <immintrin.h>
#endif

namespace cellrt::detail {

struct Half {
  uint16_t bits;
};

CELLRT_HOST_DEVICE inline uint32_t float_bits(float f) {
#if CELLRT_DEVICE_PASS
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

CELLRT_HOST_DEVICE inline float bits_float(uint32_t u) {
#if CELLRT_DEVICE_PASS
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Portable conversions, also used by tests to check the F16C path.
CELLRT_HOST_DEVICE inline uint16_t float_to_half_bits_portable(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) {  // inf stays inf; NaN stays a quiet NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u | ((mag >> 13) & 0x3ffu) : 0u));
  }
  if (mag >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (mag < 0x38800000u) {
    // Below the smallest normal half: adding 0.5f (whose ulp is 2^-24, the
    // half subnormal step) lets the FPU do the round-to-nearest-even.
    float t = bits_float(mag) + 0.5f;
    return static_cast<uint16_t>(sign | (float_bits(t) - 0x3f000000u));
  }
  uint32_t odd = (mag >> 13) & 1u;
  mag += 0xc8000fffu + odd;  // rebias exponent by -112, round half to even
  return static_cast<uint16_t>(sign | (mag >> 13));
}

CELLRT_HOST_DEVICE inline float half_bits_to_float_portable(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Subnormal or zero: mantissa * 2^-24 is exact in float.
    float v = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return bits_float(sign | float_bits(v));
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

CELLRT_HOST_DEVICE inline float to_float(Half h) {
#if CELLRT_DEVICE_PASS
  return __half2float(__ushort_as_half(h.bits));
#elif defined(__F16C__)
  return _cvtsh_ss(h.bits);
#else
  return half_bits_to_float_portable(h.bits);
#endif
}

CELLRT_HOST_DEVICE inline Half to_half(float f) {
#if CELLRT_DEVICE_PASS
  return Half{__half_as_ushort(__float2half_rn(f))};
#elif defined(__F16C__)
  return Half{static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT))};
#else
  return Half{float_to_half_bits_portable(f)};
#endif
}

CELLRT_HOST_DEVICE inline float to_float(float v) { return v; }
CELLRT_HOST_DEVICE inline float to_float(uint8_t v) { return static_cast<float>(v); }
CELLRT_HOST_DEVICE inline float to_float(uint16_t v) { return static_cast<float>(v); }

// Storing a float as T: the tiler's output types.
template <typename T>
CELLRT_HOST_DEVICE inline T from_float(float v);
template <>
CELLRT_HOST_DEVICE inline float from_float<float>(float v) { return v; }
template <>
CELLRT_HOST_DEVICE inline Half from_float<Half>(float v) { return to_half(v); }

}  // namespace cellrt::detail
