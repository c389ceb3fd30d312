// A block-wide sum for CUDA kernels: one value per thread in, the block's
// total out on every thread, added as a fixed tree (deterministic for a
// given block size).
#pragma once

namespace cellrt::detail {

// kThreads: the block size, a power of two; partial: kThreads elements of
// shared memory, free again when this returns.
template <int kThreads, typename T>
__device__ inline T block_sum(T value, T* partial) {
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const T total = partial[0];
  __syncthreads();
  return total;
}

}  // namespace cellrt::detail
