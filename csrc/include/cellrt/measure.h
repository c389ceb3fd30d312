// measure: per-object shape and intensity measurements from a label image,
// in one pass over the pixels.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// Columns of the feature table, per object (coordinates: x = column,
// y = row, pixel centres at integers):
//   0  area                      pixels
//   1  bbox min x                inclusive
//   2  bbox min y                inclusive
//   3  bbox max x                exclusive (min + width)
//   4  bbox max y                exclusive
//   5  centroid x
//   6  centroid y
//   7  major axis length         4 * sqrt(larger eigenvalue of the coordinate
//   8  minor axis length           covariance), as scikit-image's regionprops
//   9  eccentricity              sqrt(1 - minor^2 / major^2)
//  10  equivalent diameter       diameter of the disc of the same area
//  11  perimeter                 length of the closed outer contour (axis
//                                steps 1, diagonal sqrt(2): cv2.arcLength)
// then, for each intensity channel k, 5 columns at 12 + 5 k:
//   integrated (sum), mean, standard deviation (population), min, max.
// Objects with no pixels (a label in 1..N that does not occur) have area 0,
// an empty box (min = INT32_MAX, max = 0), perimeter 0, NaN for the rest,
// and integrated intensity 0.
constexpr int32_t kMeasureShapeColumns = 12;
constexpr int32_t kMeasureIntensityColumns = 5;

struct MeasureOptions {
  int32_t num_threads = 0;  // CPU worker threads; 0 = all hardware threads
};

struct MeasureResult {
  int64_t out_of_range = 0;  // pixels whose label is < 0 or > N (not measured)
};

// Args:
//   labels:      [H, W] int32, C-contiguous; 0 is background, 1..N objects.
//   num_objects: N.
//   intensities: [K, H, W] uint8, uint16 or float32 (any strides), or
//                nullptr / a view with ndim 0 for none.
//   features:    [N, 12 + 5 K] float64, C-contiguous; written entirely.
//
// Throws std::invalid_argument for bad shapes, dtypes or devices.
//   stream:      cudaStream_t for device views (nullptr = default stream); the
//                call waits for it (the out-of-range count is read back).
MeasureResult measure(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                      const TensorView& features, const MeasureOptions& options = MeasureOptions{},
                      void* stream = nullptr);

}  // namespace cellrt
