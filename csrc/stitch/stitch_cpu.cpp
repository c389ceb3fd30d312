// CPU stitcher.
//
// Work partition: threads take disjoint blocks of output rows and walk each
// row span by span: a span is one row of one plan cell (stitch_plan.h), so
// its covering tiles are fixed and the inner loops are contiguous and
// branch-free. Each tile value is read once and each output value stored
// once, from a small per-thread buffer with non-temporal stores
// (core/host_memory.h). Walking cell columns first, to keep fewer tiles in
// flight, measured 1.5x slower here: the output is then written in short
// strips 8 KB apart.

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "core/host_memory.h"
#include "core/parallel.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)   // x86-64-v3 (CELLRT_X86_64_V3)
#include <immintrin.h>
#define CELLRT_STITCH_X86_V3 1
#else
#define CELLRT_STITCH_X86_V3 0
#endif

namespace cellrt::detail {

namespace {

inline const float* row_as_float(const float* src, int64_t, float*) { return src; }

inline const float* row_as_float(const Half* src, int64_t n, float* scratch) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(scratch + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) scratch[i] = to_float(src[i]);
  return scratch;
}

#if CELLRT_STITCH_X86_V3
// Eight tile values as floats: float16 rows convert in registers, so the
// blend stores nothing but its result (staging converted rows in a scratch
// buffer made the float16 stitch slower than the float32 one - 7.2 vs 6.2
// ms at 3x2048^2 - while reading half the bytes).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// dst[0:n] = float(src[0:n]) with streaming stores only (see stream_store), in one pass with the
// count of non-finite values (single-tile spans of float16 tiles).
int32_t stream_copy_counting(float* dst, const Half* src, int64_t n) {
  const __m256i exponent = _mm256_set1_epi32(0x7f800000);
  int32_t bad = 0;
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15u) != 0; ++i) {
    const float value = to_float(src[i]);
    stream_store(dst + i, value);
    bad += is_finite_value(value) ? 0 : 1;
  }
  // Four values at a 16-byte boundary off a 32-byte one, as stream_copy (core/host_memory.h).
  auto copy4 = [&] {
    const __m128 x = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)));
    const __m128i bits = _mm_and_si128(_mm_castps_si128(x), _mm256_castsi256_si128(exponent));
    bad += __builtin_popcount(static_cast<unsigned>(
        _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(bits, _mm256_castsi256_si128(exponent))))));
    _mm_stream_ps(dst + i, x);
    i += 4;
  };
  if (i + 4 <= n && (reinterpret_cast<uintptr_t>(dst + i) & 31u) != 0) copy4();
  for (; i + 8 <= n; i += 8) {
    const __m256 x = load8(src + i);
    const __m256i bits = _mm256_and_si256(_mm256_castps_si256(x), exponent);
    bad += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, exponent)))));
    _mm256_stream_ps(dst + i, x);
  }
  if (i + 4 <= n) copy4();
  for (; i < n; ++i) {
    const float value = to_float(src[i]);
    stream_store(dst + i, value);
    bad += is_finite_value(value) ? 0 : 1;
  }
  return bad;
}

