// The RBF kernel value of two embedding vectors, shared by the CPU backend
// and the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Independent partial sums of the squared distance: one accumulator is a
// chain of dependent float64 adds (latency-bound at ~0.5 ns a dimension);
// four let the host compiler fill a 256-bit vector. Dimension k goes to
// partial k % 4, and the partials are added as (p0 + p1) + (p2 + p3) - the
// same order on every backend, so CPU and CUDA agree to the last bit but for exp().
constexpr int32_t kDistancePartials = 4;

// exp(-|a - b|^2 * inv_two_sigma2), the distance summed in float64.
CELLRT_HOST_DEVICE inline double rbf_value(const float* a, const float* b, int32_t dims, double inv_two_sigma2) {
  double partial[kDistancePartials] = {0.0, 0.0, 0.0, 0.0};
  int32_t k = 0;
  for (; k + kDistancePartials <= dims; k += kDistancePartials) {
    for (int32_t j = 0; j < kDistancePartials; ++j) {
      const double t = static_cast<double>(a[k + j]) - static_cast<double>(b[k + j]);
      partial[j] += t * t;
    }
  }
  for (int32_t j = 0; k < dims; ++k, ++j) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    partial[j] += t * t;
  }
  return exp(-((partial[0] + partial[1]) + (partial[2] + partial[3])) * inv_two_sigma2);
}

}  // namespace cellrt::detail
