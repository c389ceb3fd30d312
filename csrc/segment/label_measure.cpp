// Validates label_measure arguments and routes to a backend. On the host the
// steps are label, remove_small_objects and measure; on a GPU one stream
// pass (label_cuda_async, measure_cuda_async) with the count on the device.
#include "cellrt/label_measure.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cellrt/remove_small_objects.h"
#include "core/check.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace detail {

void check_labels_within_count(unsigned long long out_of_range) {
  if (out_of_range != 0) {
    throw std::logic_error("label_measure: " + std::to_string(out_of_range) +
                           " labelled pixels outside 1..count (internal error)");
  }
}

}  // namespace detail

LabelMeasureResult label_measure(const TensorView& mask, const TensorView& labels, const TensorView* intensities,
                                 const TensorView& features, const LabelMeasureOptions& options, void* stream) {
  const char* op = "label_measure";
  detail::check_label_views(op, mask, labels, options.connectivity);
  CELLRT_CHECK(options.min_area >= 0, op, ": min_area should be >= 0 (0 or 1: keep every object), got ",
               options.min_area);
  const bool has_intensity = detail::check_measure_views(op, labels, intensities, features, -1);
  const int64_t capacity = features.shape[0];
  CELLRT_CHECK(capacity < (int64_t{1} << 31), op, ": features should have fewer than 2^31 rows, got ", capacity);
  detail::check_no_overlap(op, "mask", mask, "features", features, false);
  detail::check_no_overlap(op, "labels", labels, "features", features, false);
  if (has_intensity) {
    detail::check_no_overlap(op, "intensities", *intensities, "labels", labels, false);
    detail::check_no_overlap(op, "intensities", *intensities, "features", features, false);
  }
  const TensorView* channels = has_intensity ? intensities : nullptr;
  const int64_t h = mask.shape[0], w = mask.shape[1];
  if (h == 0 || w == 0) return LabelMeasureResult{};
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* table = static_cast<double*>(features.data);
  if (mask.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    return detail::label_measure_cuda(m, labels, options.connectivity, options.min_area, capacity, channels, table,
                                      stream);
#else
    (void)stream;
    throw NotCompiledError("label_measure: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  LabelMeasureResult result;
  result.num_objects = detail::label_cpu(m, static_cast<int32_t*>(labels.data), static_cast<int32_t>(h),
                                         static_cast<int32_t>(w), options.connectivity, options.num_threads);
  if (options.min_area > 1 && result.num_objects > 0) {
    result.num_objects = remove_small_objects(labels, labels, options.min_area, options.num_threads);
  }
  result.measured = std::min(result.num_objects, capacity);
  // Labels past the capacity are skipped as out of range: the first rows are the objects 1..measured.
  detail::measure_cpu(labels, result.measured, channels, table, options.num_threads);
  return result;
}

}  // namespace cellrt
