// CUDA connected-component labelling: union-find with atomicMin links, the
// labels buffer doubling as the parent array.
//
//   1. init:     parent[p] = p for foreground, -1 for background
//   2. merge:    each foreground pixel unites with its earlier neighbours
//                (W, NW, N, NE); links always point to the smaller index,
//                so every set stays rooted at its first pixel in raster order
//   3. compress: parent[p] = root(p)
//   4. number:   roots are flagged and an exclusive scan (CUB) numbers them
//                in raster order -- the numbering of the CPU backend
//   5. relabel:  labels[p] = number[parent[p]] + 1
//
// Only the component count comes back to the host; the result is
// deterministic whatever order the threads run in.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <cstdint>

#include "core/cuda_check.h"
#include "segment/segment_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

__device__ void unite_atomic(int32_t* parent, int32_t a, int32_t b) {
  bool done = false;
  while (!done) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) {
      done = true;
    } else if (a < b) {
      const int32_t old = atomicMin(&parent[b], a);
      done = old == b;  // b was still a root: linked
      b = old;
    } else {
      const int32_t old = atomicMin(&parent[a], b);
      done = old == a;
      a = old;
    }
  }
}

__global__ void init_kernel(const uint8_t* __restrict__ mask, int32_t* parent, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p < pixels) parent[p] = mask[p] ? static_cast<int32_t>(p) : -1;
}

__global__ void merge_kernel(const uint8_t* __restrict__ mask, int32_t* parent, int32_t height, int32_t width,
                             bool eight) {
  const int32_t x = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= width || y >= height) return;
  const int32_t p = y * width + x;
  if (!mask[p]) return;
  if (x > 0 && mask[p - 1]) unite_atomic(parent, p, p - 1);
  if (y > 0) {
    const int32_t up = p - width;
    if (mask[up]) unite_atomic(parent, p, up);
    if (eight && x > 0 && mask[up - 1]) unite_atomic(parent, p, up - 1);
    if (eight && x + 1 < width && mask[up + 1]) unite_atomic(parent, p, up + 1);
  }
}

__global__ void compress_kernel(int32_t* parent, int32_t* root_flag, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= pixels) return;
  const int32_t q = parent[p];
  if (q < 0) {
    root_flag[p] = 0;
    return;
  }
  const int32_t r = find_root(parent, static_cast<int32_t>(p));
  root_flag[p] = r == p ? 1 : 0;
  parent[p] = r;
}

__global__ void relabel_kernel(int32_t* labels, const int32_t* __restrict__ root_number, int64_t pixels) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= pixels) return;
  const int32_t r = labels[p];
  labels[p] = r < 0 ? 0 : root_number[r] + 1;
}

}  // namespace

int64_t label_cuda(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                   void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t pixels = int64_t{height} * width;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((pixels + threads - 1) / threads);

  // One scratch allocation: root flags, their exclusive scan, CUB's space.
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
  const dim3 grid2((width + block2.x - 1) / block2.x, (height + block2.y - 1) / block2.y);
  merge_kernel<<<grid2, block2, 0, stream>>>(mask, labels, height, width, connectivity == 8);
  CELLRT_CUDA_CHECK_LAUNCH();
  compress_kernel<<<blocks, threads, 0, stream>>>(labels, root_flag, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();
  CELLRT_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_space, scan_bytes, root_flag, root_number,
                                                  static_cast<int>(pixels), stream));
  relabel_kernel<<<blocks, threads, 0, stream>>>(labels, root_number, pixels);
  CELLRT_CUDA_CHECK_LAUNCH();

  int32_t last[2] = {0, 0};
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&last[0], root_number + pixels - 1, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&last[1], root_flag + pixels - 1, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return int64_t{last[0]} + last[1];
}

}  // namespace cellrt::detail
