// Validates gaussian_blur / box_mean arguments and routes to the CPU or CUDA backend.
#include "cellrt/filter.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/validate.h"
#include "segment/filter_lines.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace {

void check_images(const char* op, const TensorView& image, const TensorView& out, const FilterOptions& options) {
  detail::check_view(op, "image", image, 2, "(H, W)", true);
  detail::check_view(op, "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(image.dtype == DType::kFloat32 && out.dtype == DType::kFloat32, op,
               ": image and out should be float32, got ", dtype_name(image.dtype), " and ", dtype_name(out.dtype));
  CELLRT_CHECK(out.shape[0] == image.shape[0] && out.shape[1] == image.shape[1], op,
               ": out should have the image's shape ", detail::shape_string(image), ", got ",
               detail::shape_string(out));
  CELLRT_CHECK(image.data != out.data, op, ": out should not be the image's buffer");
  detail::check_same_device(op, "image", image, "out", out);
  const int b = static_cast<int>(options.border);
  CELLRT_CHECK(b == 0 || b == 1, op, ": border should be 0 (reflect) or 1 (nearest), got ", b);
  detail::check_sides(op, image.shape[0], image.shape[1], 1, 1);
}

}  // namespace

void gaussian_blur(const TensorView& image, const TensorView& out, double sigma, double truncate,
                   const FilterOptions& options, void* stream) {
  check_images("gaussian_blur", image, out, options);
  CELLRT_CHECK(std::isfinite(sigma) && sigma >= 0, "gaussian_blur: sigma should be >= 0, got ", sigma);
  CELLRT_CHECK(std::isfinite(truncate) && truncate > 0, "gaussian_blur: truncate should be > 0, got ", truncate);
  CELLRT_CHECK(truncate * sigma < 1e6, "gaussian_blur: the kernel radius truncate * sigma should be below 1e6, got ",
               truncate * sigma);
  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::gaussian_blur_cuda(static_cast<const float*>(image.data), static_cast<float*>(out.data),
                               static_cast<int32_t>(image.shape[0]), static_cast<int32_t>(image.shape[1]), sigma,
                               truncate, static_cast<int32_t>(options.border), stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("gaussian_blur: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::gaussian_blur_cpu(image, out, sigma, truncate, options);
}

void box_mean(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
              const FilterOptions& options, void* stream) {
  check_images("box_mean", image, out, options);
  CELLRT_CHECK(size_y >= 1 && size_x >= 1, "box_mean: window sizes should be >= 1, got ", size_y, " x ", size_x);
  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::box_mean_cuda(static_cast<const float*>(image.data), static_cast<float*>(out.data),
                          static_cast<int32_t>(image.shape[0]), static_cast<int32_t>(image.shape[1]), size_y, size_x,
                          static_cast<int32_t>(options.border), stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("box_mean: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::box_mean_cpu(image, out, size_y, size_x, options);
}

namespace detail {

std::vector<float> gaussian_taps(double sigma, double truncate) {
  const int32_t radius = sigma > 0 ? gaussian_radius(sigma, truncate) : 0;
  std::vector<float> w(radius == 0 ? 0 : 2 * static_cast<size_t>(radius) + 1);
  if (radius > 0) gaussian_weights(sigma, radius, w.data());
  return w;
}

void gaussian_blur_by_lines(const float* image, float* out, int32_t height, int32_t width, double sigma,
                            double truncate, int32_t mode) {
  const std::vector<float> w = gaussian_taps(sigma, truncate);
  if (w.empty()) {
    std::copy(image, image + int64_t{height} * width, out);
    return;
  }
  const auto radius = static_cast<int32_t>(w.size() / 2);
  std::vector<float> tmp(static_cast<size_t>(height) * width);
  for (int32_t y = 0; y < height; ++y) gaussian_row_pass(image, tmp.data(), height, width, y, radius, w.data(), mode);
  for (int32_t x = 0; x < width; ++x) gaussian_column_pass(tmp.data(), out, height, width, x, radius, w.data(), mode);
}

void box_mean_by_lines(const float* image, float* out, int32_t height, int32_t width, int32_t size_y, int32_t size_x,
                       int32_t mode) {
  std::vector<double> sums(static_cast<size_t>(height) * width);
  for (int32_t y = 0; y < height; ++y) box_row_pass(image, sums.data(), width, y, size_x, mode);
  const double scale = 1.0 / (static_cast<double>(size_y) * size_x);
  for (int32_t x = 0; x < width; ++x) box_column_pass(sums.data(), out, height, width, x, size_y, scale, mode);
}

}  // namespace detail

}  // namespace cellrt
