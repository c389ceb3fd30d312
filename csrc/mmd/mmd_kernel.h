// The RBF kernel value of two embedding vectors, shared by the CPU backend
// and the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// exp(-|a - b|^2 * inv_two_sigma2), the distance summed in float64 in
// ascending dimension order.
CELLRT_HOST_DEVICE inline double rbf_value(const float* a, const float* b, int32_t dims, double inv_two_sigma2) {
  double d2 = 0.0;
  for (int32_t k = 0; k < dims; ++k) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    d2 += t * t;
  }
  return exp(-d2 * inv_two_sigma2);
}

}  // namespace cellrt::detail
