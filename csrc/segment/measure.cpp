// Validates measure arguments and routes to a backend.
#include "cellrt/measure.h"

#include "core/check.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace detail {

bool check_measure_views(const char* op, const TensorView& labels, const TensorView* intensities,
                         const TensorView& features, int64_t rows) {
  const bool has_intensity = intensities != nullptr && intensities->ndim != 0;
  int64_t channels = 0;
  if (has_intensity) {
    check_view(op, "intensities", *intensities, 3, "(K, H, W)", false);
    const DType t = intensities->dtype;
    CELLRT_CHECK(t == DType::kUInt8 || t == DType::kUInt16 || t == DType::kFloat32, op,
                 ": intensities should be uint8, uint16 or float32, got ", dtype_name(t));
    CELLRT_CHECK(intensities->shape[1] == labels.shape[0] && intensities->shape[2] == labels.shape[1], op,
                 ": intensities should be (K, ", labels.shape[0], ", ", labels.shape[1], ") like labels, got ",
                 shape_string(*intensities));
    check_same_device(op, "labels", labels, "intensities", *intensities);
    channels = intensities->shape[0];
  }
  const int64_t columns = kMeasureShapeColumns + kMeasureIntensityColumns * channels;
  check_view(op, "features", features, 2, "(N, columns)", true);
  CELLRT_CHECK(features.dtype == DType::kFloat64, op, ": features should be float64, got ",
               dtype_name(features.dtype));
  if (rows >= 0) {
    CELLRT_CHECK(features.shape[0] == rows && features.shape[1] == columns, op, ": features should be (", rows,
                 ", ", columns, "), got ", shape_string(features));
  } else {
    CELLRT_CHECK(features.shape[1] == columns, op, ": features should be (capacity, ", columns, ") for ", channels,
                 " intensity channel(s), got ", shape_string(features));
  }
  check_same_device(op, "labels", labels, "features", features);
  return has_intensity;
}

}  // namespace detail

MeasureResult measure(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                      const TensorView& features, const MeasureOptions& options, void* stream) {
  detail::check_view("measure", "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, "measure: labels should be int32, got ", dtype_name(labels.dtype));
  detail::check_int32_sides("measure", "labels", labels);
  CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31),
               "measure: num_objects should be in [0, 2^31), got ", num_objects);
  const bool has_intensity = detail::check_measure_views("measure", labels, intensities, features, num_objects);
  if (labels.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    return detail::measure_cuda(labels, num_objects, has_intensity ? intensities : nullptr,
                                static_cast<double*>(features.data), stream);
#else
    (void)stream;
    throw NotCompiledError("measure: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  return detail::measure_cpu(labels, num_objects, has_intensity ? intensities : nullptr,
                             static_cast<double*>(features.data), options.num_threads);
}

}  // namespace cellrt
