// A float32's bits as an unsigned integer of the same order, so that floats
// sort, bucket and compare as integers (radix selections, heap keys). -0 is
// taken as +0 (one value); NaN has no order and is the caller's to keep out.
#pragma once

#include <cstdint>
#include <cstring>

namespace cellrt::detail {

inline uint32_t ordered_bits(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

inline float from_ordered_bits(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace cellrt::detail
