// Per-pixel arithmetic of tile and stitch, written once and compiled by both
// the host compiler (stitch_cpu.cpp, tile_cpu.cpp) and nvcc
// (stitch_cuda.cu, tile_cuda.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/half.h"
#include "core/host_device.h"

namespace cellrt::detail {

// Blend modes, numbered as cellrt::Blend.
enum BlendMode : int32_t {
  kBlendConstant = 0,
  kBlendLinear = 1,
  kBlendCosine = 2,
  kBlendGaussian = 3,
  kBlendCrop = 4,
};

enum ActivationMode : int32_t {
  kActivationNone = 0,
  kActivationSigmoid = 1,
  kActivationSoftmax = 2,
};

// Softmax and argmax keep one pixel's channels in registers / a stack array.
constexpr int kMaxFusedChannels = 64;

// Window values are clamped here so that a steep gaussian cannot underflow
// to zero and turn a covered pixel into an "uncovered" one; the product of
// two clamped 1-D windows (1e-8) is still a normal float.
constexpr float kMinWindow = 1e-4f;

// Numpy-style "reflect" index (edge not repeated): ... 2 1 | 0 1 2 .. n-1 | n-2 ...
CELLRT_HOST_DEVICE inline int64_t reflect_index(int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;  // nearly every pixel: skip the 64-bit modulo, costly on a GPU
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// Ramp for linear/cosine taper at distance d (0 = outermost pixel) from an
// inner edge of width `overlap`. Two ramps facing each other across an
// overlap of exactly `overlap` pixels sum to 1 at every pixel.
CELLRT_HOST_DEVICE inline float taper_ramp(int d, int overlap, int mode) {
  float t = (static_cast<float>(d) + 0.5f) / static_cast<float>(overlap);
  if (mode == kBlendCosine) return 0.5f - 0.5f * cosf(3.14159265358979f * t);
  return t;
}

// 1-D blend window at position i of a tile side of length len. taper_lo /
// taper_hi say whether the low / high end of the side lies inside the image
// (has a neighbour) and so may be tapered.
CELLRT_HOST_DEVICE inline float window_1d(int i, int len, bool taper_lo, bool taper_hi,
                                          int mode, int overlap, float sigma_scale) {
  float w = 1.0f;
  if (mode == kBlendLinear || mode == kBlendCosine) {
    if (overlap <= 0) return 1.0f;
    const int d_lo = i, d_hi = len - 1 - i;
    if (taper_lo && d_lo < overlap) w *= taper_ramp(d_lo, overlap, mode);
    if (taper_hi && d_hi < overlap) w *= taper_ramp(d_hi, overlap, mode);
  } else if (mode == kBlendGaussian) {
    const float centre = 0.5f * static_cast<float>(len - 1);
    const float pos = static_cast<float>(i);
    const bool flat = (pos < centre && !taper_lo) || (pos > centre && !taper_hi);
    if (!flat) {
      const float sigma = sigma_scale * static_cast<float>(len);
      const float d = pos - centre;
      w = expf(-(d * d) / (2.0f * sigma * sigma));
    }
  }
  return w < kMinWindow ? kMinWindow : w;
}

// Squared distance, in half pixels, from position p to the centre of a tile
// side [origin, origin+len): integers, so "nearest centre" has exact ties.
CELLRT_HOST_DEVICE inline int64_t centre_distance2(int64_t p, int64_t origin, int64_t len) {
  const int64_t d = 2 * p - (2 * origin + len - 1);
  return d * d;
}

// Where exactly one tile covers a pixel its value passes through unchanged:
// weight 1 (v * 1 / 1 == v), instead of w * v / w, which can be off by an ulp.
constexpr float kSingleTileWeight = 1.0f;

// The weight of tile pixel (i, j) is the product of its 1-D windows.
CELLRT_HOST_DEVICE inline float tile_weight(float window_y, float window_x) { return window_y * window_x; }

// sum += weight * value, rounded as two separate operations on every
// backend: nvcc would otherwise fuse it into an FMA and the CPU and CUDA
// results would differ in the last bit. (CPU sources build with
// -ffp-contract=off for the same reason.) The denominator accumulates
// through the same call with value 1.
CELLRT_HOST_DEVICE inline void accumulate(float& sum, float value, float weight) {
#if CELLRT_DEVICE_PASS
  sum = __fadd_rn(sum, __fmul_rn(weight, value));
#else
  sum += weight * value;
#endif
}

// Weighted mean with an explicit zero-denominator guard (uncovered pixel).
// Written as two selects around an unconditional division so the host
// compiler vectorises it (a conditional division is not speculated).
CELLRT_HOST_DEVICE inline float finalize(float num, float den, float fill_value) {
  const bool covered = den > 0.0f;
  const float q = num / (covered ? den : 1.0f);
  return covered ? q : fill_value;
}

CELLRT_HOST_DEVICE inline bool is_finite_value(float v) {
  return (float_bits(v) & 0x7f800000u) != 0x7f800000u;
}

CELLRT_HOST_DEVICE inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// In-place softmax over n channel values, max-subtracted so large logits
// cannot overflow.
CELLRT_HOST_DEVICE inline void softmax_inplace(float* v, int n) {
  float m = v[0];
  for (int c = 1; c < n; ++c) m = v[c] > m ? v[c] : m;
  float sum = 0.0f;
  for (int c = 0; c < n; ++c) {
    v[c] = expf(v[c] - m);
    sum += v[c];
  }
  const float inv = 1.0f / sum;
  for (int c = 0; c < n; ++c) v[c] *= inv;
}

// Index of the largest value; first on ties; the first NaN wins (numpy).
CELLRT_HOST_DEVICE inline int32_t argmax(const float* v, int n) {
  int32_t best = 0;
  for (int c = 0; c < n; ++c) {
    if (v[c] != v[c]) return c;
    if (v[c] > v[best]) best = c;
  }
  return best;
}

// The tiler's per-pixel transform: normalise, then cast to the tile type.
template <typename Out>
CELLRT_HOST_DEVICE inline Out normalise_pixel(float v, float scale, float offset) {
  return from_float<Out>((v - offset) * scale);
}

}  // namespace cellrt::detail
