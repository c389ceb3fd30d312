// resize: resample the channels of an image onto another pixel grid - the
// step that brings a field to the object scale a model was trained at, and
// the model's dense output back onto the field's own grid.
//
// Each axis maps output sample i of n_out to the input coordinate
// c = (i + 0.5) * n_in / n_out (pixel centres aligned, the corners not:
// torch's align_corners=False, OpenCV's INTER_LINEAR). The filter is a
// triangle (bilinear) of half-width 1 input pixel; when downsampling with
// `antialias`, it is widened to n_in / n_out input pixels so every input
// pixel contributes (a box-like average that leaves no aliasing), as
// Pillow's BILINEAR and torch's interpolate(antialias=True) do. Weights are
// normalised over the taps that fall inside the image, so the edges repeat
// nothing and a flat image stays flat. Rows are resampled first (into a
// float32 scratch of [C, H, W_out]), then columns; float32 accumulation in
// tap order, no fused multiply-add: the CPU and CUDA results are equal bit
// for bit.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

struct ResizeOptions {
  int32_t antialias = 1;    // nonzero: widen the filter when downsampling
  int32_t num_threads = 0;  // CPU worker threads; 0 = all hardware threads
};

// Args:
//   image: [C, H, W] uint8, uint16 or float32, C-contiguous, finite.
//   out:   [C, H_out, W_out] float32, C-contiguous, on image's device, not
//          overlapping image. H, W, H_out, W_out in 1 .. 2^31 - 1.
//   stream: the cudaStream_t for device views (ignored on the host).
void resize(const TensorView& image, const TensorView& out, const ResizeOptions& options = ResizeOptions{},
            void* stream = nullptr);

}  // namespace cellrt
