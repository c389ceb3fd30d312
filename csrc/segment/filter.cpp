// Validates gaussian_blur / box_mean arguments and routes to the CPU backend.
#include "cellrt/filter.h"

#include <cmath>

#include "core/check.h"
#include "core/validate.h"
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
  CELLRT_CHECK(image.device == Device::kCPU && out.device == Device::kCPU, op,
               ": only host arrays are supported so far");
  const int b = static_cast<int>(options.border);
  CELLRT_CHECK(b == 0 || b == 1, op, ": border should be 0 (reflect) or 1 (nearest), got ", b);
  detail::check_sides(op, image.shape[0], image.shape[1], 1, 1);
}

}  // namespace

void gaussian_blur(const TensorView& image, const TensorView& out, double sigma, double truncate,
                   const FilterOptions& options) {
  check_images("gaussian_blur", image, out, options);
  CELLRT_CHECK(std::isfinite(sigma) && sigma >= 0, "gaussian_blur: sigma should be >= 0, got ", sigma);
  CELLRT_CHECK(std::isfinite(truncate) && truncate > 0, "gaussian_blur: truncate should be > 0, got ", truncate);
  CELLRT_CHECK(truncate * sigma < 1e6, "gaussian_blur: the kernel radius truncate * sigma should be below 1e6, got ",
               truncate * sigma);
  detail::gaussian_blur_cpu(image, out, sigma, truncate, options);
}

void box_mean(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
              const FilterOptions& options) {
  check_images("box_mean", image, out, options);
  CELLRT_CHECK(size_y >= 1 && size_x >= 1, "box_mean: window sizes should be >= 1, got ", size_y, " x ", size_x);
  detail::box_mean_cpu(image, out, size_y, size_x, options);
}

}  // namespace cellrt
