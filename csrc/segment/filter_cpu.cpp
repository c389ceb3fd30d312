// CPU separable filters. Work partition: threads take disjoint blocks of
// output rows; each keeps the horizontally filtered rows its block needs in
// a ring buffer (the window height), so the column pass reads cached rows
// and no image-sized temporary is allocated. Inner loops run along rows:
// contiguous and vectorisable.
#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "segment/filter_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

// Row sy of the image extended by `before` / `after` samples of border.
void extended_row(const float* image, int64_t sy, int32_t width, int32_t before, int32_t after, int32_t mode,
                  float* ext) {
  const float* src = image + sy * width;
  for (int32_t i = 0; i < before; ++i) ext[i] = src[border_index(i - before, width, mode)];
  std::copy(src, src + width, ext + before);
  for (int32_t i = 0; i < after; ++i) ext[before + width + i] = src[border_index(width + i, width, mode)];
}

int workers_for(int32_t height, int32_t threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), height)));
}

}  // namespace

void gaussian_blur_cpu(const TensorView& image, const TensorView& out, double sigma, double truncate,
                       const FilterOptions& options) {
  const int32_t height = static_cast<int32_t>(image.shape[0]), width = static_cast<int32_t>(image.shape[1]);
  const auto* in = static_cast<const float*>(image.data);
  auto* dst = static_cast<float*>(out.data);
  const std::vector<float> w = gaussian_taps(sigma, truncate);
  if (w.empty() || height == 0 || width == 0) {
    std::copy(in, in + int64_t{height} * width, dst);
    return;
  }
  const auto taps = static_cast<int32_t>(w.size());
  const int32_t radius = taps / 2, mode = static_cast<int32_t>(options.border);
  const int workers = workers_for(height, options.num_threads);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    std::vector<float> ext(width + 2 * radius);
    std::vector<float> ring(int64_t{taps} * width);
    for (int64_t wi = wb; wi < we; ++wi) {
      const int32_t y0 = static_cast<int32_t>(int64_t{height} * wi / workers);
      const int32_t y1 = static_cast<int32_t>(int64_t{height} * (wi + 1) / workers);
      // Ring slot of virtual row j (before border mapping).
      auto slot = [&](int64_t j) { return ring.data() + (((j % taps) + taps) % taps) * width; };
      auto horizontal = [&](int64_t j) {
        extended_row(in, border_index(j, height, mode), width, radius, radius, mode, ext.data());
        float* row = slot(j);
        for (int32_t x = 0; x < width; ++x) row[x] = w[0] * ext[x];
        for (int32_t k = 1; k < taps; ++k) {
          const float wk = w[k];
          const float* e = ext.data() + k;
          for (int32_t x = 0; x < width; ++x) row[x] += wk * e[x];
        }
      };
      for (int64_t j = int64_t{y0} - radius; j < int64_t{y0} + radius; ++j) horizontal(j);
      for (int32_t y = y0; y < y1; ++y) {
        horizontal(int64_t{y} + radius);
        float* o = dst + int64_t{y} * width;
        const float* first = slot(int64_t{y} - radius);
        for (int32_t x = 0; x < width; ++x) o[x] = w[0] * first[x];
        for (int32_t k = 1; k < taps; ++k) {
          const float wk = w[k];
          const float* r = slot(int64_t{y} - radius + k);
          for (int32_t x = 0; x < width; ++x) o[x] += wk * r[x];
        }
      }
    }
  });
}

namespace {

// Lines processed side by side by the recursive gaussian: sample i of line l
// at in[i * step + l], so the per-line recursion vectorises across lines.
constexpr int32_t kRecursiveLanes = 32;

}  // namespace

