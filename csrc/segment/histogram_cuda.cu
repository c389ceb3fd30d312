// CUDA histogram of 8/16-bit images: 8-bit values are counted in per-block
// shared-memory histograms merged with one atomic per bin and block; 16-bit
// values (65536 bins do not fit in shared memory) with global atomics.
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

__global__ void histogram16_kernel(const uint16_t* __restrict__ data, int64_t n, unsigned long long* counts) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    atomicAdd(&counts[data[i]], 1ull);
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
