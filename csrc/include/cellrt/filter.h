// Separable filters on single-channel float32 images: gaussian_blur,
// gaussian_blur_recursive and box_mean (local means for thresholds), on
// host or CUDA arrays (`stream`: the cudaStream_t for device arrays). The CUDA results equal the CPU ones
// bit for bit (box_mean: the CPU's with one thread; its running sums are
// restarted per thread block, which moves the last bit of a few pixels).
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

enum class BorderMode : int32_t {
  kReflect = 0,  // d c b a | a b c d | d c b a  (scipy.ndimage "reflect")
  kNearest = 1,  // a a a a | a b c d | d d d d
};

struct FilterOptions {
  BorderMode border = BorderMode::kReflect;
  int32_t num_threads = 0;  // CPU worker threads; 0 = all hardware threads
};

// out = image convolved with a gaussian of standard deviation sigma pixels,
// truncated at radius int(truncate * sigma + 0.5) (scipy's rule), weights
// normalised to sum 1. Rows first, then columns; float32 accumulation.
//
// Args:
//   image, out: [H, W] float32, C-contiguous, distinct buffers.
//   sigma:      > 0 (sigma == 0 copies).
//   truncate:   > 0.
void gaussian_blur(const TensorView& image, const TensorView& out, double sigma, double truncate = 4.0,
                   const FilterOptions& options = FilterOptions{}, void* stream = nullptr);

// out = image convolved with a recursive (IIR) approximation of a gaussian of
// standard deviation sigma pixels: Deriche's fourth-order form (two complex
// pole pairs, causal + anticausal) with refitted constants. The work per
// pixel does not depend on sigma (two passes of a few dozen flops, plus a
// warm-up of ~12 sigma samples a line), against 2 * (8 sigma + 1) taps for
// gaussian_blur. Not truncated: it differs from gaussian_blur by at most
// ~6.5e-4 of the largest input value per pass for sigma >= 1 (9.4e-4 at
// sigma 0.5: the L1 difference of the kernels, printed by
// tools/fit_recursive_gaussian.py), much less on smooth images.
// The gain is normalised to 1: a flat image stays flat to within 1 ulp (the
// causal half is held as float32 before the anticausal half is added, so
// `image > blur` can hold on a plateau, e.g. a saturated area, where the
// exact blur gives equality). Recursion in double, float32 between the
// passes; CUDA equals the CPU bit for bit. The input must be finite: the
// recursion carries a NaN or inf along its whole line, then the image (the
// Python API rejects such images; this function does not scan for them).
//
// Args:
//   image, out: [H, W] float32, C-contiguous, distinct buffers.
//   sigma:      in [0, 1e5] (0 copies).
void gaussian_blur_recursive(const TensorView& image, const TensorView& out, double sigma,
                             const FilterOptions& options = FilterOptions{}, void* stream = nullptr);

// out = mean of image over a size_y x size_x window: rows [y - size_y / 2,
// y + (size_y - 1) / 2], likewise columns (scipy's uniform_filter). Running
// sums in double: O(1) per pixel whatever the window. Window sides 1 ..
// 65535 (the CPU keeps size_y rows of sums per thread; a window past twice
// the image only repeats its reflections).
void box_mean(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
              const FilterOptions& options = FilterOptions{}, void* stream = nullptr);

}  // namespace cellrt
