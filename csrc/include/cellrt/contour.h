// contours: outer border of every object of a label image, as polygons.
#pragma once

#include <cstdint>
#include <vector>

#include "cellrt/types.h"

namespace cellrt {

struct ContourOptions {
  int32_t num_threads = 0;  // CPU worker threads; 0 = all hardware threads
};

// Traces the outer border of objects 1..N (8-connected border following,
// Suzuki & Abe), starting at each object's first pixel in raster order:
// the points of cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_NONE) on that
// object's mask, in the same order. A label that does not occur has no
// points. An object whose pixels are not 8-connected is traced from its
// first pixel only.
//
// Call twice: with points == nullptr to fill offsets (size N + 1, CSR: the
// points of object l are [offsets[l-1], offsets[l])) and learn the total,
// then with points ([total, 2] int32, x then y) to fill them.
//
// Args:
//   labels:    [H, W] int32, C-contiguous, host or CUDA memory.
//   offsets:   N + 1 int64, written (on the labels' device).
//   points:    total * 2 int32 or nullptr (on the labels' device).
//   perimeter: N doubles or nullptr: length of each closed contour (axis
//              steps 1, diagonal steps sqrt(2); cv2.arcLength(closed=True)).
//   stream:    cudaStream_t for device labels (one thread traces each
//              object; the call synchronises the stream to return the total).
//
// Returns the total number of points.
int64_t contours(const TensorView& labels, int64_t num_objects, int64_t* offsets, int32_t* points,
                 double* perimeter, const ContourOptions& options = ContourOptions{}, void* stream = nullptr);

// The holes of every object: 4-connected components of pixels that are not
// the object's and do not reach the border of its bounding box (other
// objects inside a hole are part of it, as on the object's own mask). Each
// hole's border is traced from the object pixel left of the hole's first
// pixel in raster order: the hole contours of cv2.findContours(RETR_CCOMP,
// CHAIN_APPROX_NONE) on the object's mask, with the same points in the same
// order. Work per object is proportional to its bounding box.
struct HoleContours {
  std::vector<int64_t> object_offsets;  // N + 1: the holes of object l are [object_offsets[l-1], object_offsets[l])
  std::vector<int64_t> point_offsets;   // holes + 1: the points of hole h are [point_offsets[h], point_offsets[h+1])
  std::vector<int32_t> points;          // x, y of every point
};

// Args:
//   labels: [H, W] int32, C-contiguous, host or CUDA memory (then one thread
//           per object finds and traces its holes; the result, small, comes
//           back on the host).
//   stream: cudaStream_t for device labels.
HoleContours hole_contours(const TensorView& labels, int64_t num_objects,
                           const ContourOptions& options = ContourOptions{}, void* stream = nullptr);

}  // namespace cellrt
