// Exact histograms of 8/16-bit images. Work partition: threads count
// disjoint chunks of pixels into private histograms (four interleaved
// sub-histograms each, so runs of equal values do not serialise on one
// counter), merged at the end. numpy's bincount takes ~7x longer here: it
// first widens every pixel to int64.
#include "cellrt/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/float_order.h"
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

using detail::from_ordered_bits;
using detail::ordered_bits;

// The finite values' order statistics of the given ranks (ascending, 0-based, below the finite
// count): the upper 16 bits of each wanted value from a histogram of all upper halves, then the lower
// 16 bits from histograms of the values in those upper buckets only.
std::vector<float> select_ranks(const float* v, int64_t n, const std::vector<int64_t>& ranks, int workers) {
  constexpr int64_t kBins = 65536;
  std::vector<std::vector<uint32_t>> partial(workers);
  auto chunk = [&](int64_t w) { return std::make_pair(n * w / workers, n * (w + 1) / workers); };
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      std::vector<uint32_t>& h = partial[w];
      h.assign(kBins, 0);
      const auto [begin, end] = chunk(w);
      for (int64_t i = begin; i < end; ++i)
        if (std::isfinite(v[i])) ++h[ordered_bits(v[i]) >> 16];
    }
  });
  std::vector<int64_t> upper(kBins, 0);
  for (const auto& h : partial)
    for (int64_t b = 0; b < kBins; ++b) upper[b] += h[b];
  // Per wanted rank: its upper bucket and its rank inside the bucket.
  std::vector<uint32_t> bucket(ranks.size());
  std::vector<int64_t> inside(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r) {
    int64_t below = 0;
    uint32_t b = 0;
    while (below + upper[b] <= ranks[r]) below += upper[b++];
    bucket[r] = b;
    inside[r] = ranks[r] - below;
  }
  std::vector<uint32_t> buckets(bucket);
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  const size_t nb = buckets.size();
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      std::vector<uint32_t>& h = partial[w];
      h.assign(nb * kBins, 0);
      const auto [begin, end] = chunk(w);
      for (int64_t i = begin; i < end; ++i) {
        if (!std::isfinite(v[i])) continue;
        const uint32_t key = ordered_bits(v[i]);
        for (size_t j = 0; j < nb; ++j)
          if ((key >> 16) == buckets[j]) ++h[j * kBins + (key & 0xffffu)];
      }
    }
  });
  std::vector<float> values(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r) {
    const size_t j = static_cast<size_t>(std::lower_bound(buckets.begin(), buckets.end(), bucket[r]) - buckets.begin());
    int64_t below = 0;
    uint32_t low = 0;
    for (;; ++low) {
      int64_t c = 0;
      for (const auto& h : partial) c += h[j * kBins + low];
      if (below + c > inside[r]) break;
      below += c;
    }
    values[r] = from_ordered_bits((bucket[r] << 16) | low);
  }
  return values;
}

}  // namespace

int64_t percentiles(const TensorView& values, const double* qs, int32_t count, double* out, int32_t num_threads) {
  CELLRT_CHECK(values.ndim >= 1 && values.ndim <= 4, "percentiles: values should have 1 to 4 dimensions, got ",
               values.ndim);
  CELLRT_CHECK(is_contiguous(values), "percentiles: values should be C-contiguous");
  CELLRT_CHECK(values.dtype == DType::kFloat32, "percentiles: values should be float32, got ",
               dtype_name(values.dtype));
  CELLRT_CHECK(values.device == Device::kCPU, "percentiles: only host arrays are supported");
  CELLRT_CHECK(count >= 0 && count <= 8, "percentiles: count should be 0..8, got ", count);
  CELLRT_CHECK(count == 0 || (qs != nullptr && out != nullptr), "percentiles: qs and out should not be NULL");
  for (int32_t i = 0; i < count; ++i)
    CELLRT_CHECK(qs[i] >= 0.0 && qs[i] <= 100.0, "percentiles: each percentile should be in [0, 100], got ", qs[i]);
  int64_t n = 1;
  for (int i = 0; i < values.ndim; ++i) n *= values.shape[i];
  CELLRT_CHECK(n < (int64_t{1} << 34), "percentiles: values should be fewer than 2^34, got ", n);
  const auto* v = static_cast<const float*>(values.data);
  const int workers = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(num_threads), n / 65536 + 1)));
  std::vector<int64_t> finite_by(workers, 0);
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      int64_t c = 0;
      for (int64_t i = n * w / workers; i < n * (w + 1) / workers; ++i) c += std::isfinite(v[i]) ? 1 : 0;
      finite_by[w] = c;
    }
  });
  int64_t finite = 0;
  for (const int64_t c : finite_by) finite += c;
  if (finite == 0) {
    std::fill(out, out + count, std::numeric_limits<double>::quiet_NaN());
    return 0;
  }
  // numpy's "linear": virtual index (n - 1) q / 100, the order statistics below and above it (the last
  // one from n - 1 on), gamma its fractional part; then numpy's _lerp, the difference taken in float32.
  std::vector<double> position(count);
  std::vector<int64_t> below(count), above(count), ranks;
  for (int32_t i = 0; i < count; ++i) {
    position[i] = static_cast<double>(finite - 1) * (qs[i] / 100.0);
    below[i] = static_cast<int64_t>(std::floor(position[i]));
    above[i] = below[i] + 1;
    if (position[i] >= static_cast<double>(finite - 1)) below[i] = above[i] = finite - 1;
    ranks.push_back(below[i]);
    ranks.push_back(above[i]);
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  const std::vector<float> order = count ? select_ranks(v, n, ranks, workers) : std::vector<float>();
  auto at = [&](int64_t rank) {
    return order[static_cast<size_t>(std::lower_bound(ranks.begin(), ranks.end(), rank) - ranks.begin())];
  };
  for (int32_t i = 0; i < count; ++i) {
    const float a = at(below[i]), b = at(above[i]);
    const double gamma = position[i] - std::floor(position[i]);
    const double diff = static_cast<double>(b - a);
    out[i] = gamma >= 0.5 ? static_cast<double>(b) - diff * (1.0 - gamma) : static_cast<double>(a) + diff * gamma;
  }
  return finite;
}

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
