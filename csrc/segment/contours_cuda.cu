// CUDA contours: the first pixel of every object by atomicMin over pixel
// indices, then one thread per object follows its outer border with the
// shared trace (contour_kernel.h): a counting pass (point counts and
// perimeters), a CUB scan into CSR offsets, and - when asked - a pass that
// writes the points. Only the total point count comes back to the host.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <climits>
#include <cstdint>

#include "core/cuda_check.h"
#include "segment/contour_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void first_pixel_kernel(const int32_t* __restrict__ labels, int64_t pixels, int64_t num_objects,
                                   int32_t* first) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= pixels) return;
  const int32_t l = labels[p];
  if (l > 0 && l <= num_objects) atomicMin(&first[l], static_cast<int32_t>(p));
}

__global__ void fill_kernel(int32_t* values, int64_t n, int32_t value) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < n) values[i] = value;
}

__global__ void count_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                             const int32_t* __restrict__ first, int64_t* counts, double* perimeter) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects) return;
  if (first[l] == INT_MAX) {
    counts[l - 1] = 0;
    if (perimeter) perimeter[l - 1] = 0.0;
    return;
  }
  const BorderTrace t = trace_outer_border(labels, height, width, static_cast<int32_t>(l), first[l] / width,
                                           first[l] % width, IgnorePoints{});
  counts[l - 1] = t.points;
  if (perimeter) perimeter[l - 1] = t.length;
}

__global__ void points_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                              const int32_t* __restrict__ first, const int64_t* __restrict__ offsets,
                              int32_t* points) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects || first[l] == INT_MAX) return;
  int32_t* out = points + 2 * offsets[l - 1];
  trace_outer_border(labels, height, width, static_cast<int32_t>(l), first[l] / width, first[l] % width,
                     [&out](int32_t x, int32_t y) {
                       *out++ = x;
                       *out++ = y;
                     });
}

}  // namespace

int64_t contours_cuda(const int32_t* labels, int32_t height, int32_t width, int64_t num_objects, int64_t* offsets,
                      int32_t* points, double* perimeter, void* stream_handle) {
  auto s = static_cast<cudaStream_t>(stream_handle);
  const int64_t pixels = int64_t{height} * width;
  CELLRT_CUDA_CHECK(cudaMemsetAsync(offsets, 0, sizeof(int64_t), s));
  if (num_objects == 0) return 0;
  StreamBuffer<int32_t> first(static_cast<size_t>(num_objects) + 1, s);
  fill_kernel<<<blocks(num_objects + 1), kThreads, 0, s>>>(first.get(), num_objects + 1, INT_MAX);
  CELLRT_CUDA_CHECK_LAUNCH();
  first_pixel_kernel<<<blocks(pixels), kThreads, 0, s>>>(labels, pixels, num_objects, first.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  StreamBuffer<int64_t> counts(static_cast<size_t>(num_objects), s);
  count_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, first.get(),
                                                        counts.get(), perimeter);
  CELLRT_CUDA_CHECK_LAUNCH();
  size_t scan_bytes = 0;
  CELLRT_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, counts.get(), offsets + 1,
                                                  static_cast<int>(num_objects), s));
  StreamBuffer<char> scan_space(scan_bytes, s);
  CELLRT_CUDA_CHECK(cub::DeviceScan::InclusiveSum(scan_space.get(), scan_bytes, counts.get(), offsets + 1,
                                                  static_cast<int>(num_objects), s));
  if (points != nullptr) {
    points_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, first.get(), offsets,
                                                           points);
    CELLRT_CUDA_CHECK_LAUNCH();
  }
  int64_t total = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&total, offsets + num_objects, sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(s));
  return total;
}

}  // namespace cellrt::detail
