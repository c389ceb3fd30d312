// CPU tiler. Work partition: threads take disjoint blocks of (channel, image
// row). Each row is staged once - read sequentially, normalised, checked
// and converted to the tile type - and copied with non-temporal stores
// (core/host_memory.h) into every tile row it becomes: tiles sharing a row
// origin form a band, and a row belongs to every band that covers it (one,
// or two at an overlap below half a tile). So an image pixel is read and
// converted once, not once per tile that holds it (1.8x at 25% overlap),
// and the reads are whole rows the hardware prefetchers follow, not
// tile-wide runs an image row apart.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/half.h"
#include "core/host_memory.h"
#include "core/parallel.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

#if defined(__AVX2__) && defined(__F16C__)   // x86-64-v3 (CELLRT_X86_64_V3)
#define CELLRT_TILE_X86_V3 1
#else
#define CELLRT_TILE_X86_V3 0
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

#if CELLRT_TILE_X86_V3
inline __m256 load8_as_float(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8_as_float(const uint16_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline __m256 load8_as_float(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
#endif

// Stages a contiguous image row in one pass: normalised floats into `row`,
// for float16 tiles also converted into `converted` (the float row is still
// needed for the rare row whose values are counted per tile); returns
// whether any value is non-finite once stored as Out (count_nonfinite's
// test). Normalising, counting and converting in separate passes over the
// staged row made the tiler compute-bound: 3x2048^2, one thread, float16
// tiles took 3.5-4.0 ms this way, 2.4-2.5 in one pass; float32 5.0 -> 3.8.
// The same operations per value (subtract, multiply, round to nearest
// even), so the same bits.
template <typename In, typename Out>
bool stage_row(const In* line, int64_t lo, int64_t hi, float scale, float offset, float* row, Out* converted) {
  constexpr bool kHalf = std::is_same_v<Out, Half>;
  int64_t x = lo;
  bool any_bad = false;
#if CELLRT_TILE_X86_V3
  const __m256 scales = _mm256_set1_ps(scale), offsets = _mm256_set1_ps(offset);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 limit = _mm256_set1_ps(kHalf ? 65520.0f : std::numeric_limits<float>::max());
  __m256 bad = _mm256_setzero_ps();
  for (; x + 8 <= hi; x += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(load8_as_float(line + x), offsets), scales);
    _mm256_storeu_ps(row + x, v);
    // Unordered predicates: NaN counts.
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), limit, kHalf ? _CMP_NLT_UQ : _CMP_NLE_UQ));
    if constexpr (kHalf)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(converted + x), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  any_bad = _mm256_movemask_ps(bad) != 0;
#endif
  for (; x < hi; ++x) {
    row[x] = normalise_pixel<float>(to_float(line[x]), scale, offset);
    any_bad |= count_nonfinite(row + x, static_cast<const Out*>(nullptr), 1) != 0;
    if constexpr (kHalf) converted[x] = to_half(row[x]);
  }
  return any_bad;
}

// Tiles grouped by row origin: band b is order[band_start[b] .. band_start[b + 1]),
// reading columns [lo[b], hi[b]). Image row y is row ty of band b for each
// (b, ty) in uses[use_start[y] .. use_start[y + 1]) - one band or two where
// bands overlap, more where a tile taller than the image mirrors rows.
struct RowPlan {
  std::vector<int64_t> order, band_start, lo, hi;
  std::vector<int64_t> use_start;
  std::vector<std::pair<int64_t, int32_t>> uses;
};

