// fill_holes: fill the background regions of a mask that do not touch the
// image border.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// out = mask with every hole set to 1. A hole is a connected region of
// background (zero) pixels that does not touch the image border; it is
// connected in the complement of `connectivity` (holes of 8-connected
// objects are 4-connected), as scipy.ndimage.binary_fill_holes does.
//
// Args:
//   mask: [H, W] uint8 (non-zero = foreground), C-contiguous, host or CUDA.
//   out:  [H, W] uint8, C-contiguous, same device; may be mask itself (in place).
//   stream: cudaStream_t for device arrays (the CUDA path labels the
//           background with the CUDA union-find, so it synchronises the
//           stream once to learn the number of background components).
void fill_holes(const TensorView& mask, const TensorView& out, int32_t connectivity = 8, void* stream = nullptr);

}  // namespace cellrt
