// label: connected-component labelling of a binary mask.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

struct LabelOptions {
  int32_t connectivity = 8;  // 4 (edge neighbours) or 8 (edge and corner)
  int32_t num_threads = 0;   // CPU worker threads; 0 = all hardware threads
};

// Labels the foreground (non-zero) pixels of mask by connected component.
//
// Components are numbered 1..N in raster order of their first pixel (the
// numbering of cv2.connectedComponents and skimage.measure.label);
// background is 0.
//
// Args:
//   mask:   [H, W] uint8 (any non-zero value is foreground), C-contiguous.
//   labels: [H, W] int32, C-contiguous, same device; written entirely.
//
// Returns N, the number of components.
//
// Throws std::invalid_argument for bad shapes, dtypes or connectivity, and
// when H * W does not fit int32 (2^31 - 1 pixels).
int64_t label(const TensorView& mask, const TensorView& labels, const LabelOptions& options = LabelOptions{},
              void* stream = nullptr);

}  // namespace cellrt
