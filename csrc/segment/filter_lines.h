// The CUDA backend's filter passes written once over lines: each pass calls
// the shared per-line arithmetic of filter_kernel.h. The CUDA kernels run one
// line per thread (the gaussian's taps: one sample per thread, the same
// gaussian_line_sample); filter_by_lines_host() runs the same passes on the
// CPU so tests check the CUDA arithmetic against the CPU backend without a
// GPU.
#pragma once

#include <cstdint>

#include "segment/filter_kernel.h"

namespace cellrt::detail {

// Gaussian, horizontal pass over row y: tmp row y.
CELLRT_HOST_DEVICE inline void gaussian_row_pass(const float* image, float* tmp, int32_t height, int32_t width,
                                                 int32_t y, int32_t radius, const float* w, int32_t mode) {
  (void)height;
  const float* row = image + int64_t{y} * width;
  for (int32_t x = 0; x < width; ++x)
    tmp[int64_t{y} * width + x] = gaussian_line_sample(row, 1, width, x, radius, w, mode);
}

// Gaussian, vertical pass over column x: out column x from tmp.
CELLRT_HOST_DEVICE inline void gaussian_column_pass(const float* tmp, float* out, int32_t height, int32_t width,
                                                    int32_t x, int32_t radius, const float* w, int32_t mode) {
  for (int32_t y = 0; y < height; ++y)
    out[int64_t{y} * width + x] = gaussian_line_sample(tmp + x, width, height, y, radius, w, mode);
}

// Box mean, horizontal window sums of row y (double).
CELLRT_HOST_DEVICE inline void box_row_pass(const float* image, double* sums, int32_t width, int32_t y,
                                            int32_t size_x, int32_t mode) {
  double* row = sums + int64_t{y} * width;
  box_line_sums(image + int64_t{y} * width, 1, width, size_x / 2, size_x, mode, false,
                [row](int64_t i, double sum) { row[i] = sum; });
}

// Box mean, vertical window sums of column x of the row sums, scaled to float.
CELLRT_HOST_DEVICE inline void box_column_pass(const double* sums, float* out, int32_t height, int32_t width,
                                               int32_t x, int32_t size_y, double scale, int32_t mode) {
  float* column = out + x;
  box_line_sums(sums + x, width, height, size_y / 2, size_y, mode, true,
                [column, width, scale](int64_t i, double sum) {
                  column[i * width] = static_cast<float>(sum * scale);
                });
}

// Recursive gaussian, vertical pass over column x: tmp column x. (Columns
// first: the CPU backend's order.)
CELLRT_HOST_DEVICE inline void recursive_gaussian_column_pass(const float* image, float* tmp, int32_t height,
                                                              int32_t width, int32_t x,
                                                              const RecursiveGaussianCoefficients& c, int32_t mode) {
  recursive_gaussian_lines<1>(image + x, width, height, tmp + x, width, 1, c, mode);
}

// Recursive gaussian, horizontal pass over row y: out row y from tmp.
CELLRT_HOST_DEVICE inline void recursive_gaussian_row_pass(const float* tmp, float* out, int32_t width, int32_t y,
                                                           const RecursiveGaussianCoefficients& c, int32_t mode) {
  recursive_gaussian_lines<1>(tmp + int64_t{y} * width, 1, width, out + int64_t{y} * width, 1, 1, c, mode);
}

}  // namespace cellrt::detail
