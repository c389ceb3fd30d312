// CUDA histogram of 8/16-bit images: 8-bit values are counted in per-block
// shared-memory histograms merged with one atomic per bin and block; 16-bit
// values (65536 bins do not fit in shared memory) with warp-aggregated
// global atomics.
// Counts are exact whatever the order the atomics land in.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;
constexpr int kBlocks = 1024;  // grid-stride: enough blocks to fill any current GPU

__global__ void histogram8_kernel(const uint8_t* __restrict__ data, int64_t n, unsigned long long* counts) {
  __shared__ unsigned int local[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    atomicAdd(&local[data[i]], 1u);
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (local[i]) atomicAdd(&counts[i], static_cast<unsigned long long>(local[i]));
}

// Microscopy fields are mostly background of a few nearby values, so many
// lanes of a warp hit the same bin: the lanes holding one value elect a
// leader that adds their count in one atomic (a global atomic per pixel
// serialises on those bins). The loop is warp-uniform so every lane takes
// part in each match; lanes past the end hold a value no pixel has.
__global__ void histogram16_kernel(const uint16_t* __restrict__ data, int64_t n, unsigned long long* counts) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t base = int64_t{blockIdx.x} * blockDim.x + (threadIdx.x & ~31u); base < n; base += stride) {
    const int64_t i = base + lane;
    const uint32_t value = i < n ? data[i] : 65536u + static_cast<uint32_t>(lane);
    const unsigned peers = __match_any_sync(0xffffffffu, value);
    if (value < 65536u && lane == __ffs(peers) - 1)
      atomicAdd(&counts[value], static_cast<unsigned long long>(__popc(peers)));
  }
}

}  // namespace

void histogram_cuda(const void* data, bool sixteen_bit, int64_t n, int64_t* counts, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t bins = sixteen_bit ? 65536 : 256;
  auto* out = reinterpret_cast<unsigned long long*>(counts);  // int64 counts, never negative
  CELLRT_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(bins) * sizeof(int64_t), s));
  if (n == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(kBlocks, (n + kThreads - 1) / kThreads));
  if (sixteen_bit)
    histogram16_kernel<<<grid, kThreads, 0, s>>>(static_cast<const uint16_t*>(data), n, out);
  else
    histogram8_kernel<<<grid, kThreads, 0, s>>>(static_cast<const uint8_t*>(data), n, out);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace cellrt::detail
