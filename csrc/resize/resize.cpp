// Validates resize arguments and routes to the CPU or CUDA backend.
#include "cellrt/resize.h"

#include <limits>

#include "core/check.h"
#include "core/validate.h"
#include "resize/resize_ops.h"

namespace cellrt {

void resize(const TensorView& image, const TensorView& out, const ResizeOptions& options, void* stream) {
  detail::check_view("resize", "image", image, 3, "(C, H, W)", true);
  detail::check_view("resize", "out", out, 3, "(C, H_out, W_out)", true);
  CELLRT_CHECK(image.dtype == DType::kUInt8 || image.dtype == DType::kUInt16 || image.dtype == DType::kFloat32,
               "resize: image should be uint8, uint16 or float32, got ", dtype_name(image.dtype));
  CELLRT_CHECK(out.dtype == DType::kFloat32, "resize: out should be float32, got ", dtype_name(out.dtype));
  CELLRT_CHECK(out.shape[0] == image.shape[0], "resize: out should have the image's ", image.shape[0],
               " channel(s), got ", out.shape[0]);
  constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();
  for (int d = 1; d < 3; ++d) {
    CELLRT_CHECK(image.shape[d] >= 1 && image.shape[d] <= kMaxSide, "resize: image sides should be 1 .. 2^31 - 1, got ",
                 detail::shape_string(image));
    CELLRT_CHECK(out.shape[d] >= 1 && out.shape[d] <= kMaxSide, "resize: out sides should be 1 .. 2^31 - 1, got ",
                 detail::shape_string(out));
  }
  detail::check_same_device("resize", "image", image, "out", out);
  detail::check_no_overlap("resize", "image", image, "out", out, false);
  CELLRT_CHECK(options.num_threads >= 0, "resize: num_threads should be >= 0, got ", options.num_threads);
  if (image.shape[0] == 0) return;
  const bool antialias = options.antialias != 0;
  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::resize_cuda(image.data, image.dtype, static_cast<float*>(out.data), image.shape[0], image.shape[1],
                        image.shape[2], out.shape[1], out.shape[2], antialias, stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("resize: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::resize_cpu(image.data, image.dtype, static_cast<float*>(out.data), image.shape[0], image.shape[1],
                     image.shape[2], out.shape[1], out.shape[2], antialias, options.num_threads);
}

namespace detail {

ResizeTable resize_table(int64_t in_size, int64_t out_size, bool antialias) {
  ResizeTable t;
  t.axis = resize_axis(in_size, out_size, antialias);
  const auto taps = static_cast<size_t>(t.axis.max_taps);
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.weights.assign(static_cast<size_t>(out_size) * taps, 0.0f);
  for (int64_t i = 0; i < out_size; ++i)
    t.count[i] = resize_taps(t.axis, i, &t.first[i], t.weights.data() + static_cast<size_t>(i) * taps);
  return t;
}

namespace {

template <typename T>
void by_pixels(const T* image, float* out, int64_t channels, int64_t height, int64_t width, int64_t out_height,
               int64_t out_width, bool antialias) {
  const ResizeTable rows = resize_table(width, out_width, antialias);
  const ResizeTable cols = resize_table(height, out_height, antialias);
  std::vector<float> tmp(static_cast<size_t>(channels * height * out_width));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < out_width; ++x)
        tmp[(c * height + y) * out_width + x] =
            resize_line_sample(image + (c * height + y) * width, 1, rows.first[x], rows.count[x],
                               rows.weights.data() + x * rows.axis.max_taps);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 0; y < out_height; ++y)
      for (int64_t x = 0; x < out_width; ++x)
        out[(c * out_height + y) * out_width + x] =
            resize_line_sample(tmp.data() + c * height * out_width + x, out_width, cols.first[y], cols.count[y],
                               cols.weights.data() + y * cols.axis.max_taps);
}

}  // namespace

void resize_by_pixels(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                      int64_t out_height, int64_t out_width, bool antialias) {
  if (dtype == DType::kUInt8)
    by_pixels(static_cast<const uint8_t*>(image), out, channels, height, width, out_height, out_width, antialias);
  else if (dtype == DType::kUInt16)
    by_pixels(static_cast<const uint16_t*>(image), out, channels, height, width, out_height, out_width, antialias);
  else
    by_pixels(static_cast<const float*>(image), out, channels, height, width, out_height, out_width, antialias);
}

}  // namespace detail

}  // namespace cellrt
