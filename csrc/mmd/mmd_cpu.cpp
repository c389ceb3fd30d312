// CPU backend of rbf_kernel: threads over the queries, each query's row (or
// sum) computed in ascending point order, so results do not depend on the
// thread count.
#include <algorithm>

#include "core/parallel.h"
#include "mmd/mmd_kernel.h"
#include "mmd/mmd_ops.h"

namespace cellrt::detail {

void rbf_kernel_cpu(const float* queries, const float* points, int64_t m, int64_t n, int32_t dims,
                    double inv_two_sigma2, bool sums, double* out, int32_t num_threads) {
  // A query costs n * dims multiply-adds: small jobs stay on one thread.
  const int64_t work = m * std::max<int64_t>(n, 1) * dims;
  const int workers = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>({resolve_threads(num_threads), m, work / (1 << 16) + 1})));
  parallel_for(m, workers, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* q = queries + i * dims;
      if (sums) {
        double total = 0.0;
        for (int64_t j = 0; j < n; ++j) total += rbf_value(q, points + j * dims, dims, inv_two_sigma2);
        out[i] = total;
      } else {
        for (int64_t j = 0; j < n; ++j) out[i * n + j] = rbf_value(q, points + j * dims, dims, inv_two_sigma2);
      }
    }
  });
}

}  // namespace cellrt::detail
