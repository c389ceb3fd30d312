// Per-pixel and per-object arithmetic of label and measure, shared by the
// CPU (label_cpu.cpp, measure_cpu.cpp) and CUDA (label_cuda.cu) backends.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Union-find over linear pixel indices. Every set is rooted at its smallest
// index, which is the component's first pixel in raster order; numbering
// roots in raster order then gives OpenCV's and scikit-image's labels.
CELLRT_HOST_DEVICE inline int32_t find_root(const int32_t* parent, int32_t i) {
  while (parent[i] != i) i = parent[i];
  return i;
}

// find with path halving, for the single-writer (per-thread strip) phase.
inline int32_t find_root_halving(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

// Links the sets of a and b under the smaller root; returns it.
inline int32_t unite(int32_t* parent, int32_t a, int32_t b) {
  a = find_root_halving(parent, a);
  b = find_root_halving(parent, b);
  if (a < b) {
    parent[b] = a;
    return a;
  }
  parent[a] = b;
  return b;
}

// Raw sums of one object, exact for any image up to 2^31 pixels a side
// (integer moments in int64, coordinates < 2^31).
struct ObjectSums {
  int64_t area;
  int64_t sum_x, sum_y;
  int64_t sum_xx, sum_yy, sum_xy;
  int32_t min_x, min_y, max_x, max_y;  // inclusive
};

CELLRT_HOST_DEVICE inline void reset(ObjectSums& s) {
  s.area = s.sum_x = s.sum_y = s.sum_xx = s.sum_yy = s.sum_xy = 0;
  s.min_x = s.min_y = INT32_MAX;
  s.max_x = s.max_y = -1;
}

CELLRT_HOST_DEVICE inline void add_pixel(ObjectSums& s, int64_t x, int64_t y) {
  s.area += 1;
  s.sum_x += x;
  s.sum_y += y;
  s.sum_xx += x * x;
  s.sum_yy += y * y;
  s.sum_xy += x * y;
  s.min_x = x < s.min_x ? static_cast<int32_t>(x) : s.min_x;
  s.min_y = y < s.min_y ? static_cast<int32_t>(y) : s.min_y;
  s.max_x = x > s.max_x ? static_cast<int32_t>(x) : s.max_x;
  s.max_y = y > s.max_y ? static_cast<int32_t>(y) : s.max_y;
}

// Adds the pixels x0 .. x1-1 of row y at once: the same sums as add_pixel on
// each, from closed forms (exact: the 128-bit intermediates cannot overflow).
CELLRT_HOST_DEVICE inline void add_run(ObjectSums& s, int64_t x0, int64_t x1, int64_t y) {
  const int64_t n = x1 - x0;
  const int64_t sum_x = (x0 + x1 - 1) * n / 2;  // one of n, x0 + x1 - 1 is even
#if defined(__SIZEOF_INT128__)
  using wide = __int128;
#else
  using wide = int64_t;  // exact for widths below ~2^20
#endif
  auto squares_below = [](int64_t m) {  // 0^2 + ... + (m - 1)^2
    // 64 bits hold (m - 1) m (2m - 1) below m = 2^20 (any real image width), where dividing by
    // the constant 6 is a multiply; the 128-bit division is a library call per run.
    if (m < (int64_t{1} << 20)) return (m - 1) * m * (2 * m - 1) / 6;
    return static_cast<int64_t>(wide{m - 1} * m * (2 * m - 1) / 6);
  };
  s.area += n;
  s.sum_x += sum_x;
  s.sum_y += n * y;
  s.sum_xx += squares_below(x1) - squares_below(x0);
  s.sum_yy += n * y * y;
  s.sum_xy += sum_x * y;
  s.min_x = x0 < s.min_x ? static_cast<int32_t>(x0) : s.min_x;
  s.min_y = y < s.min_y ? static_cast<int32_t>(y) : s.min_y;
  s.max_x = x1 - 1 > s.max_x ? static_cast<int32_t>(x1 - 1) : s.max_x;
  s.max_y = y > s.max_y ? static_cast<int32_t>(y) : s.max_y;
}

CELLRT_HOST_DEVICE inline void merge(ObjectSums& into, const ObjectSums& s) {
  into.area += s.area;
  into.sum_x += s.sum_x;
  into.sum_y += s.sum_y;
  into.sum_xx += s.sum_xx;
  into.sum_yy += s.sum_yy;
  into.sum_xy += s.sum_xy;
  into.min_x = s.min_x < into.min_x ? s.min_x : into.min_x;
  into.min_y = s.min_y < into.min_y ? s.min_y : into.min_y;
  into.max_x = s.max_x > into.max_x ? s.max_x : into.max_x;
  into.max_y = s.max_y > into.max_y ? s.max_y : into.max_y;
}

// Intensity sums of one object in one channel. Sums are double: exact for
// integer images (sums stay below 2^53), order-dependent in the last bits
// for float images.
struct IntensitySums {
  double sum, sum_sq;
  float min, max;
};

CELLRT_HOST_DEVICE inline void reset(IntensitySums& s) {
  s.sum = s.sum_sq = 0.0;
  s.min = INFINITY;
  s.max = -INFINITY;
}

CELLRT_HOST_DEVICE inline void add_value(IntensitySums& s, float v) {
  const double d = v;
  s.sum += d;
  s.sum_sq += d * d;
  s.min = v < s.min ? v : s.min;
  s.max = v > s.max ? v : s.max;
}

CELLRT_HOST_DEVICE inline void merge(IntensitySums& into, const IntensitySums& s) {
  into.sum += s.sum;
  into.sum_sq += s.sum_sq;
  into.min = s.min < into.min ? s.min : into.min;
  into.max = s.max > into.max ? s.max : into.max;
}

// Feature columns, in the order measure() writes them (see
// cellrt/measure.h for their meaning).
enum ShapeColumn : int32_t {
  kArea = 0,
  kBBoxMinX,
  kBBoxMinY,
  kBBoxMaxX,
  kBBoxMaxY,
  kCenterX,
  kCenterY,
  kMajorAxis,
  kMinorAxis,
  kEccentricity,
  kEquivalentDiameter,
  kPerimeter,  // filled by the caller (contour_kernel.h: outer_perimeter)
  kShapeColumns
};
enum IntensityColumn : int32_t { kIntegrated = 0, kMean, kStd, kMin, kMax, kIntensityColumns };

// Shape features from raw sums. Axis lengths follow scikit-image's
// regionprops: 4 * sqrt of the eigenvalues of the coordinate covariance.
CELLRT_HOST_DEVICE inline void shape_features(const ObjectSums& s, double* out) {
  const double n = static_cast<double>(s.area);
  out[kArea] = n;
  out[kBBoxMinX] = s.min_x;
  out[kBBoxMinY] = s.min_y;
  out[kBBoxMaxX] = s.max_x + 1.0;
  out[kBBoxMaxY] = s.max_y + 1.0;
  if (s.area == 0) {
    for (int i = kCenterX; i < kShapeColumns; ++i) out[i] = NAN;
    return;
  }
  const double cx = s.sum_x / n, cy = s.sum_y / n;
  out[kCenterX] = cx;
  out[kCenterY] = cy;
  // Central second moments times n^2, exactly in integers: n * sum(x^2) -
  // sum(x)^2 needs up to ~2^110. A symmetric object then has exactly equal
  // eigenvalues (eccentricity 0), where floating-point raw sums would leave
  // ~1e-6 of noise after the square root.
  double a, c, b;  // n^2 * variance of x, of y, covariance
#if defined(__SIZEOF_INT128__)
  using wide = __int128;
  const wide wn = s.area;
  a = static_cast<double>(wn * s.sum_xx - wide{s.sum_x} * s.sum_x);
  c = static_cast<double>(wn * s.sum_yy - wide{s.sum_y} * s.sum_y);
  b = static_cast<double>(wn * s.sum_xy - wide{s.sum_x} * s.sum_y);
  const double half_diff = static_cast<double>(wn * s.sum_xx - wide{s.sum_x} * s.sum_x -
                                               (wn * s.sum_yy - wide{s.sum_y} * s.sum_y)) / 2.0;
#else
  a = n * s.sum_xx - static_cast<double>(s.sum_x) * s.sum_x;
  c = n * s.sum_yy - static_cast<double>(s.sum_y) * s.sum_y;
  b = n * s.sum_xy - static_cast<double>(s.sum_x) * s.sum_y;
  const double half_diff = (a - c) / 2.0;
#endif
  const double n2 = n * n;
  const double half_trace = 0.5 * (a + c) / n2;
  const double root = sqrt((half_diff / n2) * (half_diff / n2) + (b / n2) * (b / n2));
  const double l1 = half_trace + root;
  double l2 = half_trace - root;
  l2 = l2 > 0 ? l2 : 0;
  out[kMajorAxis] = 4.0 * sqrt(l1);
  out[kMinorAxis] = 4.0 * sqrt(l2);
  out[kEccentricity] = l1 > 0 ? sqrt(1.0 - l2 / l1) : 0.0;
  out[kEquivalentDiameter] = sqrt(4.0 * n / 3.14159265358979323846);
}

CELLRT_HOST_DEVICE inline void intensity_features(const IntensitySums& s, int64_t area, double* out) {
  out[kIntegrated] = s.sum;
  if (area == 0) {
    out[kMean] = out[kStd] = out[kMin] = out[kMax] = NAN;
    return;
  }
  const double n = static_cast<double>(area);
  const double mean = s.sum / n;
  const double var = s.sum_sq / n - mean * mean;
  out[kMean] = mean;
  out[kStd] = var > 0 ? sqrt(var) : 0.0;
  out[kMin] = s.min;
  out[kMax] = s.max;
}

}  // namespace cellrt::detail