void gaussian_blur_recursive_cpu(const TensorView& image, const TensorView& out, double sigma,
                                 const FilterOptions& options) {
  const int32_t height = static_cast<int32_t>(image.shape[0]), width = static_cast<int32_t>(image.shape[1]);
  const auto* in = static_cast<const float*>(image.data);
  auto* dst = static_cast<float*>(out.data);
  if (sigma == 0.0 || height == 0 || width == 0) {
    std::copy(in, in + int64_t{height} * width, dst);
    return;
  }
  const RecursiveGaussianCoefficients c = recursive_gaussian_coefficients(sigma);
  const auto mode = static_cast<int32_t>(options.border);
  const int threads = resolve_threads(options.num_threads);
  // Columns first, image -> out: strips of kRecursiveLanes adjacent columns are interleaved lines already
  // (step = width). Then rows in place in out, so no image-sized temporary.
  const int64_t strips = (int64_t{width} + kRecursiveLanes - 1) / kRecursiveLanes;
  parallel_for(strips, threads, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t x0 = s * kRecursiveLanes;
      const auto lanes = static_cast<int32_t>(std::min<int64_t>(kRecursiveLanes, width - x0));
      recursive_gaussian_lines<kRecursiveLanes>(in + x0, width, height, dst + x0, width, lanes, c, mode);
    }
  });
  // Rows: a block of kRecursiveLanes rows is transposed into an interleaved buffer, filtered, and written back.
  const int64_t row_blocks = (int64_t{height} + kRecursiveLanes - 1) / kRecursiveLanes;
  parallel_for(row_blocks, threads, [&](int64_t b0, int64_t b1) {
    std::vector<float> lines(static_cast<size_t>(width) * kRecursiveLanes), filtered(lines.size());
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t y0 = b * kRecursiveLanes;
      const auto lanes = static_cast<int32_t>(std::min<int64_t>(kRecursiveLanes, height - y0));
      for (int32_t l = 0; l < lanes; ++l) {
        const float* row = dst + (y0 + l) * width;
        for (int32_t x = 0; x < width; ++x) lines[int64_t{x} * kRecursiveLanes + l] = row[x];
      }
      recursive_gaussian_lines<kRecursiveLanes>(lines.data(), kRecursiveLanes, width, filtered.data(), kRecursiveLanes,
                                                lanes, c, mode);
      for (int32_t l = 0; l < lanes; ++l) {
        float* row = dst + (y0 + l) * width;
        for (int32_t x = 0; x < width; ++x) row[x] = filtered[int64_t{x} * kRecursiveLanes + l];
      }
    }
  });
}

void box_mean_cpu(const TensorView& image, const TensorView& out, int32_t size_y, int32_t size_x,
                  const FilterOptions& options) {
  const int32_t height = static_cast<int32_t>(image.shape[0]), width = static_cast<int32_t>(image.shape[1]);
  const auto* in = static_cast<const float*>(image.data);
  auto* dst = static_cast<float*>(out.data);
  if (height == 0 || width == 0) return;
  const int32_t before_y = size_y / 2, before_x = size_x / 2;
  const int32_t after_x = size_x - 1 - before_x;
  const int32_t mode = static_cast<int32_t>(options.border);
  const double scale = 1.0 / (static_cast<double>(size_y) * size_x);
  const int workers = workers_for(height, options.num_threads);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    std::vector<float> ext(int64_t{width} + size_x - 1);
    std::vector<double> ring(int64_t{size_y} * width);  // horizontal window sums of the rows in the window
    std::vector<double> column(width);
    for (int64_t wi = wb; wi < we; ++wi) {
      const int32_t y0 = static_cast<int32_t>(int64_t{height} * wi / workers);
      const int32_t y1 = static_cast<int32_t>(int64_t{height} * (wi + 1) / workers);
      auto slot = [&](int64_t j) { return ring.data() + (((j % size_y) + size_y) % size_y) * width; };
      // Running sum along the extended row: O(1) per pixel for any width.
      auto horizontal = [&](int64_t j) {
        extended_row(in, border_index(j, height, mode), width, before_x, after_x, mode, ext.data());
        double* row = slot(j);
        double sum = 0.0;
        for (int32_t i = 0; i < size_x; ++i) sum += ext[i];
        row[0] = sum;
        for (int32_t x = 1; x < width; ++x) {
          sum += static_cast<double>(ext[x + size_x - 1]) - ext[x - 1];
          row[x] = sum;
        }
      };
      std::fill(column.begin(), column.end(), 0.0);
      for (int64_t j = int64_t{y0} - before_y; j < int64_t{y0} - before_y + size_y; ++j) {
        horizontal(j);
        const double* row = slot(j);
        for (int32_t x = 0; x < width; ++x) column[x] += row[x];
      }
      for (int32_t y = y0; y < y1; ++y) {
        if (y > y0) {  // slide the window down one row
          const int64_t leaving = int64_t{y} - 1 - before_y, entering = leaving + size_y;
          const double* old_row = slot(leaving);
          for (int32_t x = 0; x < width; ++x) column[x] -= old_row[x];
          horizontal(entering);
          const double* new_row = slot(entering);
          for (int32_t x = 0; x < width; ++x) column[x] += new_row[x];
        }
        float* o = dst + int64_t{y} * width;
        for (int32_t x = 0; x < width; ++x) o[x] = static_cast<float>(column[x] * scale);
      }
    }
  });
}

}  // namespace cellrt::detail