// The blend_fused pixel loop on eight pixels at a time: the same IEEE
// operations in the same order as the scalar loop (mul, add, div, select;
// no FMA), so the same bits. Returns the index of the first pixel left
// for the scalar loop.
template <int N, typename T>
int32_t blend_fused_vector(const T* const* v, const float* wy, const float* const* wx, int32_t len, float fill,
                           float* q, int32_t& bad, int32_t& uncovered) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), fills = _mm256_set1_ps(fill);
  const __m256i exponent = _mm256_set1_epi32(0x7f800000);
  __m256 wys[N];
  for (int t = 0; t < N; ++t) wys[t] = _mm256_set1_ps(wy[t]);
  int32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    __m256 den = _mm256_mul_ps(wys[0], _mm256_loadu_ps(wx[0] + i));
    __m256 num = _mm256_mul_ps(den, load8(v[0] + i));
    for (int t = 1; t < N; ++t) {
      const __m256 w = _mm256_mul_ps(wys[t], _mm256_loadu_ps(wx[t] + i));
      den = _mm256_add_ps(den, w);
      num = _mm256_add_ps(num, _mm256_mul_ps(w, load8(v[t] + i)));
    }
    const __m256 covered = _mm256_cmp_ps(den, zero, _CMP_GT_OQ);
    const __m256 value = _mm256_blendv_ps(fills, _mm256_div_ps(num, _mm256_blendv_ps(one, den, covered)), covered);
    _mm256_storeu_ps(q + i, value);
    const __m256i bits = _mm256_and_si256(_mm256_castps_si256(value), exponent);
    const int nonfinite = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, exponent)));
    const int covered_mask = _mm256_movemask_ps(covered);
    uncovered += 8 - __builtin_popcount(static_cast<unsigned>(covered_mask));
    bad += __builtin_popcount(static_cast<unsigned>(nonfinite & covered_mask));
  }
  return i;
}
// expf on eight lanes: Cody-Waite reduction by ln 2 and a degree-6
// polynomial (the Cephes coefficients), within a few ulp of a correctly
// rounded expf over the normal range; NaN stays NaN, +inf beyond
// log(FLT_MAX), gradual underflow to 0 below. The activations below call it
// instead of the scalar expf, which the compiler cannot vectorise: softmax
// over three channels took 18 ms per 1024^2 field on one core that way.
inline __m256 exp8(__m256 x) {
  const __m256 overflow = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
  // min/max return their second operand when one is NaN: x goes second, so NaN passes through.
  x = _mm256_min_ps(_mm256_set1_ps(88.72283935546875f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
  const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as 2^(n/2) * 2^(n - n/2): both factors normal for n in [-150, 128], so results near
  // FLT_MAX stay finite and tiny ones underflow gradually, as expf's do.
  const __m256i k = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(k, 1);
  const __m256 scale_a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 scale_b = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(k, half), _mm256_set1_epi32(127)), 23));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, scale_a), scale_b);
  return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), overflow);
}

// Softmax over the channels of eight pixels (acc rows `stride` apart), in
// place; uncovered pixels (den <= 0) get `fill` in every channel. The
// scalar softmax_inplace's order of operations, with exp8 for expf.
inline void softmax8(float* acc, int64_t stride, int32_t channels, __m256 covered, __m256 fill) {
  __m256 m = _mm256_loadu_ps(acc);
  for (int32_t c = 1; c < channels; ++c) {
    const __m256 v = _mm256_loadu_ps(acc + c * stride);
    m = _mm256_blendv_ps(m, v, _mm256_cmp_ps(v, m, _CMP_GT_OQ));   // v > m ? v : m, as the scalar code
  }
  __m256 sum = _mm256_setzero_ps();
  for (int32_t c = 0; c < channels; ++c) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(acc + c * stride), m));
    _mm256_storeu_ps(acc + c * stride, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
  for (int32_t c = 0; c < channels; ++c) {
    const __m256 q = _mm256_mul_ps(_mm256_loadu_ps(acc + c * stride), inv);
    _mm256_storeu_ps(acc + c * stride, _mm256_blendv_ps(fill, q, covered));
  }
}

// Softmax over channels, in place, for a span of `len` pixels; eight at a
// time, the last partial group through a padded copy so that every pixel
// takes the same arithmetic.
inline void softmax_span(float* acc, int64_t stride, int32_t channels, const float* den, int32_t len,
                         float fill_value, float* pad /* [channels * 8] */) {
  const __m256 zero = _mm256_setzero_ps(), fill = _mm256_set1_ps(fill_value);
  int32_t i = 0;
  for (; i + 8 <= len; i += 8)
    softmax8(acc + i, stride, channels, _mm256_cmp_ps(_mm256_loadu_ps(den + i), zero, _CMP_GT_OQ), fill);
  if (i == len) return;
  const int32_t rest = len - i;
  float den_pad[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int32_t k = 0; k < rest; ++k) den_pad[k] = den[i + k];
  for (int32_t c = 0; c < channels; ++c)
    for (int32_t k = 0; k < 8; ++k) pad[c * 8 + k] = k < rest ? acc[c * stride + i + k] : 0.0f;
  softmax8(pad, 8, channels, _mm256_cmp_ps(_mm256_loadu_ps(den_pad), zero, _CMP_GT_OQ), fill);
  for (int32_t c = 0; c < channels; ++c)
    for (int32_t k = 0; k < rest; ++k) acc[c * stride + i + k] = pad[c * 8 + k];
}

