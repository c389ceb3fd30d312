// CPU stitcher. Work partition: threads take disjoint blocks of output rows.
// A row is assembled in a per-thread buffer, cell span by cell span (see
// stitch_plan.h), so every inner loop runs over contiguous pixels with the
// same covering tiles and no per-pixel branching; each tile value is read
// once and each output value written once, which is what keeps this close to
// the memory-bandwidth bound.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

#if defined(__F16C__)
#include <immintrin.h>
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

struct RowScratch {
  std::vector<float> acc;      // [C, W]
  std::vector<float> den;      // [W]
  std::vector<float> weight;   // [tile_w]
  std::vector<float> convert;  // [tile_w]
  std::vector<int64_t> best;   // [W], crop mode
  std::vector<int32_t> owner;  // [W], crop mode
  std::vector<float> pixel;    // [C], softmax / argmax
};

template <typename T>
class RowStitcher {
 public:
  RowStitcher(const T* tiles, const StitchPlan& plan, const StitchOptions& options)
      : tiles_(tiles), p_(plan), o_(options) {}

  // Blends output row y into s.acc / s.den.
  void blend_row(int32_t y, RowScratch& s) const {
    const int32_t W = p_.width, C = p_.channels;
    std::fill(s.acc.begin(), s.acc.end(), 0.0f);
    std::fill(s.den.begin(), s.den.end(), 0.0f);
    const int64_t nx = p_.cell_columns();
    const int64_t cell_row = p_.row_cell[y];
    for (int64_t j = 0; j < nx; ++j) {
      const int32_t x0 = p_.x_bounds[j], x1 = p_.x_bounds[j + 1];
      const int32_t* first = p_.cell_tiles.data() + p_.cell_start[cell_row * nx + j];
      const int32_t* last = p_.cell_tiles.data() + p_.cell_start[cell_row * nx + j + 1];
      if (first == last) continue;  // uncovered span: den stays 0
      if (o_.blend == Blend::kCrop) {
        crop_span(y, x0, x1, first, last, s);
        continue;
      }
      const int32_t len = x1 - x0;
      for (const int32_t* t = first; t != last; ++t) {
        const int64_t k = *t;
        const int32_t ty = y - p_.origin_y[k], tx = x0 - p_.origin_x[k];
        const float wy = p_.window_y[k * p_.tile_h + ty];
        const float* wx = p_.window_x.data() + k * p_.tile_w + tx;
        float* w = s.weight.data();
        for (int32_t i = 0; i < len; ++i) w[i] = tile_weight(wy, wx[i]);
        float* den = s.den.data() + x0;
        for (int32_t i = 0; i < len; ++i) accumulate(den[i], 1.0f, w[i]);
        for (int32_t c = 0; c < C; ++c) {
          const float* v = row_as_float(tile_row(k, c, ty) + tx, len, s.convert.data());
          float* acc = s.acc.data() + int64_t{c} * W + x0;
          for (int32_t i = 0; i < len; ++i) accumulate(acc[i], v[i], w[i]);
        }
      }
    }
  }

 private:
  const T* tile_row(int64_t k, int32_t c, int32_t ty) const {
    return tiles_ + ((k * p_.channels + c) * p_.tile_h + ty) * p_.tile_w;
  }

  // Nearest tile centre wins; strict "<" keeps the lowest index on ties.
  void crop_span(int32_t y, int32_t x0, int32_t x1, const int32_t* first, const int32_t* last,
                 RowScratch& s) const {
    for (const int32_t* t = first; t != last; ++t) {
      const int64_t k = *t;
      const int64_t dy2 = centre_distance2(y, p_.origin_y[k], p_.tile_h);
      for (int32_t x = x0; x < x1; ++x) {
        const int64_t d = dy2 + centre_distance2(x, p_.origin_x[k], p_.tile_w);
        if (t == first || d < s.best[x]) {
          s.best[x] = d;
          s.owner[x] = static_cast<int32_t>(k);
        }
      }
    }
    for (int32_t c = 0; c < p_.channels; ++c) {
      float* acc = s.acc.data() + int64_t{c} * p_.width;
      for (int32_t x = x0; x < x1; ++x) {
        const int64_t k = s.owner[x];
        accumulate(acc[x], to_float(tile_row(k, c, y - p_.origin_y[k])[x - p_.origin_x[k]]), 1.0f);
      }
    }
    for (int32_t x = x0; x < x1; ++x) accumulate(s.den[x], 1.0f, 1.0f);
  }

