// remove_small_objects: drop the objects of a label image below an area and
// number the rest 1..N - the last step of every mask -> objects chain.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// Writes to `out` the labels of `labels` whose objects cover at least
// `min_area` pixels, renumbered 1..N in increasing order of their old label
// (so labels numbered in raster order stay in raster order); the pixels of
// smaller objects, and the background (0), become 0. Labels need not be
// consecutive: absent labels cover 0 pixels and are dropped for any
// min_area >= 1. min_area <= 0 keeps every label as it is (out is a copy)
// and returns the largest label.
//
// Two passes over the image: object areas (a table indexed by label, or,
// for labels far above the pixel count, the sorted distinct labels), then
// the renumbering.
//
// Args:
//   labels: [H, W] int32 >= 0, C-contiguous, host memory.
//   out:    [H, W] int32, C-contiguous, host memory; may be `labels` itself
//           (in place). Written entirely.
// Returns N, the number of objects kept.
//
// Throws std::invalid_argument for bad shapes or dtypes and for negative
// labels (the message gives their count).
int64_t remove_small_objects(const TensorView& labels, const TensorView& out, int64_t min_area,
                             int32_t num_threads = 0);

}  // namespace cellrt
