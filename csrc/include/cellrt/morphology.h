// Binary morphology: erosion and dilation by a square or a disk, the building
// blocks of opening and closing.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

enum class Footprint : int32_t {
  kSquare = 0,  // (2r + 1) x (2r + 1)
  kDisk = 1,    // the pixels with dx^2 + dy^2 <= r^2 (scikit-image's disk(r))
};

struct MorphologyOptions {
  Footprint footprint = Footprint::kDisk;
  int32_t num_threads = 0;  // CPU worker threads; 0 = all hardware threads
};

// out = mask eroded (dilate == false) or dilated (dilate == true) by the
// footprint of radius `radius`, as scikit-image's binary_erosion /
// binary_dilation: outside the image counts as foreground for erosion (the
// border does not erode) and as background for dilation. Per row, each
// pixel's horizontal clearance (how far its run of foreground reaches to
// both sides); a pixel survives erosion if, at every row offset dy of the
// footprint, the clearance below or above it covers the footprint's
// half-width at dy: O(H * W * (2r + 1)) small integer compares, exact.
//
// Args:
//   mask: [H, W] uint8 (non-zero = foreground), C-contiguous, host or CUDA.
//   out:  [H, W] uint8, written 0/1, C-contiguous, same device; not mask.
//   radius: 0 (a copy) to 32766.
//   stream: cudaStream_t for device arrays (ignored on the host).
void binary_morphology(const TensorView& mask, const TensorView& out, int32_t radius, bool dilate,
                       const MorphologyOptions& options = MorphologyOptions{}, void* stream = nullptr);

}  // namespace cellrt