// 1 / (1 + exp(-v)) where den > 0, in place, as the scalar sigmoid with exp8 for expf.
inline void sigmoid_span(float* acc, const float* den, int32_t len) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  int32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 v = _mm256_loadu_ps(acc + i);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v))));
    _mm256_storeu_ps(acc + i, _mm256_blendv_ps(v, s, _mm256_cmp_ps(_mm256_loadu_ps(den + i), zero, _CMP_GT_OQ)));
  }
  if (i == len) return;
  float v_pad[8] = {0, 0, 0, 0, 0, 0, 0, 0}, den_pad[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int32_t k = 0; i + k < len; ++k) {
    v_pad[k] = acc[i + k];
    den_pad[k] = den[i + k];
  }
  sigmoid_span(v_pad, den_pad, 8);
  for (int32_t k = 0; i + k < len; ++k) acc[i + k] = v_pad[k];
}
#endif

// A row walks through up to ~20 tiles and comes back to each one row later;
// that many interleaved streams defeat the hardware prefetchers, so the
// run a span will need a few rows on is requested explicitly.
constexpr int32_t kPrefetchRows = 4;

// Per-thread buffers. Covered spans are at most a tile row wide; an
// uncovered span can reach across the image, so acc/den take the widest.
struct SpanScratch {
  std::vector<float> acc;      // [C, max_span]
  std::vector<float> den;      // [max_span]
  std::vector<float> convert;  // [4, tile_w]
  std::vector<int64_t> best;   // [tile_w], crop()
  std::vector<int32_t> owner;  // [tile_w], crop()
  std::vector<float> pixel;    // [C], softmax / argmax
};

struct Counts {
  int64_t uncovered = 0, nonfinite = 0;
};

template <typename T>
class SpanStitcher {
 public:
  SpanStitcher(const T* tiles, const StitchPlan& plan, const StitchOptions& options, const TensorView& out)
      : tiles_(tiles), p_(plan), o_(options), out_(out) {}

  void run_rows(int32_t y0, int32_t y1, SpanScratch& s, Counts& counts) const {
    const int64_t nx = p_.cell_columns();
    for (int32_t y = y0; y < y1; ++y)
      for (int64_t j = 0; j < nx; ++j) span(y, j, s, counts);
  }

 private:
  const T* tile_row(int64_t k, int32_t c, int32_t ty) const {
    return tiles_ + ((k * p_.channels + c) * p_.tile_h + ty) * p_.tile_w;
  }

  void span(int32_t y, int64_t j, SpanScratch& s, Counts& counts) const {
    const int64_t nx = p_.cell_columns();
    const int64_t cell = p_.row_cell[y] * nx + j;
    const int32_t x0 = p_.x_bounds[j], len = p_.x_bounds[j + 1] - x0;
    const int32_t* first = p_.cell_tiles.data() + p_.cell_start[cell];
    const int32_t* last = p_.cell_tiles.data() + p_.cell_start[cell + 1];
    if (last - first == 1 && o_.activation == Activation::kNone && !o_.argmax) {
      copy_single(y, x0, len, *first, s, counts);
      return;
    }
    if (o_.activation == Activation::kNone && !o_.argmax && o_.blend != Blend::kCrop) {
      switch (last - first) {  // the overlaps of a tile grid: 2 tiles on edges, 4 at corners
        case 2: return blend_fused<2>(y, x0, len, first, s, counts);
        case 3: return blend_fused<3>(y, x0, len, first, s, counts);
        case 4: return blend_fused<4>(y, x0, len, first, s, counts);
        default: break;
      }
    }
    if (first == last) {
      std::fill(s.den.begin(), s.den.begin() + len, 0.0f);
    } else if (last - first == 1) {
      single(y, x0, len, *first, s);
    } else if (o_.blend == Blend::kCrop) {
      crop(y, x0, len, first, last, s);
    } else {
      blend(y, x0, len, first, last, s);
    }
    finalize_span(y, x0, len, s, counts);
  }

