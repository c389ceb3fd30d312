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

// Direction of the background pixel a border is entered from (Suzuki-Abe's
// (i2, j2)): west of an outer border's first pixel, east of the pixel left
// of a hole's first pixel.
constexpr int kOuterBorderEntry = 4;
constexpr int kHoleBorderEntry = 0;

// Direction of the first object pixel among the eight neighbours of (y, x),
// trying directions from `start` in steps of `step` (+1 clockwise, -1
// counter-clockwise); -1 when none is. Away from the image's edge the
// neighbours are read without bounds checks through `offset[k]`, neighbour
// k's distance in the label array (a trace spends its time here).
CELLRT_HOST_DEVICE inline int first_object_neighbour(const int32_t* labels, int32_t height, int32_t width,
                                                     int32_t label, int32_t y, int32_t x, int start, int step,
                                                     const int64_t* offset) {
  if (y > 0 && y < height - 1 && x > 0 && x < width - 1) {
    const int32_t* centre = labels + int64_t{y} * width + x;
    for (int i = 0; i < 8; ++i) {
      const int k = (start + step * i) & 7;
      if (centre[offset[k]] == label) return k;
    }
    return -1;
  }
  for (int i = 0; i < 8; ++i) {
    const int k = (start + step * i) & 7;
    if (is_object(labels, height, width, y + dir_y(k), x + dir_x(k), label)) return k;
  }
  return -1;
}

// Follows the border of `label` that starts at object pixel (sy, sx), entered
// from its background neighbour in direction `entry`, calling emit(x, y) for
// each border point in order (the order of cv2.findContours with
// CHAIN_APPROX_NONE), starting with (sx, sy).
template <typename Emit>
CELLRT_HOST_DEVICE BorderTrace trace_border(const int32_t* labels, int32_t height, int32_t width, int32_t label,
                                            int32_t sy, int32_t sx, int entry, Emit&& emit) {
  emit(sx, sy);
  int64_t offset[8];
  for (int k = 0; k < 8; ++k) offset[k] = dir_y(k) * int64_t{width} + dir_x(k);
  // 3.1: clockwise from the entry neighbour (background) to the first
  // object pixel i1.
  const int k1 = first_object_neighbour(labels, height, width, label, sy, sx, entry, 1, offset);
  if (k1 < 0) return BorderTrace{1, 0.0};  // isolated pixel
  const int32_t y1 = sy + dir_y(k1), x1 = sx + dir_x(k1);
  // 3.2: i2 = i1, i3 = s. k_back is the direction from i3 to i2.
  int32_t y3 = sy, x3 = sx;
  int k_back = k1;
  int64_t points = 1, axis_steps = 0, diagonal_steps = 0;
  for (;;) {
    // 3.3: counter-clockwise from the element after i2 to the first object
    // pixel i4 (i2 itself, the eighth tried, always is one).
    const int k4 = first_object_neighbour(labels, height, width, label, y3, x3, k_back - 1, -1, offset);
    const int32_t y4 = y3 + dir_y(k4), x4 = x3 + dir_x(k4);
    diagonal_steps += k4 & 1;
    axis_steps += 1 - (k4 & 1);
    // 3.5: back at the start, about to repeat the first move: done (that step closes the contour).
    if (y4 == sy && x4 == sx && y3 == y1 && x3 == x1) break;
    emit(x4, y4);
    ++points;
    k_back = (k4 + 4) & 7;  // from i4 back to i3
    y3 = y4;
    x3 = x4;
  }
  return BorderTrace{points, static_cast<double>(axis_steps) + 1.4142135623730951 * static_cast<double>(diagonal_steps)};
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

// Holes of `label` inside its bounding box [y0, y1] x [x0, x1]: 4-connected
// regions of other pixels that do not reach the box's border. Scratch of
// bh * bw entries each: `state` (0 the object, 1 not reached, 2 reached)
// and `stack`. Calls on_hole(hy, hx) with the first pixel (raster order,
// image coordinates) of each hole, in raster order.
CELLRT_HOST_DEVICE inline void flood_unreached(uint8_t* state, int32_t* stack, int32_t bh, int32_t bw, int32_t seed) {
  int32_t top = 0;
  state[seed] = 2;
  stack[top++] = seed;
  while (top > 0) {
    const int32_t p = stack[--top];
    const int32_t y = p / bw, x = p % bw;
    const int32_t next[4] = {x > 0 ? p - 1 : -1, x + 1 < bw ? p + 1 : -1, y > 0 ? p - bw : -1,
                             y + 1 < bh ? p + bw : -1};
    for (int i = 0; i < 4; ++i) {
      const int32_t q = next[i];
      if (q >= 0 && state[q] == 1) {
        state[q] = 2;
        stack[top++] = q;  // each pixel is pushed at most once: bh * bw entries suffice
      }
    }
  }
}

template <typename OnHole>
CELLRT_HOST_DEVICE void find_holes(const int32_t* labels, int32_t width, int32_t label, int32_t y0, int32_t y1,
                                   int32_t x0, int32_t x1, uint8_t* state, int32_t* stack, OnHole&& on_hole) {
  const int32_t bh = y1 - y0 + 1, bw = x1 - x0 + 1;
  if (bh < 3 || bw < 3) return;
  for (int32_t y = 0; y < bh; ++y) {
    const int32_t* row = labels + int64_t{y0 + y} * width + x0;
    for (int32_t x = 0; x < bw; ++x) state[y * bw + x] = row[x] == label ? 0 : 1;
  }
  for (int32_t x = 0; x < bw; ++x) {
    if (state[x] == 1) flood_unreached(state, stack, bh, bw, x);
    if (state[(bh - 1) * bw + x] == 1) flood_unreached(state, stack, bh, bw, (bh - 1) * bw + x);
  }
  for (int32_t y = 0; y < bh; ++y) {
    if (state[y * bw] == 1) flood_unreached(state, stack, bh, bw, y * bw);
    if (state[y * bw + bw - 1] == 1) flood_unreached(state, stack, bh, bw, y * bw + bw - 1);
  }
  for (int32_t p = 0; p < bh * bw; ++p)
    if (state[p] == 1) {
      on_hole(y0 + p / bw, x0 + p % bw);
      flood_unreached(state, stack, bh, bw, p);
    }
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
