// Border following (Suzuki & Abe 1985, step 3, 8-connectivity) of one
// object of a label image - its outer border and the borders of its holes -
// shared by the CPU backend and a future one-thread-per-object CUDA backend.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Neighbour k of a pixel, clockwise on screen (y down) from east.
CELLRT_HOST_DEVICE inline int32_t dir_y(int k) {
  constexpr int32_t dy[8] = {0, 1, 1, 1, 0, -1, -1, -1};
  return dy[k & 7];
}
CELLRT_HOST_DEVICE inline int32_t dir_x(int k) {
  constexpr int32_t dx[8] = {1, 1, 0, -1, -1, -1, 0, 1};
  return dx[k & 7];
}

CELLRT_HOST_DEVICE inline bool is_object(const int32_t* labels, int32_t height, int32_t width, int32_t y, int32_t x,
                                         int32_t label) {
  return y >= 0 && y < height && x >= 0 && x < width && labels[int64_t{y} * width + x] == label;
}

struct BorderTrace {
  int64_t points;  // number of border points emitted
  double length;   // closed contour length: axis steps 1, diagonal sqrt(2)
};

CELLRT_HOST_DEVICE inline double step_length(int k) { return (k & 1) ? 1.4142135623730951 : 1.0; }

// Direction of the background pixel a border is entered from (Suzuki-Abe's
// (i2, j2)): west of an outer border's first pixel, east of the pixel left
// of a hole's first pixel.
constexpr int kOuterBorderEntry = 4;
constexpr int kHoleBorderEntry = 0;

// Follows the border of `label` that starts at object pixel (sy, sx), entered
// from its background neighbour in direction `entry`, calling emit(x, y) for
// each border point in order (the order of cv2.findContours with
// CHAIN_APPROX_NONE), starting with (sx, sy).
template <typename Emit>
CELLRT_HOST_DEVICE BorderTrace trace_border(const int32_t* labels, int32_t height, int32_t width, int32_t label,
                                            int32_t sy, int32_t sx, int entry, Emit&& emit) {
  emit(sx, sy);
  // 3.1: clockwise from the entry neighbour (background) to the first
  // object pixel i1.
  int k1 = -1;
  for (int i = 0; i < 8; ++i) {
    const int k = (entry + i) & 7;
    if (is_object(labels, height, width, sy + dir_y(k), sx + dir_x(k), label)) {
      k1 = k;
      break;
    }
  }
  if (k1 < 0) return BorderTrace{1, 0.0};  // isolated pixel
  const int32_t y1 = sy + dir_y(k1), x1 = sx + dir_x(k1);
  // 3.2: i2 = i1, i3 = s. k_back is the direction from i3 to i2.
  int32_t y3 = sy, x3 = sx;
  int k_back = k1;
  BorderTrace trace{1, 0.0};
  for (;;) {
    // 3.3: counter-clockwise from the element after i2 to the first object pixel i4.
    int k4 = k_back;
    for (int i = 1; i <= 8; ++i) {
      const int k = (k_back - i + 8) & 7;
      if (is_object(labels, height, width, y3 + dir_y(k), x3 + dir_x(k), label)) {
        k4 = k;
        break;
      }
    }
    const int32_t y4 = y3 + dir_y(k4), x4 = x3 + dir_x(k4);
    // 3.5: back at the start, about to repeat the first move: done.
    if (y4 == sy && x4 == sx && y3 == y1 && x3 == x1) {
      trace.length += step_length(k4);  // closing step i1 -> s
      break;
    }
    emit(x4, y4);
    ++trace.points;
    trace.length += step_length(k4);
    k_back = (k4 + 4) & 7;  // from i4 back to i3
    y3 = y4;
    x3 = x4;
  }
  return trace;
}

// The outer border of `label` from its first pixel in raster order (sy, sx).
template <typename Emit>
CELLRT_HOST_DEVICE BorderTrace trace_outer_border(const int32_t* labels, int32_t height, int32_t width, int32_t label,
                                                  int32_t sy, int32_t sx, Emit&& emit) {
  return trace_border(labels, height, width, label, sy, sx, kOuterBorderEntry, emit);
}

// The border of a hole of `label` whose first pixel in raster order is
// (hy, hx): traced from the object pixel to its left, (hy, hx - 1).
template <typename Emit>
CELLRT_HOST_DEVICE BorderTrace trace_hole_border(const int32_t* labels, int32_t height, int32_t width, int32_t label,
                                                 int32_t hy, int32_t hx, Emit&& emit) {
  return trace_border(labels, height, width, label, hy, hx - 1, kHoleBorderEntry, emit);
}

struct IgnorePoints {
  CELLRT_HOST_DEVICE void operator()(int32_t, int32_t) const {}
};

// Length of an object's closed outer contour, given its bounding box: the
// object's first pixel in raster order lies in its top row, at or after
// min_x.
CELLRT_HOST_DEVICE inline double outer_perimeter(const int32_t* labels, int32_t height, int32_t width, int32_t label,
                                                 int32_t min_x, int32_t min_y) {
  const int32_t* row = labels + int64_t{min_y} * width;
  int32_t x = min_x;
  while (row[x] != label) ++x;
  return trace_outer_border(labels, height, width, label, min_y, x, IgnorePoints{}).length;
}

}  // namespace cellrt::detail
