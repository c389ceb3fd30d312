// The per-thread bodies of the CUDA label and measure kernels
// (label_cuda.cu, measure_cuda.cu), written once for two callers: the
// kernels, where each body runs in its own thread and Ops are CUDA atomics,
// and label_measure_by_pixels.cpp, which runs the same bodies one after the
// other on the host with plain Ops, so the CUDA arithmetic (union-find
// links, small-object filtering at the roots, the count left on the device,
// the table's capacity) is tested on machines without a GPU.
//
// Ops provides, for the types used below:
//   add(T* address, T value)                    *address += value
//   min(T* address, T value), max(...)          integer and float
//   link(int32_t* address, int32_t value) -> the old value, *address =
//                                              min(old, value) (atomicMin)
#pragma once

#include <cstdint>

#include "core/half.h"
#include "core/host_device.h"
#include "segment/contour_kernel.h"
#include "segment/segment_kernel.h"

namespace cellrt::detail::label_measure_kernel {

// ---- label: union-find with the labels buffer as the parent array -------------

CELLRT_HOST_DEVICE inline void init_pixel(const uint8_t* mask, int32_t* parent, int64_t p) {
  parent[p] = mask[p] ? static_cast<int32_t>(p) : -1;
}

// Links the sets of a and b under the smaller root. Whatever the order in
// which threads link, every set ends rooted at its smallest pixel index.
template <class Ops>
CELLRT_HOST_DEVICE void unite(int32_t* parent, int32_t a, int32_t b) {
  bool done = false;
  while (!done) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) {
      done = true;
    } else if (a < b) {
      const int32_t old = Ops::link(&parent[b], a);
      done = old == b;  // b was still a root: linked
      b = old;
    } else {
      const int32_t old = Ops::link(&parent[a], b);
      done = old == a;
      a = old;
    }
  }
}

// Unites a foreground pixel with its earlier neighbours (W, N, and NW, NE
// with 8-connectivity).
template <class Ops>
CELLRT_HOST_DEVICE void merge_pixel(const uint8_t* mask, int32_t* parent, int32_t height, int32_t width, bool eight,
                                    int32_t x, int32_t y) {
  (void)height;
  const int32_t p = y * width + x;
  if (!mask[p]) return;
  if (x > 0 && mask[p - 1]) unite<Ops>(parent, p, p - 1);
  if (y > 0) {
    const int32_t up = p - width;
    if (mask[up]) unite<Ops>(parent, p, up);
    if (eight && x > 0 && mask[up - 1]) unite<Ops>(parent, p, up - 1);
    if (eight && x + 1 < width && mask[up + 1]) unite<Ops>(parent, p, up + 1);
  }
}

// parent[p] = root(p); root_flag[p] = 1 for roots.
CELLRT_HOST_DEVICE inline void compress_pixel(int32_t* parent, int32_t* root_flag, int64_t p) {
  if (parent[p] < 0) {
    root_flag[p] = 0;
    return;
  }
  const int32_t r = find_root(parent, static_cast<int32_t>(p));
  root_flag[p] = r == p ? 1 : 0;
  parent[p] = r;
}

// Component areas, kept at their roots (after compress_pixel): the areas of
// all components whatever their number, in a pixel-sized array.
template <class Ops>
CELLRT_HOST_DEVICE void add_area_at_root(const int32_t* parent, int32_t* root_area, int64_t p) {
  const int32_t r = parent[p];
  if (r >= 0) Ops::add(&root_area[r], int32_t{1});
}

// Roots of components under min_area pixels stop being numbered.
CELLRT_HOST_DEVICE inline void drop_small_root(int32_t* root_flag, const int32_t* root_area, int64_t min_area,
                                               int64_t p) {
  if (root_flag[p] && root_area[p] < min_area) root_flag[p] = 0;
}

// labels[p] = 1 + the exclusive scan of the root flags at p's root (raster
// order of first pixels), 0 for background and dropped components.
CELLRT_HOST_DEVICE inline void relabel_pixel(int32_t* labels, const int32_t* root_flag, const int32_t* root_number,
                                             int64_t p) {
  const int32_t r = labels[p];
  labels[p] = r < 0 || !root_flag[r] ? 0 : root_number[r] + 1;
}

// The number of components, from the last entries of the flags and their
// exclusive scan.
CELLRT_HOST_DEVICE inline int32_t component_count(const int32_t* root_flag, const int32_t* root_number,
                                                  int64_t pixels) {
  return root_number[pixels - 1] + root_flag[pixels - 1];
}

// ---- measure: per-object sums by atomics, then one row per object ------------

// Per-object sums for objects 1..capacity, each field an array of
// capacity + 1 entries (entry 0 unused).
struct Sums {
  unsigned long long* moments;  // [6][capacity + 1]: area, sum_x, sum_y, sum_xx, sum_yy, sum_xy
  int32_t* bounds;              // [4][capacity + 1]: min_x, min_y, max_x, max_y
  double* intensity;            // [K][2][capacity + 1]: sum, sum_sq
  float* extremes;              // [K][2][capacity + 1]: min, max
  unsigned long long* out_of_range;  // pixels labelled < 0 or > the object count
};

