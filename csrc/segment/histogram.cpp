// Exact histograms of 8/16-bit images, equal-width histograms and percentiles
// of float images. Work partition: threads count disjoint chunks of pixels
// into private histograms (four interleaved sub-histograms each, so runs of
// equal values do not serialise on one counter), merged at the end. numpy's
// bincount takes ~7x longer here: it first widens every pixel to int64;
// numpy.histogram of a 2048^2 float32 image ~22 ms (temporaries, a gather
// for the edge corrections).
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

// A worker per 64 Ki values at most: below that, starting one costs more than it counts.
int workers_for(int64_t n, int32_t num_threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(num_threads), n / 65536 + 1)));
}

// The number of values of a host float32 array (contiguous, 1 to 4 dimensions, fewer than 2^34 values), or
// an invalid_argument naming `op`.
int64_t host_float_count(const char* op, const TensorView& values) {
  CELLRT_CHECK(values.ndim >= 1 && values.ndim <= 4, op, ": values should have 1 to 4 dimensions, got ", values.ndim);
  const int64_t n = detail::element_count(op, "values", values);
  CELLRT_CHECK(is_contiguous(values), op, ": values should be C-contiguous");
  CELLRT_CHECK(values.dtype == DType::kFloat32, op, ": values should be float32, got ", dtype_name(values.dtype));
  CELLRT_CHECK(values.device == Device::kCPU, op, ": only host arrays are supported");
  CELLRT_CHECK(n < (int64_t{1} << 34), op, ": values should be fewer than 2^34, got ", n);
  return n;
}

template <typename T>
void count(const T* data, int64_t n, int64_t* counts, int32_t num_threads) {
  constexpr int64_t bins = int64_t{1} << (8 * sizeof(T));
  const int workers = workers_for(n, num_threads);
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

struct FiniteRange {
  int64_t finite = 0;
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
};

// Min, max and count of a chunk's finite values. Sixteen independent lanes:
// without -ffast-math the compiler may not reorder a float min/max reduction,
// so one running min stays scalar (2 ms per 2048^2 values here; the lanes
// vectorise: 0.34 ms).
FiniteRange chunk_range(const float* x, int64_t n) {
  constexpr int kLanes = 16;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kMax = std::numeric_limits<float>::max();
  float lo[kLanes], hi[kLanes];
  int64_t finite[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = kInf;
    hi[j] = -kInf;
    finite[j] = 0;
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      const bool ok = std::fabs(v) <= kMax;
      finite[j] += ok;
      const float low = ok ? v : kInf, high = ok ? v : -kInf;
      lo[j] = low < lo[j] ? low : lo[j];
      hi[j] = high > hi[j] ? high : hi[j];
    }
  FiniteRange r;
  for (; i < n; ++i)
    if (std::fabs(x[i]) <= kMax) {
      ++r.finite;
      r.min = std::min(r.min, x[i]);
      r.max = std::max(r.max, x[i]);
    }
  for (int j = 0; j < kLanes; ++j) {
    r.finite += finite[j];
    r.min = std::min(r.min, lo[j]);
    r.max = std::max(r.max, hi[j]);
  }
  return r;
}

FiniteRange finite_range(const float* v, int64_t n, int workers) {
  std::vector<FiniteRange> by(workers);
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t begin = n * w / workers, end = n * (w + 1) / workers;
      by[w] = chunk_range(v + begin, end - begin);
    }
  });
  FiniteRange all;
  for (const FiniteRange& r : by) {
    all.finite += r.finite;
    all.min = std::min(all.min, r.min);
    all.max = std::max(all.max, r.max);
  }
  return all;
}

// Counts a chunk of values into h (`subs` interleaved sub-histograms of
// nbins + 1 counters; counter 0 of each takes the non-finite values). Per
// block of values: a first guess at each bin from the bin width (vectorised;
// in double, since v - first overflows float32 for ranges wider than 3.4e38 -
// numpy.histogram then fails with an IndexError), then each guess moved until
// edges[b] <= v < edges[b + 1] (the last bin closed): the guess is within an
// ulp of the true position and each edge within half a float32 ulp of its
// own, so the loops move a bin or two at most and are well predicted; then
// the counts. 2048^2 values, one thread: 6.4 ms, against 7.3
// ms with the guess and the moves in one loop per value.
void count_bins(const float* v, int64_t n, double first, double scale, const float* edges, int32_t nbins,
                int subs, int64_t* h) {
  constexpr int kBlock = 1024;
  int32_t bins[kBlock];
  const double top = nbins - 1;
  const int64_t stride = int64_t{nbins} + 1;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int len = static_cast<int>(std::min<int64_t>(kBlock, n - start));
    const float* x = v + start;
    for (int i = 0; i < len; ++i) {
      double guess = (static_cast<double>(x[i]) - first) * scale;
      guess = guess >= 0.0 ? guess : 0.0;   // also NaN
      guess = guess <= top ? guess : top;   // also +inf
      bins[i] = static_cast<int32_t>(guess);
    }
    for (int i = 0; i < len; ++i) {
      const float value = x[i];
      if (!(std::fabs(value) <= std::numeric_limits<float>::max())) {
        bins[i] = -1;
        continue;
      }
      int32_t b = bins[i];
      while (b > 0 && value < edges[b]) --b;
      while (b < nbins - 1 && value >= edges[b + 1]) ++b;
      bins[i] = b;
    }
    int i = 0;
    if (subs == 4)
      for (; i + 4 <= len; i += 4) {
        ++h[bins[i] + 1];
        ++h[stride + bins[i + 1] + 1];
        ++h[2 * stride + bins[i + 2] + 1];
        ++h[3 * stride + bins[i + 3] + 1];
      }
    for (; i < len; ++i) ++h[bins[i] + 1];
  }
}

}  // namespace

