// Backends of rbf_kernel; mmd.cpp validates the arguments first.
#pragma once

#include <cstdint>

namespace cellrt::detail {

// out: (m,) sums over the points when `sums`, else (m, n) values.
void rbf_kernel_cpu(const float* queries, const float* points, int64_t m, int64_t n, int32_t dims,
                    double inv_two_sigma2, bool sums, double* out, int32_t num_threads);
void rbf_kernel_cuda(const float* queries, const float* points, int64_t m, int64_t n, int32_t dims,
                     double inv_two_sigma2, bool sums, double* out, void* stream);

}  // namespace cellrt::detail
