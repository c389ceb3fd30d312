// Validates label arguments and routes to a backend.
#include "cellrt/label.h"

#include <limits>

#include "core/check.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace detail {

void check_label_views(const char* op, const TensorView& mask, const TensorView& labels, int32_t connectivity) {
  check_view(op, "mask", mask, 2, "(H, W)", true);
  check_view(op, "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(mask.dtype == DType::kUInt8, op, ": mask should be uint8 (non-zero = foreground), got ",
               dtype_name(mask.dtype));
  CELLRT_CHECK(labels.dtype == DType::kInt32, op, ": labels should be int32, got ", dtype_name(labels.dtype));
  check_same_shape_2d(op, "mask", mask, "labels", labels);
  check_no_overlap(op, "mask", mask, "labels", labels, false);
  CELLRT_CHECK(connectivity == 4 || connectivity == 8, op, ": connectivity should be 4 or 8, got ", connectivity);
  check_same_device(op, "mask", mask, "labels", labels);
  CELLRT_CHECK(mask.shape[0] * mask.shape[1] <= std::numeric_limits<int32_t>::max(), op,
               ": the mask should have at most 2^31 - 1 pixels, got ", mask.shape[0], " x ", mask.shape[1]);
}

}  // namespace detail

int64_t label(const TensorView& mask, const TensorView& labels, const LabelOptions& options, void* stream) {
  detail::check_label_views("label", mask, labels, options.connectivity);
  const int64_t h = mask.shape[0], w = mask.shape[1];
  if (h == 0 || w == 0) return 0;
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* out = static_cast<int32_t*>(labels.data);
  if (mask.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    return detail::label_cuda(m, out, static_cast<int32_t>(h), static_cast<int32_t>(w), options.connectivity, stream);
#else
    (void)stream;
    throw NotCompiledError("label: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  return detail::label_cpu(m, out, static_cast<int32_t>(h), static_cast<int32_t>(w), options.connectivity,
                           options.num_threads);
}

}  // namespace cellrt
