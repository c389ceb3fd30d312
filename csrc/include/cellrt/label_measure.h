// label_measure: a mask's objects labelled, filtered by area and measured in
// one call - on a GPU without the host waiting for the object count between
// labelling and measuring (the stream is synchronised once, at the end).
#pragma once

#include <cstdint>

#include "cellrt/measure.h"
#include "cellrt/types.h"

namespace cellrt {

struct LabelMeasureOptions {
  int32_t connectivity = 8;  // 4 or 8, as label()
  int64_t min_area = 0;      // objects under this many pixels are dropped (0 or 1: none)
  int32_t num_threads = 0;   // CPU worker threads; 0 = all hardware threads
};

struct LabelMeasureResult {
  int64_t num_objects = 0;  // N: objects kept, numbered 1..N in labels
  int64_t measured = 0;     // rows of features written: min(N, capacity)
};

// label(mask) then remove_small_objects(min_area) then measure(): the same
// labels (1..N in raster order of first pixel) and the same table as those
// three calls.
//
// The caller does not know N before the call, so features holds a guess:
// `capacity` rows. Objects 1..min(N, capacity) are measured into its first
// rows; when N > capacity (result.measured < result.num_objects) the labels
// are still complete - call measure() with an [N, columns] table for all of
// them.
//
// Args:
//   mask:        [H, W] uint8 (non-zero = foreground), C-contiguous.
//   labels:      [H, W] int32, C-contiguous, same device; written entirely.
//   intensities: [K, H, W] uint8, uint16 or float32 (any strides), or
//                nullptr / a view with ndim 0 for none.
//   features:    [capacity, 12 + 5 K] float64, C-contiguous (capacity may
//                be 0); rows past result.measured are left as they were.
//   stream:      cudaStream_t for device views (nullptr = default stream);
//                the call waits for it once, at the end.
//
// Throws std::invalid_argument for bad shapes, dtypes, devices or options,
// as label() and measure() do.
LabelMeasureResult label_measure(const TensorView& mask, const TensorView& labels, const TensorView* intensities,
                                 const TensorView& features, const LabelMeasureOptions& options = LabelMeasureOptions{},
                                 void* stream = nullptr);

}  // namespace cellrt
