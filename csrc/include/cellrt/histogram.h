// histogram: exact per-value counts of an 8- or 16-bit image (the input of
// Otsu and the other histogram thresholds); percentiles of a float image
// (the percentile normalisation of tile and segment).
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

// out[i] = the qs[i]-th percentile (0..100) of the finite values of `values`,
// as numpy.percentile(method="linear") computes it over them (NaN and +-inf
// left out): the two order statistics around q / 100 x (n - 1) are exact -
// found by a radix selection on the values' bits, two passes over the data
// whatever their distribution - and linearly interpolated in double (within
// an ulp of numpy's result). -0 and +0 are one value.
//
// Args:
//   values: any shape up to 4-D, float32, C-contiguous, host memory.
//   qs, out: `count` doubles (count 0..8); out is NaN where there is no
//            finite value.
// Returns the number of finite values.
int64_t percentiles(const TensorView& values, const double* qs, int32_t count, double* out,
                    int32_t num_threads = 0);

}  // namespace cellrt
