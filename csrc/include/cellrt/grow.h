// grow_labels: seeded growth of a label image over a mask, one pixel layer a
// step - how touching cells are split along a predicted boundary class.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// In place: for up to `steps` steps, every unlabelled (0) pixel of `mask`
// with a labelled 4-neighbour takes the largest neighbouring label, all
// pixels of a step deciding from the labels before it (synchronous, so the
// result does not depend on scan order). Stops early when a step labels
// nothing. Work is proportional to the pixels it labels (a frontier is kept
// between steps), plus one scan of the image.
//
// Args:
//   labels: [H, W] int32, C-contiguous, host memory; updated.
//   mask:   [H, W] uint8 (non-zero = may be labelled), C-contiguous.
// Returns the number of pixels labelled.
int64_t grow_labels(const TensorView& labels, const TensorView& mask, int32_t steps);

}  // namespace cellrt
