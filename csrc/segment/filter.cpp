// Validates gaussian_blur / box_mean arguments and routes to the CPU or CUDA backend.
#include "cellrt/filter.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "core/check.h"
#include "core/validate.h"
#include "segment/filter_kernel.h"
#include "segment/filter_lines.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace {

void check_images(const char* op, const TensorView& image, const TensorView& out, const FilterOptions& options) {
  detail::check_view(op, "image", image, 2, "(H, W)", true);
  detail::check_view(op, "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(image.dtype == DType::kFloat32 && out.dtype == DType::kFloat32, op,
               ": image and out should be float32, got ", dtype_name(image.dtype), " and ", dtype_name(out.dtype));
  detail::check_same_shape_2d(op, "image", image, "out", out);
  detail::check_no_overlap(op, "image", image, "out", out, false);
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
  if (image.shape[0] == 0 || image.shape[1] == 0) return;  // nothing to write (an empty line has no border sample)
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

void gaussian_blur_recursive(const TensorView& image, const TensorView& out, double sigma,
                             const FilterOptions& options, void* stream) {
  check_images("gaussian_blur_recursive", image, out, options);
  // 1e5: the warm-up (~12 sigma samples a line) stays a few million samples.
  CELLRT_CHECK(std::isfinite(sigma) && sigma >= 0 && sigma <= 1e5,
               "gaussian_blur_recursive: sigma should be in [0, 1e5], got ", sigma);
  if (image.shape[0] == 0 || image.shape[1] == 0) return;  // nothing to write (an empty line has no border sample)
  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::gaussian_blur_recursive_cuda(static_cast<const float*>(image.data), static_cast<float*>(out.data),
                                         static_cast<int32_t>(image.shape[0]), static_cast<int32_t>(image.shape[1]),
                                         sigma, static_cast<int32_t>(options.border), stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("gaussian_blur_recursive: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::gaussian_blur_recursive_cpu(image, out, sigma, options);
}

void box_mean(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
              const FilterOptions& options, void* stream) {
  check_images("box_mean", image, out, options);
  CELLRT_CHECK(size_y >= 1 && size_x >= 1 && size_y <= 65535 && size_x <= 65535,
               "box_mean: window sizes should be 1 .. 65535, got ", size_y, " x ", size_x);
  if (image.shape[0] == 0 || image.shape[1] == 0) return;  // nothing to write (an empty line has no border sample)
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

RecursiveGaussianCoefficients recursive_gaussian_coefficients(double sigma) {
  // exp(-x^2/2), x >= 0 in sigmas, as (a0 cos w0x + a1 sin w0x) e^(-b0 x) + (c0 cos w1x + c1 sin w1x) e^(-b1 x):
  // Deriche's form, constants refitted by tools/fit_recursive_gaussian.py (largest error 1.65e-4).
  constexpr double a0 = 1.65517779, a1 = 3.40608775, b0 = 1.7401857, b1 = 1.67314935;
  constexpr double w0 = 0.628661731, w1 = 1.99053621, c0 = -0.65534243, c1 = -0.174997306;
  // Each term is Re(alpha e^((-b + i w) x)): alpha = a - i b.
  const std::complex<double> alpha[2] = {{a0, -a1}, {c0, -c1}};
  const std::complex<double> pole[2] = {std::exp(std::complex<double>(-b0, w0) / sigma),
                                        std::exp(std::complex<double>(-b1, w1) / sigma)};
  // Gain of the discrete kernel: sum over k >= 0 plus the mirrored k >= 1.
  double gain = 0.0;
  for (int p = 0; p < 2; ++p)
    gain += (alpha[p] / (1.0 - pole[p])).real() + (alpha[p] * pole[p] / (1.0 - pole[p])).real();
  RecursiveGaussianCoefficients c;
  double warmup = 0.0;
  for (int p = 0; p < 2; ++p) {
    const std::complex<double> a = alpha[p] / gain, b = a * pole[p];
    c.pole_re[p] = pole[p].real();
    c.pole_im[p] = pole[p].imag();
    c.causal_re[p] = a.real();
    c.causal_im[p] = a.imag();
    c.anticausal_re[p] = b.real();
    c.anticausal_im[p] = b.imag();
    // Samples past `warmup` weigh at most |a| |pole|^warmup / (1 - |pole|) in all: below 1e-8.
    const double r = std::abs(pole[p]);
    warmup = std::max(warmup, std::log(1e-8 * (1.0 - r) / std::abs(a)) / std::log(r));
  }
  c.warmup = static_cast<int64_t>(std::ceil(std::max(warmup, 1.0)));
  return c;
}

void gaussian_blur_recursive_by_lines(const float* image, float* out, int32_t height, int32_t width, double sigma,
                                      int32_t mode) {
  if (sigma == 0.0) {
    std::copy(image, image + int64_t{height} * width, out);
    return;
  }
  const RecursiveGaussianCoefficients c = recursive_gaussian_coefficients(sigma);
  std::vector<float> tmp(static_cast<size_t>(height) * width);
  // Columns first, then rows: the CPU backend's order (it filters the rows in place).
  for (int32_t x = 0; x < width; ++x) recursive_gaussian_column_pass(image, tmp.data(), height, width, x, c, mode);
  for (int32_t y = 0; y < height; ++y) recursive_gaussian_row_pass(tmp.data(), out, width, y, c, mode);
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