  // One covering tile: its values pass through unchanged (weight 1, see
  // single_tile_weight), so the span is a copy. In a tile grid with 25%
  // overlap this is ~45% of the image.
  void copy_single(int32_t y, int32_t x0, int32_t len, int64_t k, SpanScratch& s, Counts& counts) const {
    const int32_t ty = y - p_.origin_y[k], tx = x0 - p_.origin_x[k];
    const int64_t plane = int64_t{p_.height} * p_.width;
    for (int32_t c = 0; c < p_.channels; ++c) {
      if (ty + kPrefetchRows < p_.tile_h) prefetch_run(tile_row(k, c, ty + kPrefetchRows) + tx, len);
      float* out = static_cast<float*>(out_.data) + c * plane + int64_t{y} * p_.width + x0;
#if CELLRT_STITCH_X86_V3
      if constexpr (std::is_same_v<T, Half>) {
        counts.nonfinite += stream_copy_counting(out, tile_row(k, c, ty) + tx, len);
        continue;
      }
#endif
      const float* v = row_as_float(tile_row(k, c, ty) + tx, len, s.convert.data());
      int32_t bad = 0;
      for (int32_t i = 0; i < len; ++i) bad += is_finite_value(v[i]) ? 0 : 1;
      counts.nonfinite += bad;
      stream_copy(out, v, len);
    }
  }

  // blend() and finalize_span() in one pass for a span covered by N tiles
  // (N known at compile time: the loop over tiles unrolls and the pixel loop
  // vectorises): the same operations in the same order per pixel, so the
  // same bits, without storing and reloading the numerator and denominator
  // buffers between passes.
  template <int N>
  void blend_fused(int32_t y, int32_t x0, int32_t len, const int32_t* first, SpanScratch& s, Counts& counts) const {
    const int32_t TW = p_.tile_w;
    const int64_t plane = int64_t{p_.height} * p_.width;
    float wy[N];
    const float* wx[N];
    int32_t ty[N], tx[N];
    for (int t = 0; t < N; ++t) {
      const int64_t k = first[t];
      ty[t] = y - p_.origin_y[k];
      tx[t] = x0 - p_.origin_x[k];
      wy[t] = p_.window_y[k * p_.tile_h + ty[t]];
      wx[t] = p_.window_x.data() + k * TW + tx[t];
    }
    const float fill = o_.fill_value;
    for (int32_t c = 0; c < p_.channels; ++c) {
      float* q = s.acc.data();
      int32_t bad = 0, uncovered = 0;  // uncovered: all N weights underflowed (a tiny gaussian sigma)
      const T* raw[N];
      for (int t = 0; t < N; ++t) {
        const int64_t k = first[t];
        if (ty[t] + kPrefetchRows < p_.tile_h) prefetch_run(tile_row(k, c, ty[t] + kPrefetchRows) + tx[t], len);
        raw[t] = tile_row(k, c, ty[t]) + tx[t];
      }
      int32_t start = 0;
#if CELLRT_STITCH_X86_V3
      // float16 rows through registers; float32 keeps the compiler's vectorisation of the
      // scalar loop below, measured faster for it.
      if constexpr (std::is_same_v<T, Half>) start = blend_fused_vector<N>(raw, wy, wx, len, fill, q, bad, uncovered);
#endif
      // The scalar loop reads v[t][start:len]: float rows in place, float16 ones converted.
      const float* v[N];
      for (int t = 0; t < N; ++t)
        v[t] = row_as_float(raw[t] + start, len - start, s.convert.data() + t * TW + start) - start;
      for (int32_t i = start; i < len; ++i) {
        float den = tile_weight(wy[0], wx[0][i]);
        float num = den * v[0][i];
        for (int t = 1; t < N; ++t) {
          const float w = tile_weight(wy[t], wx[t][i]);
          accumulate(den, 1.0f, w);
          accumulate(num, v[t][i], w);
        }
        const float value = finalize(num, den, fill);
        q[i] = value;
        const int32_t covered = den > 0.0f;
        uncovered += 1 - covered;
        bad += covered & static_cast<int32_t>(!is_finite_value(value));
      }
      counts.nonfinite += bad;
      if (c == 0) counts.uncovered += uncovered;
      stream_copy(static_cast<float*>(out_.data) + c * plane + int64_t{y} * p_.width + x0, q, len);
    }
  }

