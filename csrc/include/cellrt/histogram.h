// histogram: exact per-value counts of an 8- or 16-bit image and equal-width
// bins of a float image (the input of Otsu and the other histogram
// thresholds); percentiles of a float image (the percentile normalisation of
// tile and segment).
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

// Equal-width histogram of the finite values of a float32 image between their
// min and max, bin for bin what numpy.histogram(values, bins=nbins,
// range=(min, max)) counts on any numpy version: edges[b] is
// min + b (max - min) / nbins computed in double and rounded to float32 (numpy's
// linspace edges in the values' type; a constant image widens the range by 0.5
// either side), and a value v falls in bin b when edges[b] <= v < edges[b + 1],
// the last bin closed. Bins from edges, not from a float division, so values
// on an edge land where numpy puts them. Like numpy, refuses
// more bins than the range has float32 steps (edges that round to one value):
// std::invalid_argument.
//
// Args:
//   values: any shape up to 4-D, float32, C-contiguous, host memory.
//   nbins:  1 .. 2^24.
//   counts: nbins int64 (written; all 0 when no value is finite).
//   edges:  nbins + 1 floats (written; NaN when no value is finite), or NULL.
// Returns the number of finite values (NaN and +-inf are left out).
int64_t float_histogram(const TensorView& values, int32_t nbins, int64_t* counts, float* edges = nullptr,
                        int32_t num_threads = 0);

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
