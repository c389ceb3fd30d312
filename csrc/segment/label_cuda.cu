// CUDA connected-component labelling: union-find with atomicMin links, the
// labels buffer doubling as the parent array (the per-thread bodies are in
// label_measure_kernel.h, tested on the host by label_measure_by_pixels).
//
//   1. init:     parent[p] = p for foreground, -1 for background
//   2. merge:    each foreground pixel unites with its earlier neighbours
//                (W, NW, N, NE); links always point to the smaller index,
//                so every set stays rooted at its first pixel in raster order
//   3. compress: parent[p] = root(p), roots flagged
//   4. filter:   with min_area, areas are added up at the roots and roots of
//                smaller components unflagged
//   5. number:   an exclusive scan (CUB) of the flags numbers the roots in
//                raster order -- the numbering of the CPU backend
//   6. relabel:  labels[p] = number[parent[p]] + 1 (0 for unflagged)
//
// The count is left in device memory: label_measure measures with it
// without waiting for the stream. The result is deterministic whatever order
// the threads run in.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "segment/device_atomics.cuh"
#include "segment/label_measure_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

namespace lk = label_measure_kernel;

__global__ void init_kernel(const uint8_t* __restrict__ mask, int32_t* parent, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) lk::init_pixel(mask, parent, p);
}

// Rows stride by the grid's height: gridDim.y stops at 65535 (masks over 524280 rows).
__global__ void merge_kernel(const uint8_t* __restrict__ mask, int32_t* parent, int32_t height, int32_t width,
                             bool eight) {
  const int32_t x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x >= width) return;
  for (int64_t y = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; y < height; y += int64_t{gridDim.y} * blockDim.y) {
    lk::merge_pixel<DeviceAtomics>(mask, parent, height, width, eight, x, static_cast<int32_t>(y));
  }
}

__global__ void compress_kernel(int32_t* parent, int32_t* root_flag, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) lk::compress_pixel(parent, root_flag, p);
}

__global__ void area_kernel(const int32_t* __restrict__ parent, int32_t* root_area, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) lk::add_area_at_root<DeviceAtomics>(parent, root_area, p);
}

__global__ void drop_small_kernel(int32_t* root_flag, const int32_t* __restrict__ root_area, int64_t min_area,
                                  int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) lk::drop_small_root(root_flag, root_area, min_area, p);
}

__global__ void relabel_kernel(int32_t* labels, const int32_t* __restrict__ root_flag,
                               const int32_t* __restrict__ root_number, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) lk::relabel_pixel(labels, root_flag, root_number, p);
}

__global__ void count_kernel(const int32_t* __restrict__ root_flag, const int32_t* __restrict__ root_number,
                             int64_t pixels, int32_t* count) {
  *count = lk::component_count(root_flag, root_number, pixels);
}

}  // namespace

void label_cuda_async(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                      int64_t min_area, int32_t* device_count, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t pixels = int64_t{height} * width;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((pixels + threads - 1) / threads);
  const bool filter = min_area > 1;

  // One scratch allocation: root flags, their exclusive scan (whose space
  // first holds the root areas when filtering), CUB's space.
  size_t scan_bytes = 0;
  CELLRT_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, static_cast<int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), static_cast<int>(pixels), stream));
  const size_t flags_bytes = (pixels * sizeof(int32_t) + 255) / 256 * 256;
  StreamBuffer<char> scratch_buffer(2 * flags_bytes + scan_bytes, stream);
  char* scratch = scratch_buffer.get();
  auto* root_flag = reinterpret_cast<int32_t*>(scratch);
  auto* root_number = reinterpret_cast<int32_t*>(scratch + flags_bytes);
  void* scan_space = scratch + 2 * flags_bytes;

  init_kernel<<<blocks, threads, 0, stream>>>(mask, labels, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
  const dim3 block2(32, 8);
  const dim3 grid2((width + block2.x - 1) / block2.x, std::min((height + block2.y - 1) / block2.y, 65535u));
  merge_kernel<<<grid2, block2, 0, stream>>>(mask, labels, height, width, connectivity == 8);
  CELLRT_CUDA_CHECK_LAUNCH();
  compress_kernel<<<blocks, threads, 0, stream>>>(labels, root_flag, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
  if (filter) {
    int32_t* root_area = root_number;  // free until the scan writes the numbers
    CELLRT_CUDA_CHECK(cudaMemsetAsync(root_area, 0, pixels * sizeof(int32_t), stream));
    area_kernel<<<blocks, threads, 0, stream>>>(labels, root_area, pixels);
    CELLRT_CUDA_CHECK_LAUNCH();
    drop_small_kernel<<<blocks, threads, 0, stream>>>(root_flag, root_area, min_area, pixels);
    CELLRT_CUDA_CHECK_LAUNCH();
  }
  CELLRT_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_space, scan_bytes, root_flag, root_number,
                                                  static_cast<int>(pixels), stream));
  relabel_kernel<<<blocks, threads, 0, stream>>>(labels, root_flag, root_number, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
  count_kernel<<<1, 1, 0, stream>>>(root_flag, root_number, pixels, device_count);
  CELLRT_CUDA_CHECK_LAUNCH();
}

int64_t label_cuda(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                   void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  StreamBuffer<int32_t> device_count(1, stream);
  label_cuda_async(mask, labels, height, width, connectivity, 0, device_count.get(), stream);
  int32_t count = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&count, device_count.get(), sizeof count, cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return count;
}

}  // namespace cellrt::detail
