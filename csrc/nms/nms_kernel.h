// The per-pair arithmetic of mask NMS: box overlap, the masks' intersection
// over the boxes' overlap, and the suppression test; shared by the CPU
// backend and the CUDA kernel.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

struct InstanceBox {
  int32_t y0, x0, y1, x1;  // half-open
};

CELLRT_HOST_DEVICE inline bool boxes_overlap(const InstanceBox& a, const InstanceBox& b) {
  return a.y0 < b.y1 && b.y0 < a.y1 && a.x0 < b.x1 && b.x0 < a.x1;
}

// Pixels inside both masks (each a row-major block over its own box).
CELLRT_HOST_DEVICE inline int64_t mask_intersection(const InstanceBox& a, const uint8_t* mask_a, const InstanceBox& b,
                                                    const uint8_t* mask_b) {
  const int32_t y0 = a.y0 > b.y0 ? a.y0 : b.y0, y1 = a.y1 < b.y1 ? a.y1 : b.y1;
  const int32_t x0 = a.x0 > b.x0 ? a.x0 : b.x0, x1 = a.x1 < b.x1 ? a.x1 : b.x1;
  const int32_t width_a = a.x1 - a.x0, width_b = b.x1 - b.x0;
  int64_t both = 0;
  for (int32_t y = y0; y < y1; ++y) {
    const uint8_t* row_a = mask_a + int64_t{y - a.y0} * width_a - a.x0;
    const uint8_t* row_b = mask_b + int64_t{y - b.y0} * width_b - b.x0;
    for (int32_t x = x0; x < x1; ++x) both += (row_a[x] != 0) & (row_b[x] != 0);
  }
  return both;
}

// Pixels inside one mask.
CELLRT_HOST_DEVICE inline int64_t mask_area(const uint8_t* mask, int64_t size) {
  int64_t on = 0;
  for (int64_t p = 0; p < size; ++p) on += mask[p] != 0;
  return on;
}

// Whether an instance of area `area_kept` suppresses one of area
// `area_other` that it meets in `both` pixels. Written as products (no
// division), so every backend decides the same way.
CELLRT_HOST_DEVICE inline bool suppresses(int64_t both, int64_t area_kept, int64_t area_other, float iou_threshold,
                                          float ios_threshold) {
  if (both == 0) return false;
  const double inter = static_cast<double>(both);
  const double uni = static_cast<double>(area_kept + area_other - both);
  const double smaller = static_cast<double>(area_kept < area_other ? area_kept : area_other);
  return inter > static_cast<double>(iou_threshold) * uni || inter > static_cast<double>(ios_threshold) * smaller;
}

}  // namespace cellrt::detail
