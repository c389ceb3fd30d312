// Validates measure arguments and routes to a backend.
#include "cellrt/measure.h"

#include "core/check.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

MeasureResult measure(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                      const TensorView& features, const MeasureOptions& options, void* stream) {
  detail::check_view("measure", "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, "measure: labels should be int32, got ", dtype_name(labels.dtype));
  detail::check_int32_sides("measure", "labels", labels);
  CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31),
               "measure: num_objects should be in [0, 2^31), got ", num_objects);
  const bool has_intensity = intensities != nullptr && intensities->ndim != 0;
  int64_t channels = 0;
  if (has_intensity) {
    detail::check_view("measure", "intensities", *intensities, 3, "(K, H, W)", false);
    const DType t = intensities->dtype;
    CELLRT_CHECK(t == DType::kUInt8 || t == DType::kUInt16 || t == DType::kFloat32,
                 "measure: intensities should be uint8, uint16 or float32, got ", dtype_name(t));
    CELLRT_CHECK(intensities->shape[1] == labels.shape[0] && intensities->shape[2] == labels.shape[1],
                 "measure: intensities should be (K, ", labels.shape[0], ", ", labels.shape[1],
                 ") like labels, got ", detail::shape_string(*intensities));
    detail::check_same_device("measure", "labels", labels, "intensities", *intensities);
    channels = intensities->shape[0];
  }
  const int64_t columns = kMeasureShapeColumns + kMeasureIntensityColumns * channels;
  detail::check_view("measure", "features", features, 2, "(N, columns)", true);
  CELLRT_CHECK(features.dtype == DType::kFloat64, "measure: features should be float64, got ",
               dtype_name(features.dtype));
  CELLRT_CHECK(features.shape[0] == num_objects && features.shape[1] == columns, "measure: features should be (",
               num_objects, ", ", columns, "), got ", detail::shape_string(features));
  detail::check_same_device("measure", "labels", labels, "features", features);
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
