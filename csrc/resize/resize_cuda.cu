// CUDA resize: a thread per output sample in each pass (a warp along a row,
// so both passes read and write consecutive addresses), each running
// resize_line_sample as the CPU backend does, over tap tables built on the
// host by the same resize_taps() and uploaded once per call.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "resize/resize_ops.h"

namespace cellrt::detail {

namespace {

// Lines stride by the grid's height: gridDim.y stops at 65535.
template <typename T>
__global__ void resize_rows_kernel(const T* image, float* tmp, int64_t lines, int64_t width, int64_t out_width,
                                   const int64_t* first, const int32_t* count, const float* weights,
                                   int32_t max_taps) {
  const int64_t x = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (x >= out_width) return;
  for (int64_t line = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; line < lines;
       line += int64_t{gridDim.y} * blockDim.y)
    tmp[line * out_width + x] = resize_line_sample(image + line * width, 1, first[x], count[x], weights + x * max_taps);
}

__global__ void resize_columns_kernel(const float* tmp, float* out, int64_t channels, int64_t height,
                                      int64_t out_height, int64_t out_width, const int64_t* first,
                                      const int32_t* count, const float* weights, int32_t max_taps) {
  const int64_t x = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (x >= out_width) return;
  const int64_t lines = channels * out_height;
  for (int64_t line = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; line < lines;
       line += int64_t{gridDim.y} * blockDim.y) {
    const int64_t c = line / out_height, y = line % out_height;
    out[line * out_width + x] = resize_line_sample(tmp + c * height * out_width + x, out_width, first[y], count[y],
                                                   weights + y * max_taps);
  }
}

// A table's arrays on the device (uploaded from pageable memory: staged before cudaMemcpyAsync returns).
struct DeviceTable {
  StreamBuffer<int64_t> first;
  StreamBuffer<int32_t> count;
  StreamBuffer<float> weights;
  DeviceTable(const ResizeTable& t, cudaStream_t s)
      : first(t.first.size(), s), count(t.count.size(), s), weights(t.weights.size(), s) {
    CELLRT_CUDA_CHECK(cudaMemcpyAsync(first.get(), t.first.data(), t.first.size() * sizeof(int64_t),
                                      cudaMemcpyHostToDevice, s));
    CELLRT_CUDA_CHECK(cudaMemcpyAsync(count.get(), t.count.data(), t.count.size() * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, s));
    CELLRT_CUDA_CHECK(cudaMemcpyAsync(weights.get(), t.weights.data(), t.weights.size() * sizeof(float),
                                      cudaMemcpyHostToDevice, s));
  }
};

dim3 grid_for(int64_t width, int64_t lines, const dim3& block) {
  return dim3(static_cast<unsigned>((width + block.x - 1) / block.x),
              static_cast<unsigned>(std::min<int64_t>((lines + block.y - 1) / block.y, 65535)));
}

template <typename T>
void resize_typed(const T* image, float* out, int64_t channels, int64_t height, int64_t width, int64_t out_height,
                  int64_t out_width, bool antialias, cudaStream_t s) {
  const ResizeTable rows = resize_table(width, out_width, antialias);
  const ResizeTable cols = resize_table(height, out_height, antialias);
  const DeviceTable row_table(rows, s), col_table(cols, s);
  StreamBuffer<float> tmp(static_cast<size_t>(channels * height * out_width), s);
  const dim3 block(32, 8);
  resize_rows_kernel<<<grid_for(out_width, channels * height, block), block, 0, s>>>(
      image, tmp.get(), channels * height, width, out_width, row_table.first.get(), row_table.count.get(),
      row_table.weights.get(), rows.axis.max_taps);
  CELLRT_CUDA_CHECK_LAUNCH();
  resize_columns_kernel<<<grid_for(out_width, channels * out_height, block), block, 0, s>>>(
      tmp.get(), out, channels, height, out_height, out_width, col_table.first.get(), col_table.count.get(),
      col_table.weights.get(), cols.axis.max_taps);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void resize_cuda(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                 int64_t out_height, int64_t out_width, bool antialias, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::kUInt8)
    resize_typed(static_cast<const uint8_t*>(image), out, channels, height, width, out_height, out_width, antialias, s);
  else if (dtype == DType::kUInt16)
    resize_typed(static_cast<const uint16_t*>(image), out, channels, height, width, out_height, out_width, antialias,
                 s);
  else
    resize_typed(static_cast<const float*>(image), out, channels, height, width, out_height, out_width, antialias, s);
}

}  // namespace cellrt::detail
