// CUDA separable filters (gaussian_blur, gaussian_blur_recursive, box_mean):
// the running sums (box_mean, the recursive gaussian) take one thread per
// row for the horizontal pass and one per column for the vertical pass; the
// gaussian's taps, a thread per pixel. Each runs the shared arithmetic
// (filter_kernel.h / filter_lines.h) - the passes the host reference runs in tests,
// bit for bit the CPU backend's results (box_mean: with one CPU thread).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/cuda_check.h"
#include "segment/filter_lines.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 128;

// The gaussian's samples are independent: a thread per output pixel (a
// warp along a row, so both passes read consecutive addresses), each
// running gaussian_line_sample as the row / column passes of filter_lines.h
// do. A thread per line left a 2048^2 field with 2048 threads: 13 ms at
// sigma 5.67 on an H200.
// Rows stride by the grid's height: gridDim.y stops at 65535, so a tall
// image is covered by fewer thread rows than it has rows.
__global__ void gaussian_rows_kernel(const float* image, float* tmp, int32_t height, int32_t width, int32_t radius,
                                     const float* w, int32_t mode) {
  const int32_t x = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (x >= width) return;
  for (int64_t y = blockIdx.y * blockDim.y + threadIdx.y; y < height; y += int64_t{gridDim.y} * blockDim.y)
    tmp[y * width + x] = gaussian_line_sample(image + y * width, 1, width, x, radius, w, mode);
}

__global__ void gaussian_columns_kernel(const float* tmp, float* out, int32_t height, int32_t width, int32_t radius,
                                        const float* w, int32_t mode) {
  const int32_t x = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (x >= width) return;
  for (int64_t y = blockIdx.y * blockDim.y + threadIdx.y; y < height; y += int64_t{gridDim.y} * blockDim.y)
    out[y * width + x] = gaussian_line_sample(tmp + x, width, height, y, radius, w, mode);
}

__global__ void recursive_gaussian_columns_kernel(const float* image, float* tmp, int32_t height, int32_t width,
                                                  RecursiveGaussianCoefficients c, int32_t mode) {
  const int32_t x = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (x < width) recursive_gaussian_column_pass(image, tmp, height, width, x, c, mode);
}

__global__ void recursive_gaussian_rows_kernel(const float* tmp, float* out, int32_t height, int32_t width,
                                               RecursiveGaussianCoefficients c, int32_t mode) {
  const int32_t y = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (y < height) recursive_gaussian_row_pass(tmp, out, width, y, c, mode);
}

__global__ void box_rows_kernel(const float* image, double* sums, int32_t height, int32_t width, int32_t size_x,
                                int32_t mode) {
  const int32_t y = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (y < height) box_row_pass(image, sums, width, y, size_x, mode);
}

__global__ void box_columns_kernel(const double* sums, float* out, int32_t height, int32_t width, int32_t size_y,
                                   double scale, int32_t mode) {
  const int32_t x = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (x < width) box_column_pass(sums, out, height, width, x, size_y, scale, mode);
}

unsigned blocks(int32_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

void gaussian_blur_cuda(const float* image, float* out, int32_t height, int32_t width, double sigma, double truncate,
                        int32_t mode, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const std::vector<float> weights = gaussian_taps(sigma, truncate);
  if (weights.empty()) {
    CELLRT_CUDA_CHECK(cudaMemcpyAsync(out, image, static_cast<size_t>(height) * width * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s));
    return;
  }
  const auto radius = static_cast<int32_t>(weights.size() / 2);
  StreamBuffer<float> w(weights.size(), s);
  StreamBuffer<float> tmp(static_cast<size_t>(height) * width, s);
  // Pageable source: the copy is staged before cudaMemcpyAsync returns.
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(w.get(), weights.data(), weights.size() * sizeof(float), cudaMemcpyHostToDevice,
                                    s));
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((width + 31) / 32), static_cast<unsigned>(std::min((height + 7) / 8, 65535)));
  gaussian_rows_kernel<<<grid, block, 0, s>>>(image, tmp.get(), height, width, radius, w.get(), mode);
  CELLRT_CUDA_CHECK_LAUNCH();
  gaussian_columns_kernel<<<grid, block, 0, s>>>(tmp.get(), out, height, width, radius, w.get(), mode);
  CELLRT_CUDA_CHECK_LAUNCH();
}

void gaussian_blur_recursive_cuda(const float* image, float* out, int32_t height, int32_t width, double sigma,
                                  int32_t mode, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (sigma == 0.0) {
    CELLRT_CUDA_CHECK(cudaMemcpyAsync(out, image, static_cast<size_t>(height) * width * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s));
    return;
  }
  // The coefficients travel as a kernel argument (a few doubles): no upload, no sync.
  const RecursiveGaussianCoefficients c = recursive_gaussian_coefficients(sigma);
  StreamBuffer<float> tmp(static_cast<size_t>(height) * width, s);
  recursive_gaussian_columns_kernel<<<blocks(width), kThreads, 0, s>>>(image, tmp.get(), height, width, c, mode);
  CELLRT_CUDA_CHECK_LAUNCH();
  recursive_gaussian_rows_kernel<<<blocks(height), kThreads, 0, s>>>(tmp.get(), out, height, width, c, mode);
  CELLRT_CUDA_CHECK_LAUNCH();
}

void box_mean_cuda(const float* image, float* out, int32_t height, int32_t width, int32_t size_y, int32_t size_x,
                   int32_t mode, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  StreamBuffer<double> sums(static_cast<size_t>(height) * width, s);
  box_rows_kernel<<<blocks(height), kThreads, 0, s>>>(image, sums.get(), height, width, size_x, mode);
  CELLRT_CUDA_CHECK_LAUNCH();
  const double scale = 1.0 / (static_cast<double>(size_y) * size_x);
  box_columns_kernel<<<blocks(width), kThreads, 0, s>>>(sums.get(), out, height, width, size_y, scale, mode);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace cellrt::detail
