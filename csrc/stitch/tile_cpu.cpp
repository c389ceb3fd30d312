// CPU tiler. Work partition: tiles that share a row origin form a band and
// read the same image rows; threads take disjoint blocks of (band, channel,
// tile row). Each block stages its image row once - read sequentially,
// normalised, checked and converted to the tile type - and copies it into
// every tile of the band with non-temporal stores (core/host_memory.h). So
// an image pixel is read and converted once per band instead of once per
// tile that holds it (1.8x at 25% overlap), and the reads are whole rows
// the hardware prefetchers follow, not tile-wide runs an image row apart.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "core/host_memory.h"
#include "core/parallel.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace cellrt::detail {

namespace {

// Values that are NaN or infinite once stored as Out, so float16 overflow
// of an unnormalised 16-bit image is reported too: a float rounds to a
// float16 infinity from 65520 up. Counted on the staged row, in cache,
// with a compare that vectorises (NaN compares false).
inline int64_t count_nonfinite(const float* row, const float*, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::fabs(row[i]) <= std::numeric_limits<float>::max() ? 0 : 1;
  return bad;
}

inline int64_t count_nonfinite(const float* row, const Half*, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::fabs(row[i]) < 65520.0f ? 0 : 1;
  return bad;
}

// The staged row as float16, rounded to nearest even as the streaming
// conversion does.
inline const Half* as_tile_type(const float* row, int64_t n, Half* out) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(row + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) out[i] = to_half(row[i]);
  return out;
}

// Tiles grouped by row origin, in the order of first appearance: band b is
// order[band_start[b] .. band_start[b + 1]).
struct Bands {
  std::vector<int64_t> order, band_start;
  std::vector<uint8_t> needs_whole_row;  // a tile of the band reaches past the right border
};

Bands make_bands(const TileArgs& a) {
  Bands out;
  out.order.resize(a.num_tiles);
  std::iota(out.order.begin(), out.order.end(), int64_t{0});
  std::stable_sort(out.order.begin(), out.order.end(),
                   [&](int64_t p, int64_t q) { return a.origin_y[p] < a.origin_y[q]; });
  for (int64_t i = 0; i < a.num_tiles; ++i) {
    const int64_t k = out.order[i];
    if (i == 0 || a.origin_y[k] != a.origin_y[out.order[i - 1]]) {
      out.band_start.push_back(i);
      out.needs_whole_row.push_back(0);
    }
    if (int64_t{a.origin_x[k]} + a.tile_w > a.width) out.needs_whole_row.back() = 1;
  }
  out.band_start.push_back(a.num_tiles);
  return out;
}

template <typename In, typename Out>
TileResult run(const TensorView& image, const TileArgs& a, const TensorView& tiles, int32_t num_threads) {
  const In* src = static_cast<const In*>(image.data);
  Out* dst = static_cast<Out*>(tiles.data);
  const int64_t sc = image.strides[0], sy = image.strides[1], sx = image.strides[2];
  const Bands bands = make_bands(a);
  const int64_t num_bands = static_cast<int64_t>(bands.band_start.size()) - 1;
  const int64_t blocks = num_bands * a.channels * a.tile_h;
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), blocks));
  std::vector<int64_t> bad(workers, 0);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    std::vector<float> staged(a.width);
    std::vector<Out> converted(std::is_same_v<Out, float> ? 0 : a.width);
    for (int64_t wi = wb; wi < we; ++wi) {
      const int64_t r0 = blocks * wi / workers, r1 = blocks * (wi + 1) / workers;
      for (int64_t block = r0; block < r1; ++block) {
        const int64_t band = block / (int64_t{a.channels} * a.tile_h);
        const int32_t c = static_cast<int32_t>((block / a.tile_h) % a.channels);
        const int32_t ty = static_cast<int32_t>(block % a.tile_h);
        const int64_t* first = bands.order.data() + bands.band_start[band];
        const int64_t* last = bands.order.data() + bands.band_start[band + 1];
        // The columns the band's tiles read: all of them when a tile mirrors past the border.
        int64_t lo = 0, hi = a.width;
        if (!bands.needs_whole_row[band]) {
          lo = a.width;
          hi = 0;
          for (const int64_t* t = first; t != last; ++t) {
            lo = std::min<int64_t>(lo, a.origin_x[*t]);
            hi = std::max<int64_t>(hi, int64_t{a.origin_x[*t]} + a.tile_w);
          }
        }
        const int64_t y = reflect_index(int64_t{a.origin_y[*first]} + ty, a.height);
        const In* line = src + c * sc + y * sy;
        const float scale = a.scale[c], offset = a.offset[c];
        float* row = staged.data();
        if (sx == 1) {
          for (int64_t x = lo; x < hi; ++x) row[x] = normalise_pixel<float>(to_float(line[x]), scale, offset);
        } else {
          for (int64_t x = lo; x < hi; ++x) row[x] = normalise_pixel<float>(to_float(line[x * sx]), scale, offset);
        }
        const bool row_has_bad = count_nonfinite(row + lo, dst, hi - lo) != 0;
        const Out* values;
        if constexpr (std::is_same_v<Out, float>) {
          values = row;
        } else {
          values = as_tile_type(row + lo, hi - lo, converted.data() + lo) - lo;
        }
        for (const int64_t* t = first; t != last; ++t) {
          const int64_t k = *t, ox = a.origin_x[k];
          const int64_t inside = std::min<int64_t>(a.tile_w, a.width - ox);
          Out* out = dst + ((k * a.channels + c) * a.tile_h + ty) * a.tile_w;
          stream_copy(out, values + ox, inside);
          for (int64_t i = inside; i < a.tile_w; ++i) out[i] = values[reflect_index(ox + i, a.width)];
          if (row_has_bad) {  // counted per tile value, as the other backends do
            bad[wi] += count_nonfinite(row + ox, dst, inside);
            for (int64_t i = inside; i < a.tile_w; ++i)
              bad[wi] += count_nonfinite(row + reflect_index(ox + i, a.width), dst, 1);
          }
        }
      }
    }
    store_fence();
  });
  TileResult result;
  for (int64_t b : bad) result.nonfinite += b;
  return result;
}

template <typename In>
TileResult run_in(const TensorView& image, const TileArgs& a, const TensorView& tiles, int32_t threads) {
  if (tiles.dtype == DType::kFloat16) return run<In, Half>(image, a, tiles, threads);
  return run<In, float>(image, a, tiles, threads);
}

}  // namespace

TileResult tile_cpu(const TensorView& image, const TileArgs& args, const TensorView& tiles,
                    int32_t num_threads) {
  switch (image.dtype) {
    case DType::kUInt8: return run_in<uint8_t>(image, args, tiles, num_threads);
    case DType::kUInt16: return run_in<uint16_t>(image, args, tiles, num_threads);
    default: return run_in<float>(image, args, tiles, num_threads);
  }
}

}  // namespace cellrt::detail