  const T* tiles_;
  const StitchPlan& p_;
  const StitchOptions& o_;
};

struct Counts {
  int64_t uncovered = 0, nonfinite = 0;
};

// Turns one blended row into output values (or class indices).
void finalize_row(int32_t y, RowScratch& s, const StitchPlan& p, const StitchOptions& o,
                  const TensorView& out, Counts& counts) {
  const int32_t W = p.width, C = p.channels;
  const float* den = s.den.data();
  for (int32_t x = 0; x < W; ++x) counts.uncovered += den[x] > 0.0f ? 0 : 1;

  // Values first (in place in acc), so the non-finite count sees the blend.
  for (int32_t c = 0; c < C; ++c) {
    float* v = s.acc.data() + int64_t{c} * W;
    int64_t bad = 0;
    for (int32_t x = 0; x < W; ++x) {
      v[x] = finalize(v[x], den[x], o.fill_value);
      bad += (den[x] > 0.0f && !is_finite_value(v[x])) ? 1 : 0;
    }
    counts.nonfinite += bad;
  }
  if (o.argmax) {
    int32_t* dst = static_cast<int32_t*>(out.data) + int64_t{y} * W;
    for (int32_t x = 0; x < W; ++x) {
      if (!(den[x] > 0.0f)) {
        dst[x] = -1;
        continue;
      }
      for (int32_t c = 0; c < C; ++c) s.pixel[c] = s.acc[int64_t{c} * W + x];
      dst[x] = argmax(s.pixel.data(), C);
    }
    return;
  }
  if (o.activation == Activation::kSigmoid) {
    for (int32_t c = 0; c < C; ++c) {
      float* v = s.acc.data() + int64_t{c} * W;
      for (int32_t x = 0; x < W; ++x)
        if (den[x] > 0.0f) v[x] = sigmoid(v[x]);
    }
  } else if (o.activation == Activation::kSoftmax) {
    for (int32_t x = 0; x < W; ++x) {
      if (!(den[x] > 0.0f)) continue;
      for (int32_t c = 0; c < C; ++c) s.pixel[c] = s.acc[int64_t{c} * W + x];
      softmax_inplace(s.pixel.data(), C);
      for (int32_t c = 0; c < C; ++c) s.acc[int64_t{c} * W + x] = s.pixel[c];
    }
  }
  float* dst = static_cast<float*>(out.data);
  const int64_t plane = int64_t{p.height} * W;
  for (int32_t c = 0; c < C; ++c)
    std::memcpy(dst + c * plane + int64_t{y} * W, s.acc.data() + int64_t{c} * W, sizeof(float) * W);
}

template <typename T>
StitchResult run(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                 const StitchOptions& options) {
  const RowStitcher<T> stitcher(static_cast<const T*>(tiles.data), plan, options);
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(options.num_threads), plan.height));
  std::vector<Counts> counts(workers);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      RowScratch s;
      s.acc.resize(int64_t{plan.channels} * plan.width);
      s.den.resize(plan.width);
      s.weight.resize(plan.tile_w);
      s.convert.resize(plan.tile_w);
      s.pixel.resize(plan.channels);
      if (options.blend == Blend::kCrop) {
        s.best.resize(plan.width);
        s.owner.resize(plan.width);
      }
      const int32_t y0 = static_cast<int32_t>(int64_t{plan.height} * wi / workers);
      const int32_t y1 = static_cast<int32_t>(int64_t{plan.height} * (wi + 1) / workers);
      for (int32_t y = y0; y < y1; ++y) {
        stitcher.blend_row(y, s);
        finalize_row(y, s, plan, options, out, counts[wi]);
      }
    }
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
