// Backends of resize; arguments are validated by resize() (resize.cpp) before these run.
#pragma once

#include <cstdint>
#include <vector>

#include "cellrt/resize.h"
#include "resize/resize_kernel.h"

namespace cellrt::detail {

// Every output sample's taps along one axis: first[i], count[i] and
// weights[i * max_taps + k], from resize_taps().
struct ResizeTable {
  ResizeAxis axis;
  std::vector<int64_t> first;
  std::vector<int32_t> count;
  std::vector<float> weights;
};

ResizeTable resize_table(int64_t in_size, int64_t out_size, bool antialias);

// image [C, H, W] of `dtype` -> out [C, H_out, W_out] float32.
void resize_cpu(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                int64_t out_height, int64_t out_width, bool antialias, int32_t num_threads);
void resize_cuda(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                 int64_t out_height, int64_t out_width, bool antialias, void* stream);

// The CUDA kernels' per-pixel bodies run on the host, one output sample
// after another in launch order (tests hold them to resize_cpu).
void resize_by_pixels(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                      int64_t out_height, int64_t out_width, bool antialias);

}  // namespace cellrt::detail
