// CUDA backend of rbf_kernel. Sums: one block per query, its threads stride
// over the points and a shared-memory tree adds their partial sums (the
// order differs from the host's ascending sum: results agree to rounding).
// Values: one thread per (query, point) pair.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/block_reduce.cuh"
#include "core/cuda_check.h"
#include "mmd/mmd_kernel.h"
#include "mmd/mmd_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxGridY = 65535;

__global__ void rbf_sums_kernel(const float* __restrict__ queries, const float* __restrict__ points, int64_t m,
                                int64_t n, int32_t dims, double inv_two_sigma2, double* __restrict__ out) {
  __shared__ double partial[kThreads];
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const float* q = queries + i * dims;
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += rbf_value(q, points + j * dims, dims, inv_two_sigma2);
    const double total = block_sum<kThreads>(sum, partial);
    if (threadIdx.x == 0) out[i] = total;
  }
}

__global__ void rbf_values_kernel(const float* __restrict__ queries, const float* __restrict__ points, int64_t m,
                                  int64_t n, int32_t dims, double inv_two_sigma2, double* __restrict__ out) {
  const int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (j >= n) return;
  for (int64_t i = blockIdx.y; i < m; i += gridDim.y)
    out[i * n + j] = rbf_value(queries + i * dims, points + j * dims, dims, inv_two_sigma2);
}

}  // namespace

void rbf_kernel_cuda(const float* queries, const float* points, int64_t m, int64_t n, int32_t dims,
                     double inv_two_sigma2, bool sums, double* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (sums) {
    const auto grid = static_cast<unsigned>(std::min<int64_t>(m, int64_t{1} << 20));
    rbf_sums_kernel<<<grid, kThreads, 0, s>>>(queries, points, m, n, dims, inv_two_sigma2, out);
  } else {
    if (n == 0) return;
    const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads),
                    static_cast<unsigned>(std::min<int64_t>(m, kMaxGridY)));
    rbf_values_kernel<<<grid, kThreads, 0, s>>>(queries, points, m, n, dims, inv_two_sigma2, out);
  }
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace cellrt::detail