  // The first tile stores (w * v is exactly 0 + w * v) instead of
  // accumulating, which saves clearing the buffers and a load per value.
  // Channel 0 is fused with the denominator, so with one channel each tile
  // costs one pass over the span.
  void blend(int32_t y, int32_t x0, int32_t len, const int32_t* first, const int32_t* last,
             SpanScratch& s) const {
    const int32_t C = p_.channels, TW = p_.tile_w;
    const int64_t stride = p_.max_span;
    float* den = s.den.data();
    for (const int32_t* t = first; t != last; ++t) {
      const int64_t k = *t;
      const int32_t ty = y - p_.origin_y[k], tx = x0 - p_.origin_x[k];
      const float wy = p_.window_y[k * p_.tile_h + ty];
      const float* wx = p_.window_x.data() + k * TW + tx;
      for (int32_t c = 0; c < C; ++c) {
        if (ty + kPrefetchRows < p_.tile_h) prefetch_run(tile_row(k, c, ty + kPrefetchRows) + tx, len);
        const float* v = row_as_float(tile_row(k, c, ty) + tx, len, s.convert.data());
        float* acc = s.acc.data() + c * stride;
        if (t == first && c == 0) {
          for (int32_t i = 0; i < len; ++i) {
            const float w = tile_weight(wy, wx[i]);
            den[i] = w;
            acc[i] = w * v[i];
          }
        } else if (t == first) {
          for (int32_t i = 0; i < len; ++i) acc[i] = tile_weight(wy, wx[i]) * v[i];
        } else if (c == 0) {
          for (int32_t i = 0; i < len; ++i) {
            const float w = tile_weight(wy, wx[i]);
            accumulate(den[i], 1.0f, w);
            accumulate(acc[i], v[i], w);
          }
        } else {
          for (int32_t i = 0; i < len; ++i) accumulate(acc[i], v[i], tile_weight(wy, wx[i]));
        }
      }
    }
  }

  // One covering tile, before an activation or argmax: its values unchanged
  // (weight 1, see single_tile_weight), a row copy per channel. These spans
  // are most of a field cut into few large tiles (4 x 536^2 for 1024^2):
  // through crop()'s per-pixel lookup, softmax over three channels took
  // 5.9 ms per 1024^2 field on one core.
  void single(int32_t y, int32_t x0, int32_t len, int64_t k, SpanScratch& s) const {
    const int32_t ty = y - p_.origin_y[k], tx = x0 - p_.origin_x[k];
    for (int32_t c = 0; c < p_.channels; ++c) {
      if (ty + kPrefetchRows < p_.tile_h) prefetch_run(tile_row(k, c, ty + kPrefetchRows) + tx, len);
      // float16 rows are converted straight into the accumulator; float32 ones are copied there.
      float* acc = s.acc.data() + c * p_.max_span;
      const float* v = row_as_float(tile_row(k, c, ty) + tx, len, acc);
      if (v != acc) std::copy(v, v + len, acc);
    }
    std::fill(s.den.begin(), s.den.begin() + len, 1.0f);
  }

  // Nearest tile centre wins; strict "<" keeps the lowest index on ties.
  void crop(int32_t y, int32_t x0, int32_t len, const int32_t* first, const int32_t* last, SpanScratch& s) const {
    for (const int32_t* t = first; t != last; ++t) {
      const int64_t k = *t;
      const int64_t dy2 = centre_distance2(y, p_.origin_y[k], p_.tile_h);
      for (int32_t i = 0; i < len; ++i) {
        const int64_t d = dy2 + centre_distance2(x0 + i, p_.origin_x[k], p_.tile_w);
        if (t == first || d < s.best[i]) {
          s.best[i] = d;
          s.owner[i] = static_cast<int32_t>(k);
        }
      }
    }
    for (int32_t c = 0; c < p_.channels; ++c) {
      float* acc = s.acc.data() + c * p_.max_span;
      for (int32_t i = 0; i < len; ++i) {
        const int64_t k = s.owner[i];
        acc[i] = to_float(tile_row(k, c, y - p_.origin_y[k])[x0 + i - p_.origin_x[k]]);
      }
    }
    std::fill(s.den.begin(), s.den.begin() + len, 1.0f);
  }

