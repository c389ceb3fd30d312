// Per-row and per-pixel arithmetic of binary erosion/dilation, shared by the
// CPU backend (threads over rows) and the CUDA backend (a thread per pixel,
// or per row for large footprints, then a thread per pixel).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Half-width of the footprint at row offset dy (|dy| <= radius).
CELLRT_HOST_DEVICE inline int32_t footprint_half_width(int32_t footprint, int32_t radius, int32_t dy) {
  if (footprint == 0) return radius;  // square
  // Disk: the largest h with h^2 + dy^2 <= r^2, in integers (no sqrt rounding).
  const int64_t room = int64_t{radius} * radius - int64_t{dy} * dy;
  int32_t h = static_cast<int32_t>(sqrt(static_cast<double>(room)));
  while (int64_t{h} * h > room) --h;
  while (int64_t{h + 1} * (h + 1) <= room) ++h;
  return h;
}

// For one row: clearance[x] = how many pixels the foreground run through x
// extends on its shorter side (0: x is foreground with a background
// neighbour in the row), -1 for background, capped at `cap`. Outside the
// row counts as foreground. `invert` reads the complement of the mask
// (dilation is the complement of the eroded complement).
CELLRT_HOST_DEVICE inline void row_clearance(const uint8_t* row, int32_t width, bool invert, int16_t cap,
                                             int16_t* clearance) {
  // Left to right: pixels of foreground ending at x (the left border is a run of `cap`).
  // Branch-free steps (selects): the runs of real masks are short and irregular.
  int32_t run = cap;
  for (int32_t x = 0; x < width; ++x) {
    const bool on = (row[x] != 0) != invert;
    const int32_t longer = run + 1 < cap ? run + 1 : cap;
    run = on ? longer : -1;
    clearance[x] = static_cast<int16_t>(run);
  }
  // Right to left, keeping the shorter side.
  run = cap;
  for (int32_t x = width - 1; x >= 0; --x) {
    const int32_t left = clearance[x];
    const int32_t longer = run + 1 < cap ? run + 1 : cap;
    run = left >= 0 ? longer : -1;
    clearance[x] = static_cast<int16_t>(run < left ? run : left);
  }
}

// row_clearance()'s value at one pixel, from that pixel alone: at most `cap`
// reads each side, no dependence on the pixels before it, so a GPU runs one
// thread per pixel with coalesced reads (a thread per row reads rows a
// stride apart and leaves most of the GPU idle).
CELLRT_HOST_DEVICE inline int16_t pixel_clearance(const uint8_t* row, int32_t width, int32_t x, bool invert,
                                                  int16_t cap) {
  if ((row[x] != 0) == invert) return -1;
  int32_t reach = cap;
  for (int32_t d = 1; d <= reach; ++d) {
    if (x - d < 0) break;
    if ((row[x - d] != 0) == invert) reach = d - 1;
  }
  for (int32_t d = 1; d <= reach; ++d) {
    if (x + d >= width) break;
    if ((row[x + d] != 0) == invert) reach = d - 1;
  }
  return static_cast<int16_t>(reach);
}

// Whether pixel (y, x) survives erosion: at every row offset dy of the
// footprint inside the image, the clearance covers the half-width there.
// Rows outside the image count as foreground.
CELLRT_HOST_DEVICE inline bool survives_erosion(const int16_t* clearance, int32_t height, int32_t width, int32_t y,
                                                int32_t x, int32_t radius, const int16_t* half_widths) {
  const int32_t top = y - radius < 0 ? -y : -radius;
  const int32_t bottom = y + radius >= height ? height - 1 - y : radius;
  for (int32_t dy = top; dy <= bottom; ++dy)
    if (clearance[int64_t{y + dy} * width + x] < half_widths[dy + radius]) return false;
  return true;
}

}  // namespace cellrt::detail
