// CPU resize: rows, then columns, through a [C, H, W_out] float32 scratch.
// Threads take disjoint blocks of lines in each pass. The row pass gathers
// each output sample's taps (resize_line_sample); the column pass runs
// along output rows, adding one weighted input row at a time - the same
// additions per sample in the same order, vectorised across the row.
#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "resize/resize_ops.h"

namespace cellrt::detail {

namespace {

template <typename T>
void resize_typed(const T* image, float* out, int64_t channels, int64_t height, int64_t width, int64_t out_height,
                  int64_t out_width, bool antialias, int32_t num_threads) {
  const ResizeTable rows = resize_table(width, out_width, antialias);
  const ResizeTable cols = resize_table(height, out_height, antialias);
  std::vector<float> tmp(static_cast<size_t>(channels * height * out_width));
  const int threads = resolve_threads(num_threads);
  const int64_t row_taps = rows.axis.max_taps, col_taps = cols.axis.max_taps;
  parallel_for(channels * height, threads, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const T* src = image + line * width;
      float* dst = tmp.data() + line * out_width;
      for (int64_t x = 0; x < out_width; ++x)
        dst[x] = resize_line_sample(src, 1, rows.first[x], rows.count[x], rows.weights.data() + x * row_taps);
    }
  });
  parallel_for(channels * out_height, threads, [&](int64_t begin, int64_t end) {
    for (int64_t line = begin; line < end; ++line) {
      const int64_t c = line / out_height, y = line % out_height;
      float* dst = out + line * out_width;
      std::fill(dst, dst + out_width, 0.0f);
      const float* w = cols.weights.data() + y * col_taps;
      for (int32_t k = 0; k < cols.count[y]; ++k) {
        const float wk = w[k];
        const float* src = tmp.data() + (c * height + cols.first[y] + k) * out_width;
        for (int64_t x = 0; x < out_width; ++x) dst[x] = add_product(dst[x], wk, src[x]);
      }
    }
  });
}

}  // namespace

void resize_cpu(const void* image, DType dtype, float* out, int64_t channels, int64_t height, int64_t width,
                int64_t out_height, int64_t out_width, bool antialias, int32_t num_threads) {
  if (dtype == DType::kUInt8)
    resize_typed(static_cast<const uint8_t*>(image), out, channels, height, width, out_height, out_width, antialias,
                 num_threads);
  else if (dtype == DType::kUInt16)
    resize_typed(static_cast<const uint16_t*>(image), out, channels, height, width, out_height, out_width, antialias,
                 num_threads);
  else
    resize_typed(static_cast<const float*>(image), out, channels, height, width, out_height, out_width, antialias,
                 num_threads);
}

}  // namespace cellrt::detail