RowPlan make_row_plan(const TileArgs& a) {
  RowPlan p;
  p.order.resize(a.num_tiles);
  std::iota(p.order.begin(), p.order.end(), int64_t{0});
  std::stable_sort(p.order.begin(), p.order.end(),
                   [&](int64_t u, int64_t v) { return a.origin_y[u] < a.origin_y[v]; });
  for (int64_t i = 0; i < a.num_tiles; ++i) {
    const int64_t k = p.order[i], ox = a.origin_x[k];
    if (i == 0 || a.origin_y[k] != a.origin_y[p.order[i - 1]]) {
      p.band_start.push_back(i);
      p.lo.push_back(ox);
      p.hi.push_back(0);
    }
    p.lo.back() = std::min(p.lo.back(), ox);
    p.hi.back() = std::max(p.hi.back(), ox + a.tile_w);
  }
  p.band_start.push_back(a.num_tiles);
  const int64_t bands = static_cast<int64_t>(p.lo.size());
  for (int64_t b = 0; b < bands; ++b)
    if (p.hi[b] > a.width) {  // a tile mirrors past the right border: it may read any column
      p.lo[b] = 0;
      p.hi[b] = a.width;
    }
  p.use_start.assign(static_cast<size_t>(a.height) + 1, 0);
  auto source_row = [&](int64_t b, int32_t ty) {
    return reflect_index(int64_t{a.origin_y[p.order[p.band_start[b]]]} + ty, a.height);
  };
  for (int64_t b = 0; b < bands; ++b)
    for (int32_t ty = 0; ty < a.tile_h; ++ty) ++p.use_start[source_row(b, ty) + 1];
  for (int64_t y = 0; y < a.height; ++y) p.use_start[y + 1] += p.use_start[y];
  p.uses.resize(static_cast<size_t>(p.use_start[a.height]));
  std::vector<int64_t> fill(p.use_start.begin(), p.use_start.end() - 1);
  for (int64_t b = 0; b < bands; ++b)
    for (int32_t ty = 0; ty < a.tile_h; ++ty) p.uses[fill[source_row(b, ty)]++] = {b, ty};
  return p;
}

template <typename In, typename Out>
TileResult run(const TensorView& image, const TileArgs& a, const TensorView& tiles, int32_t num_threads) {
  const In* src = static_cast<const In*>(image.data);
  Out* dst = static_cast<Out*>(tiles.data);
  const int64_t sc = image.strides[0], sy = image.strides[1], sx = image.strides[2];
  const RowPlan plan = make_row_plan(a);
  // Work items: (channel, image row that some tile reads), so threads share the rows that
  // matter evenly even when the tiles cover part of the image.
  std::vector<int32_t> rows_read;
  for (int32_t y = 0; y < a.height; ++y)
    if (plan.use_start[y + 1] > plan.use_start[y]) rows_read.push_back(y);
  const int64_t read = static_cast<int64_t>(rows_read.size());
  const int64_t items = int64_t{a.channels} * read;
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), items));
  std::vector<int64_t> bad(workers, 0);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    std::vector<float> staged(a.width);
    std::vector<Out> converted(std::is_same_v<Out, float> ? 0 : a.width);
    for (int64_t wi = wb; wi < we; ++wi) {
      const int64_t r0 = items * wi / workers, r1 = items * (wi + 1) / workers;
      for (int64_t item = r0; item < r1; ++item) {
        const int32_t c = static_cast<int32_t>(item / read);
        const int64_t y = rows_read[item % read];
        const auto* first_use = plan.uses.data() + plan.use_start[y];
        const auto* last_use = plan.uses.data() + plan.use_start[y + 1];
        int64_t lo = a.width, hi = 0;
        for (const auto* u = first_use; u != last_use; ++u) {
          lo = std::min(lo, plan.lo[u->first]);
          hi = std::max(hi, plan.hi[u->first]);
        }
        const In* line = src + c * sc + y * sy;
        const float scale = a.scale[c], offset = a.offset[c];
        float* row = staged.data();
        bool row_has_bad;
        if (sx == 1) {
          row_has_bad = stage_row(line, lo, hi, scale, offset, row, converted.data());
        } else {
          for (int64_t x = lo; x < hi; ++x) row[x] = normalise_pixel<float>(to_float(line[x * sx]), scale, offset);
          row_has_bad = count_nonfinite(row + lo, dst, hi - lo) != 0;
          if constexpr (std::is_same_v<Out, Half>) as_tile_type(row + lo, hi - lo, converted.data() + lo);
        }
        const Out* values;
        if constexpr (std::is_same_v<Out, float>) {
          values = row;
        } else {
          values = converted.data();
        }
        for (const auto* u = first_use; u != last_use; ++u) {
          const int32_t ty = u->second;
          const int64_t* first = plan.order.data() + plan.band_start[u->first];
          const int64_t* last = plan.order.data() + plan.band_start[u->first + 1];
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