CELLRT_HOST_DEVICE inline void init_object(const Sums& s, int64_t n1, int64_t channels, int64_t i) {
  for (int f = 0; f < 6; ++f) s.moments[f * n1 + i] = 0;
  s.bounds[i] = s.bounds[n1 + i] = INT32_MAX;
  s.bounds[2 * n1 + i] = s.bounds[3 * n1 + i] = -1;
  for (int64_t k = 0; k < channels; ++k) {
    s.intensity[(2 * k) * n1 + i] = s.intensity[(2 * k + 1) * n1 + i] = 0.0;
    s.extremes[(2 * k) * n1 + i] = INFINITY;
    s.extremes[(2 * k + 1) * n1 + i] = -INFINITY;
  }
}

// The number of objects: the count left on the device by label when given
// (labels are then known to be 1..count), else the caller's.
CELLRT_HOST_DEVICE inline int64_t object_count(const int32_t* device_count, int64_t num_objects) {
  return device_count ? int64_t{*device_count} : num_objects;
}

template <class Ops, class In>
CELLRT_HOST_DEVICE void accumulate_pixel(const int32_t* labels, int32_t width, int64_t count, int64_t capacity,
                                         const In* image, int64_t channels, int64_t sc, int64_t sy, int64_t sx,
                                         const Sums& s, int32_t x, int32_t y) {
  const int32_t l = labels[int64_t{y} * width + x];
  if (l == 0) return;
  if (l < 0 || l > count) {
    Ops::add(s.out_of_range, 1ull);
    return;
  }
  if (l > capacity) return;  // past the table: the caller measures again
  const int64_t n1 = capacity + 1;
  const unsigned long long xx = static_cast<unsigned long long>(x), yy = static_cast<unsigned long long>(y);
  Ops::add(&s.moments[l], 1ull);
  Ops::add(&s.moments[n1 + l], xx);
  Ops::add(&s.moments[2 * n1 + l], yy);
  Ops::add(&s.moments[3 * n1 + l], xx * xx);
  Ops::add(&s.moments[4 * n1 + l], yy * yy);
  Ops::add(&s.moments[5 * n1 + l], xx * yy);
  Ops::min(&s.bounds[l], x);
  Ops::min(&s.bounds[n1 + l], y);
  Ops::max(&s.bounds[2 * n1 + l], x);
  Ops::max(&s.bounds[3 * n1 + l], y);
  for (int64_t k = 0; k < channels; ++k) {
    const float v = to_float(image[k * sc + y * sy + x * sx]);
    const double d = v;
    Ops::add(&s.intensity[(2 * k) * n1 + l], d);
    Ops::add(&s.intensity[(2 * k + 1) * n1 + l], d * d);
    Ops::min(&s.extremes[(2 * k) * n1 + l], v);
    Ops::max(&s.extremes[(2 * k + 1) * n1 + l], v);
  }
}

// Row l - 1 of the table (objects 1..min(count, capacity)): the shared
// shape_features / intensity_features and the traced perimeter.
CELLRT_HOST_DEVICE inline void finalize_object(const Sums& s, const int32_t* labels, int32_t height, int32_t width,
                                               int64_t count, int64_t capacity, int64_t channels, double* features,
                                               int64_t l) {
  if (l > count || l > capacity) return;
  const int64_t n1 = capacity + 1;
  ObjectSums o;
  o.area = static_cast<int64_t>(s.moments[l]);
  o.sum_x = static_cast<int64_t>(s.moments[n1 + l]);
  o.sum_y = static_cast<int64_t>(s.moments[2 * n1 + l]);
  o.sum_xx = static_cast<int64_t>(s.moments[3 * n1 + l]);
  o.sum_yy = static_cast<int64_t>(s.moments[4 * n1 + l]);
  o.sum_xy = static_cast<int64_t>(s.moments[5 * n1 + l]);
  o.min_x = s.bounds[l];
  o.min_y = s.bounds[n1 + l];
  o.max_x = s.bounds[2 * n1 + l];
  o.max_y = s.bounds[3 * n1 + l];
  const int64_t columns = kShapeColumns + kIntensityColumns * channels;
  double* row = features + (l - 1) * columns;
  shape_features(o, row);
  row[kPerimeter] = o.area ? outer_perimeter(labels, height, width, static_cast<int32_t>(l), o.min_x, o.min_y) : 0.0;
  for (int64_t k = 0; k < channels; ++k) {
    IntensitySums is;
    is.sum = s.intensity[(2 * k) * n1 + l];
    is.sum_sq = s.intensity[(2 * k + 1) * n1 + l];
    is.min = s.extremes[(2 * k) * n1 + l];
    is.max = s.extremes[(2 * k + 1) * n1 + l];
    intensity_features(is, o.area, row + kShapeColumns + kIntensityColumns * k);
  }
}

}  // namespace cellrt::detail::label_measure_kernel
