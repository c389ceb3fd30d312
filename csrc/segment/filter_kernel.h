// Per-sample arithmetic of the separable filters (gaussian_blur, box_mean),
// shared by the CPU and CUDA backends.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Border modes, numbered as cellrt::BorderMode.
enum BorderModeCode : int32_t {
  kBorderReflect = 0,  // d c b a | a b c d | d c b a   (scipy "reflect")
  kBorderNearest = 1,  // a a a a | a b c d | d d d d
};

CELLRT_HOST_DEVICE inline int64_t border_index(int64_t i, int64_t n, int32_t mode) {
  if (i >= 0 && i < n) return i;
  if (mode == kBorderNearest) return i < 0 ? 0 : n - 1;
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Radius of a gaussian kernel truncated at `truncate` sigmas, as scipy's
// gaussian_filter rounds it.
CELLRT_HOST_DEVICE inline int32_t gaussian_radius(double sigma, double truncate) {
  return static_cast<int32_t>(truncate * sigma + 0.5);
}

// Normalised gaussian weights w[0 .. 2r] (w[r] the centre), in double so
// every backend starts from the same float32 values.
CELLRT_HOST_DEVICE inline void gaussian_weights(double sigma, int32_t radius, float* w) {
  double sum = 0.0;
  for (int32_t k = -radius; k <= radius; ++k) sum += exp(-0.5 * (k * k) / (sigma * sigma));
  for (int32_t k = -radius; k <= radius; ++k)
    w[k + radius] = static_cast<float>(exp(-0.5 * (k * k) / (sigma * sigma)) / sum);
}

}  // namespace cellrt::detail
