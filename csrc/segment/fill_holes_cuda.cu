// CUDA fill_holes: the background labelled with the complementary
// connectivity by the CUDA union-find (label_cuda), components that reach
// the border flagged by a kernel over the border pixels, everything else
// filled - the partition the CPU's run-based union-find computes.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;

__global__ void invert_kernel(const uint8_t* __restrict__ mask, uint8_t* __restrict__ background, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) background[p] = mask[p] == 0;
}

// One thread per border pixel: top row, bottom row, left column, right column.
__global__ void flag_border_kernel(const int32_t* __restrict__ labels, uint8_t* __restrict__ reaches_border,
                                   int32_t height, int32_t width) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  int64_t p;
  if (i < width) {
    p = i;
  } else if (i < 2 * int64_t{width}) {
    p = int64_t{height - 1} * width + (i - width);
  } else if (i < 2 * int64_t{width} + height) {
    p = (i - 2 * int64_t{width}) * width;
  } else if (i < 2 * (int64_t{width} + height)) {
    p = (i - 2 * int64_t{width} - height) * width + width - 1;
  } else {
    return;
  }
  reaches_border[labels[p]] = 1;  // label 0 (the foreground) too: harmless, it is never filled
}

__global__ void fill_kernel(const uint8_t* __restrict__ mask, const int32_t* __restrict__ labels,
                            const uint8_t* __restrict__ reaches_border, uint8_t* __restrict__ out, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) out[p] = mask[p] != 0 || !reaches_border[labels[p]];
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

void fill_holes_cuda(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t connectivity,
                     void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t pixels = int64_t{height} * width;
  StreamBuffer<uint8_t> background(static_cast<size_t>(pixels), s);
  StreamBuffer<int32_t> labels(static_cast<size_t>(pixels), s);
  invert_kernel<<<blocks(pixels), kThreads, 0, s>>>(mask, background.get(), pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
  // Holes of 8-connected objects are 4-connected, and the other way round.
  const int64_t count = label_cuda(background.get(), labels.get(), height, width, connectivity == 8 ? 4 : 8, s);
  StreamBuffer<uint8_t> reaches_border(static_cast<size_t>(count) + 1, s);
  CELLRT_CUDA_CHECK(cudaMemsetAsync(reaches_border.get(), 0, static_cast<size_t>(count) + 1, s));
  flag_border_kernel<<<blocks(2 * (int64_t{width} + height)), kThreads, 0, s>>>(labels.get(), reaches_border.get(),
                                                                                 height, width);
  CELLRT_CUDA_CHECK_LAUNCH();
  fill_kernel<<<blocks(pixels), kThreads, 0, s>>>(mask, labels.get(), reaches_border.get(), out, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace cellrt::detail
