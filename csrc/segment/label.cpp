// Validates label arguments and routes to a backend.
#include "cellrt/label.h"

#include <limits>

#include "core/check.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

int64_t label(const TensorView& mask, const TensorView& labels, const LabelOptions& options, void* stream) {
  detail::check_view("label", "mask", mask, 2, "(H, W)", true);
  detail::check_view("label", "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(mask.dtype == DType::kUInt8, "label: mask should be uint8 (non-zero = foreground), got ",
               dtype_name(mask.dtype));
  CELLRT_CHECK(labels.dtype == DType::kInt32, "label: labels should be int32, got ", dtype_name(labels.dtype));
  detail::check_same_shape_2d("label", "mask", mask, "labels", labels);
  detail::check_no_overlap("label", "mask", mask, "labels", labels, false);
  CELLRT_CHECK(options.connectivity == 4 || options.connectivity == 8,
               "label: connectivity should be 4 or 8, got ", options.connectivity);
  detail::check_same_device("label", "mask", mask, "labels", labels);
  const int64_t h = mask.shape[0], w = mask.shape[1];
  CELLRT_CHECK(h * w <= std::numeric_limits<int32_t>::max(), "label: the mask should have at most 2^31 - 1 pixels, got ",
               h, " x ", w);
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
