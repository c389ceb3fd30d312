// Per-sample arithmetic of resize, shared by the CPU backend, the CUDA
// kernels and the host harness that runs the CUDA bodies in tests.
#pragma once

#include <math.h>

#include <cstdint>

#include "core/host_device.h"
#include "segment/filter_kernel.h"  // add_product: multiply and add rounded apart

namespace cellrt::detail {

// How one axis of n_in samples maps onto n_out.
struct ResizeAxis {
  int64_t in_size = 0;
  int64_t out_size = 0;
  double scale = 1.0;    // input pixels per output pixel
  double support = 1.0;  // half-width of the filter, in input pixels
  double inverse = 1.0;  // 1 / the filter's stretch
  int32_t max_taps = 3;  // most input samples one output sample reads
};

CELLRT_HOST_DEVICE inline ResizeAxis resize_axis(int64_t in_size, int64_t out_size, bool antialias) {
  ResizeAxis a;
  a.in_size = in_size;
  a.out_size = out_size;
  a.scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double stretch = antialias && a.scale > 1.0 ? a.scale : 1.0;
  a.support = stretch;
  a.inverse = 1.0 / stretch;
  // Taps lie in [c - support + 0.5, c + support + 0.5): at most ceil(2 support) + 1 integers.
  a.max_taps = static_cast<int32_t>(ceil(2.0 * a.support)) + 1;
  return a;
}

CELLRT_HOST_DEVICE inline double triangle_filter(double x) {
  x = fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// The input samples first .. first + count - 1 that output sample i reads,
// and their weights (normalised to sum 1 in double, then rounded to float);
// count <= a.max_taps, at least 1.
CELLRT_HOST_DEVICE inline int32_t resize_taps(const ResizeAxis& a, int64_t i, int64_t* first, float* weights) {
  const double centre = a.scale * (static_cast<double>(i) + 0.5);
  int64_t lo = static_cast<int64_t>(centre - a.support + 0.5);
  int64_t hi = static_cast<int64_t>(centre + a.support + 0.5);
  lo = lo < 0 ? 0 : lo;
  hi = hi > a.in_size ? a.in_size : hi;
  if (hi <= lo) hi = lo + 1;  // unreachable for valid sizes; keeps the sum non-empty
  const auto count = static_cast<int32_t>(hi - lo);
  double total = 0.0;
  for (int32_t k = 0; k < count; ++k) total += triangle_filter((static_cast<double>(lo + k) - centre + 0.5) * a.inverse);
  for (int32_t k = 0; k < count; ++k) {
    const double wk = triangle_filter((static_cast<double>(lo + k) - centre + 0.5) * a.inverse);
    weights[k] = static_cast<float>(total > 0.0 ? wk / total : (k == 0 ? 1.0 : 0.0));
  }
  *first = lo;
  return count;
}

template <typename T>
CELLRT_HOST_DEVICE inline float resize_load(const T* p) {
  return static_cast<float>(*p);
}

// One output sample along a line whose samples lie `stride` apart: the
// weighted sum of line[first * stride] .. in tap order, from 0.
template <typename T>
CELLRT_HOST_DEVICE inline float resize_line_sample(const T* line, int64_t stride, int64_t first, int32_t count,
                                                   const float* weights) {
  float acc = 0.0f;
  for (int32_t k = 0; k < count; ++k) acc = add_product(acc, weights[k], resize_load(line + (first + k) * stride));
  return acc;
}

}  // namespace cellrt::detail
