// CUDA part of mask NMS: each instance's mask area (a block per instance),
// then each candidate pair's intersection and suppression test (a thread per
// pair: pairs meet in a small overlap), with the per-pair arithmetic of
// nms_kernel.h. The greedy scan stays on the host, over the pairs only.
// Runs on the default stream and synchronises (the tables it returns are
// what the host scan needs next).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/block_reduce.cuh"
#include "core/cuda_check.h"
#include "nms/nms_kernel.h"
#include "nms/nms_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;

__global__ void area_kernel(const int64_t* __restrict__ offsets, const uint8_t* __restrict__ data, int64_t n,
                            int64_t* __restrict__ area) {
  __shared__ int64_t partial[kThreads];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    int64_t on = 0;
    for (int64_t p = offsets[i] + threadIdx.x; p < offsets[i + 1]; p += blockDim.x) on += data[p] != 0;
    const int64_t total = block_sum<kThreads>(on, partial);
    if (threadIdx.x == 0) area[i] = total;
  }
}

__global__ void pair_kernel(const int32_t* __restrict__ boxes, const int64_t* __restrict__ offsets,
                            const uint8_t* __restrict__ data, const int64_t* __restrict__ area,
                            const int32_t* __restrict__ pairs, int64_t num_pairs, float iou, float ios,
                            uint8_t* __restrict__ hits) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= num_pairs) return;
  const int32_t a = pairs[2 * p], b = pairs[2 * p + 1];
  const InstanceBox box_a{boxes[4 * a], boxes[4 * a + 1], boxes[4 * a + 2], boxes[4 * a + 3]};
  const InstanceBox box_b{boxes[4 * b], boxes[4 * b + 1], boxes[4 * b + 2], boxes[4 * b + 3]};
  const int64_t both = mask_intersection(box_a, data + offsets[a], box_b, data + offsets[b]);
  hits[p] = suppresses(both, area[a], area[b], iou, ios) ? 1 : 0;
}

}  // namespace

void copy_to_host(void* dst, const void* device_src, size_t bytes) {
  if (bytes) CELLRT_CUDA_CHECK(cudaMemcpy(dst, device_src, bytes, cudaMemcpyDeviceToHost));
}

void copy_to_device(void* device_dst, const void* src, size_t bytes) {
  if (bytes) CELLRT_CUDA_CHECK(cudaMemcpy(device_dst, src, bytes, cudaMemcpyHostToDevice));
}

void mask_nms_hits_cuda(const int32_t* boxes, const int64_t* mask_offsets, const uint8_t* mask_data, int64_t n,
                        const std::vector<int32_t>& pair_index, float iou_threshold, float ios_threshold,
                        std::vector<uint8_t>& hits) {
  const int64_t num_pairs = static_cast<int64_t>(pair_index.size() / 2);
  if (num_pairs == 0) return;
  cudaStream_t stream = nullptr;
  StreamBuffer<int64_t> area(n, stream);
  StreamBuffer<int32_t> pairs(pair_index.size(), stream);
  StreamBuffer<uint8_t> device_hits(num_pairs, stream);
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(pairs.get(), pair_index.data(), pair_index.size() * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream));
  const auto area_grid = static_cast<unsigned>(n < (1 << 20) ? n : (1 << 20));
  area_kernel<<<area_grid, kThreads, 0, stream>>>(mask_offsets, mask_data, n, area.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  pair_kernel<<<static_cast<unsigned>((num_pairs + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      boxes, mask_offsets, mask_data, area.get(), pairs.get(), num_pairs, iou_threshold, ios_threshold,
      device_hits.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(hits.data(), device_hits.get(), static_cast<size_t>(num_pairs),
                                    cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace cellrt::detail