  // Blended span -> output values (or class indices). 32-bit counters and "&" instead of
  // "&&" keep the loops branch-free, so they vectorise.
  void finalize_span(int32_t y, int32_t x0, int32_t len, SpanScratch& s, Counts& counts) const {
    const int32_t C = p_.channels;
    const int64_t stride = p_.max_span;
    const float* den = s.den.data();

    const bool per_pixel = o_.argmax || o_.activation == Activation::kSoftmax;
    const int64_t plane = int64_t{p_.height} * p_.width;
    const int64_t offset = int64_t{y} * p_.width + x0;
    for (int32_t c = 0; c < C; ++c) {
      float* acc = s.acc.data() + c * stride;
      int32_t bad = 0, uncovered = 0;
      for (int32_t i = 0; i < len; ++i) {
        const float q = finalize(acc[i], den[i], o_.fill_value);
        acc[i] = q;
        const int32_t covered = den[i] > 0.0f;
        uncovered += 1 - covered;
        bad += covered & static_cast<int32_t>(!is_finite_value(q));
      }
      counts.nonfinite += bad;
      if (c == 0) counts.uncovered += uncovered;
      if (o_.activation == Activation::kSigmoid && !o_.argmax) {
#if CELLRT_STITCH_X86_V3
        sigmoid_span(acc, den, len);
#else
        for (int32_t i = 0; i < len; ++i)
          if (den[i] > 0.0f) acc[i] = sigmoid(acc[i]);
#endif
      }
      if (!per_pixel) stream_copy(static_cast<float*>(out_.data) + c * plane + offset, acc, len);
    }
    if (!per_pixel) return;
#if CELLRT_STITCH_X86_V3
    if (!o_.argmax) {  // softmax: all channels of eight pixels at a time, then one stream per channel
      softmax_span(s.acc.data(), stride, C, den, len, o_.fill_value, s.pixel.data());
      for (int32_t c = 0; c < C; ++c)
        stream_copy(static_cast<float*>(out_.data) + c * plane + offset, s.acc.data() + c * stride, len);
      return;
    }
#endif

    for (int32_t i = 0; i < len; ++i) {
      const bool covered = den[i] > 0.0f;
      for (int32_t c = 0; c < C; ++c) s.pixel[c] = covered ? s.acc[c * stride + i] : o_.fill_value;
      if (o_.argmax) {
        static_cast<int32_t*>(out_.data)[offset + i] = covered ? argmax(s.pixel.data(), C) : -1;
        continue;
      }
      if (covered) softmax_inplace(s.pixel.data(), C);
      for (int32_t c = 0; c < C; ++c) static_cast<float*>(out_.data)[c * plane + offset + i] = s.pixel[c];
    }
  }

  const T* tiles_;
  const StitchPlan& p_;
  const StitchOptions& o_;
  const TensorView& out_;
};

template <typename T>
StitchResult run(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                 const StitchOptions& options) {
  const SpanStitcher<T> stitcher(static_cast<const T*>(tiles.data), plan, options, out);
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(options.num_threads), plan.height));
  std::vector<Counts> counts(workers);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      SpanScratch s;
      s.acc.resize(plan.channels * plan.max_span);
      s.den.resize(plan.max_span);
      s.convert.resize(4 * static_cast<size_t>(plan.tile_w));  // blend_fused<4> converts four rows
      s.pixel.resize(8 * static_cast<size_t>(plan.channels));  // softmax_span's padded last group
      s.best.resize(plan.tile_w);
      s.owner.resize(plan.tile_w);
      const int32_t y0 = static_cast<int32_t>(int64_t{plan.height} * wi / workers);
      const int32_t y1 = static_cast<int32_t>(int64_t{plan.height} * (wi + 1) / workers);
      stitcher.run_rows(y0, y1, s, counts[wi]);
    }
    store_fence();
  });
  StitchResult result;
  for (const Counts& c : counts) {
    result.uncovered += c.uncovered;
    result.nonfinite += c.nonfinite;
  }
  return result;
}

}  // namespace

StitchResult stitch_cpu(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                        const StitchOptions& options) {
  if (tiles.dtype == DType::kFloat16) return run<Half>(tiles, plan, out, options);
  return run<float>(tiles, plan, out, options);
}

}  // namespace cellrt::detail
