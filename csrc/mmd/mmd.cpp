// rbf_kernel: validation, then the CPU or CUDA backend.
#include "cellrt/mmd.h"

#include <cmath>

#include "core/check.h"
#include "core/validate.h"
#include "mmd/mmd_ops.h"

namespace cellrt {

void rbf_kernel(const TensorView& queries, const TensorView& points, double sigma, const TensorView& out,
                int32_t num_threads, void* stream) {
  detail::check_view("rbf_kernel", "queries", queries, 2, "(M, D)", true);
  detail::check_view("rbf_kernel", "points", points, 2, "(N, D)", true);
  CELLRT_CHECK(queries.dtype == DType::kFloat32 && points.dtype == DType::kFloat32,
               "rbf_kernel: queries and points should be float32, got ", dtype_name(queries.dtype), " and ",
               dtype_name(points.dtype));
  CELLRT_CHECK(queries.shape[1] == points.shape[1], "rbf_kernel: queries and points should have the same "
               "dimension D, got ", queries.shape[1], " and ", points.shape[1]);
  CELLRT_CHECK(queries.shape[1] > 0 && queries.shape[1] <= (int64_t{1} << 24),
               "rbf_kernel: the dimension D should be in [1, 2^24], got ", queries.shape[1]);
  CELLRT_CHECK(std::isfinite(sigma) && sigma > 0.0, "rbf_kernel: sigma should be a positive number, got ", sigma);
  CELLRT_CHECK(out.dtype == DType::kFloat64, "rbf_kernel: out should be float64, got ", dtype_name(out.dtype));
  const int64_t m = queries.shape[0], n = points.shape[0];
  const bool sums = out.ndim == 1;
  if (sums) {
    detail::check_view("rbf_kernel", "out", out, 1, "(M,)", true);
    CELLRT_CHECK(out.shape[0] == m, "rbf_kernel: out should have shape (", m, ",), got ", detail::shape_string(out));
  } else {
    detail::check_view("rbf_kernel", "out", out, 2, "(M,) for sums or (M, N) for values", true);
    CELLRT_CHECK(out.shape[0] == m && out.shape[1] == n, "rbf_kernel: out should have shape (", m, ", ", n,
                 "), got ", detail::shape_string(out));
  }
  detail::check_same_device("rbf_kernel", "queries", queries, "points", points);
  detail::check_same_device("rbf_kernel", "queries", queries, "out", out);
  if (m == 0) return;
  const double inv_two_sigma2 = 1.0 / (2.0 * sigma * sigma);
  const auto dims = static_cast<int32_t>(queries.shape[1]);
  const auto* q = static_cast<const float*>(queries.data);
  const auto* p = static_cast<const float*>(points.data);
  auto* o = static_cast<double*>(out.data);
  if (queries.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::rbf_kernel_cuda(q, p, m, n, dims, inv_two_sigma2, sums, o, stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("rbf_kernel: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::rbf_kernel_cpu(q, p, m, n, dims, inv_two_sigma2, sums, o, num_threads);
}

}  // namespace cellrt