int64_t percentiles(const TensorView& values, const double* qs, int32_t count, double* out, int32_t num_threads) {
  const int64_t n = host_float_count("percentiles", values);
  CELLRT_CHECK(count >= 0 && count <= 8, "percentiles: count should be 0..8, got ", count);
  CELLRT_CHECK(count == 0 || (qs != nullptr && out != nullptr), "percentiles: qs and out should not be NULL");
  for (int32_t i = 0; i < count; ++i)
    CELLRT_CHECK(qs[i] >= 0.0 && qs[i] <= 100.0, "percentiles: each percentile should be in [0, 100], got ", qs[i]);
  const auto* v = static_cast<const float*>(values.data);
  const int workers = workers_for(n, num_threads);
  const int64_t finite = finite_range(v, n, workers).finite;
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

int64_t float_histogram(const TensorView& values, int32_t nbins, int64_t* counts, float* edges,
                        int32_t num_threads) {
  const int64_t n = host_float_count("float_histogram", values);
  CELLRT_CHECK(nbins >= 1 && nbins <= (1 << 24), "float_histogram: nbins should be 1 .. 2^24, got ", nbins);
  CELLRT_CHECK(counts != nullptr, "float_histogram: counts should not be NULL");
  const auto* v = static_cast<const float*>(values.data);
  const int workers = workers_for(n, num_threads);
  const FiniteRange range = finite_range(v, n, workers);
  std::fill(counts, counts + nbins, 0);
  if (range.finite == 0) {
    if (edges != nullptr) std::fill(edges, edges + nbins + 1, std::numeric_limits<float>::quiet_NaN());
    return 0;
  }
  // numpy: range (min, max) as Python floats, widened by 0.5 when equal; linspace in double
  // (i x step + first, the last edge set to last), then cast to the values' float32.
  double first = range.min, last = range.max;
  if (first == last) {
    first -= 0.5;
    last += 0.5;
  }
  // Never 0 for float32 ends (numpy's denormal-step branch cannot be reached).
  const double step = (last - first) / nbins;
  std::vector<float> edge(static_cast<size_t>(nbins) + 1);
  for (int64_t b = 0; b < nbins; ++b) edge[b] = static_cast<float>(static_cast<double>(b) * step + first);
  edge[nbins] = static_cast<float>(last);
  for (int64_t b = 0; b < nbins; ++b)
    CELLRT_CHECK(edge[b] < edge[b + 1], "float_histogram: ", nbins, " bins are too many for the values' range [",
                 range.min, ", ", range.max, "]: in float32 some would have no width (numpy.histogram refuses them "
                 "too)");
  if (edges != nullptr) std::copy(edge.begin(), edge.end(), edges);
  const double scale = nbins / (last - first);
  // Interleaved sub-histograms only while they stay small (they are merged per worker).
  const int subs = nbins <= 4096 ? 4 : 1;
  const int64_t stride = int64_t{nbins} + 1;
  std::vector<std::vector<int64_t>> partial(workers);
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      std::vector<int64_t>& h = partial[w];
      h.assign(static_cast<size_t>(subs * stride), 0);
      const int64_t begin = n * w / workers, end = n * (w + 1) / workers;
      count_bins(v + begin, end - begin, first, scale, edge.data(), nbins, subs, h.data());
    }
  });
  for (const auto& h : partial)
    for (int s = 0; s < subs; ++s)
      for (int64_t b = 0; b < nbins; ++b) counts[b] += h[s * stride + b + 1];
  return range.finite;
}

void histogram(const TensorView& image, const TensorView& counts, int32_t num_threads, void* stream) {
  CELLRT_CHECK(image.ndim >= 1 && image.ndim <= 4, "histogram: image should have 1 to 4 dimensions, got ", image.ndim);
  const int64_t n = detail::element_count("histogram", "image", image);
  CELLRT_CHECK(is_contiguous(image), "histogram: image should be C-contiguous");
  CELLRT_CHECK(image.dtype == DType::kUInt8 || image.dtype == DType::kUInt16,
               "histogram: image should be uint8 or uint16, got ", dtype_name(image.dtype));
  const int64_t bins = image.dtype == DType::kUInt8 ? 256 : 65536;
  detail::check_view("histogram", "counts", counts, 1, "(bins,)", true);
  CELLRT_CHECK(counts.dtype == DType::kInt64, "histogram: counts should be int64, got ", dtype_name(counts.dtype));
  CELLRT_CHECK(counts.shape[0] == bins, "histogram: counts should have ", bins, " bins, got ", counts.shape[0]);
  detail::check_same_device("histogram", "image", image, "counts", counts);
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
