// histogram: exact per-value counts of an 8- or 16-bit image (the input of
// Otsu and the other histogram thresholds).
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// counts[v] = number of pixels equal to v.
//
// Args:
//   image:  any shape up to 4-D, uint8 or uint16, C-contiguous, host or CUDA.
//   counts: 256 (uint8) or 65536 (uint16) int64, C-contiguous, same device; written.
//   num_threads: CPU worker threads; 0 = all hardware threads.
//   stream: cudaStream_t for device arrays (asynchronous: nothing comes back to the host).
void histogram(const TensorView& image, const TensorView& counts, int32_t num_threads = 0, void* stream = nullptr);

}  // namespace cellrt
