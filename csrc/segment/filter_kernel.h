// Per-sample arithmetic of the separable filters (gaussian_blur, box_mean),
// shared by the CPU backend (weights, borders), the CUDA backend (all of it)
// and the host reference that tests the CUDA arithmetic without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace cellrt::detail {

// Border modes, numbered as cellrt::BorderMode.
enum BorderModeCode : int32_t {
  kBorderReflect = 0,  // d c b a | a b c d | d c b a   (scipy "reflect")
  kBorderNearest = 1,  // a a a a | a b c d | d d d d
};

CELLRT_HOST_DEVICE inline int64_t border_index(int64_t i, int64_t n, int32_t mode) {
  if (i >= 0 && i < n) return i;
  if (mode == kBorderNearest) return i < 0 ? 0 : n - 1;
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Radius of a gaussian kernel truncated at `truncate` sigmas, as scipy's
// gaussian_filter rounds it.
CELLRT_HOST_DEVICE inline int32_t gaussian_radius(double sigma, double truncate) {
  return static_cast<int32_t>(truncate * sigma + 0.5);
}

// Normalised gaussian weights w[0 .. 2r] (w[r] the centre), in double so
// every backend starts from the same float32 values.
CELLRT_HOST_DEVICE inline void gaussian_weights(double sigma, int32_t radius, float* w) {
  double sum = 0.0;
  for (int32_t k = -radius; k <= radius; ++k) sum += exp(-0.5 * (k * k) / (sigma * sigma));
  for (int32_t k = -radius; k <= radius; ++k)
    w[k + radius] = static_cast<float>(exp(-0.5 * (k * k) / (sigma * sigma)) / sum);
}

// Float multiply-add without contraction: the CPU builds with
// -ffp-contract=off; device code names the rounding explicitly.
CELLRT_HOST_DEVICE inline float add_product(float sum, float weight, float value) {
#if CELLRT_DEVICE_PASS
  return __fadd_rn(sum, __fmul_rn(weight, value));
#else
  return sum + weight * value;
#endif
}

// One sample of a 1-D gaussian pass along a line of n samples `stride`
// apart: w[0] * v[i - r] + w[1] * v[i - r + 1] + ... in that order, in float
// (border-mapped indices) - the order of the CPU backend's vectorised rows,
// so the backends agree bit for bit.
CELLRT_HOST_DEVICE inline float gaussian_line_sample(const float* line, int64_t stride, int64_t n, int64_t i,
                                                     int32_t radius, const float* w, int32_t mode) {
  float acc = w[0] * line[border_index(i - radius, n, mode) * stride];
  for (int32_t k = 1; k <= 2 * radius; ++k)
    acc = add_product(acc, w[k], line[border_index(i - radius + k, n, mode) * stride]);
  return acc;
}

// Window sums along a line (window [i - before, i - before + size), border-
// mapped), in double, updated in O(1) per sample; emit(i, sum) for each i.
// Rows (`leave_first` false) add the entering-minus-leaving difference, the
// column pass subtracts the leaving row then adds the entering one: the two
// update orders of the CPU backend.
template <typename In, typename Emit>
CELLRT_HOST_DEVICE inline void box_line_sums(const In* line, int64_t stride, int64_t n, int32_t before, int32_t size,
                                             int32_t mode, bool leave_first, Emit&& emit) {
  double sum = 0.0;
  for (int32_t k = 0; k < size; ++k) sum += static_cast<double>(line[border_index(k - before, n, mode) * stride]);
  emit(int64_t{0}, sum);
  for (int64_t i = 1; i < n; ++i) {
    const double entering = static_cast<double>(line[border_index(i - before + size - 1, n, mode) * stride]);
    const double leaving = static_cast<double>(line[border_index(i - 1 - before, n, mode) * stride]);
    if (leave_first) {
      sum -= leaving;
      sum += entering;
    } else {
      sum += entering - leaving;
    }
    emit(i, sum);
  }
}

// Recursive (IIR) gaussian: the kernel approximated by two pairs of complex
// poles, h[k] = sum_p Re(alpha_p * pole_p^|k|), run as a causal pass (k >= 0)
// plus an anticausal one (k >= 1), each starting `warmup` samples outside
// the line (border-mapped) from a zero state, so its cost per sample does
// not grow with sigma. Coefficients: recursive_gaussian_coefficients().
// The state is double: in float32 the rounding of the running sums grows
// like 1 / (1 - |pole|) ~ sigma / 1.7 (a flat image moved by 6e-6 at sigma
// 66, 1e-4 at 1000); double keeps any sigma within 1 ulp of a flat input,
// for ~1.3x the time of float lanes on the CPU.
struct RecursiveGaussianCoefficients {
  double pole_re[2], pole_im[2];
  double causal_re[2], causal_im[2];          // alpha_p, the gain normalised to 1
  double anticausal_re[2], anticausal_im[2];  // alpha_p * pole_p: the anticausal pass starts at k = 1
  int64_t warmup = 0;
};

// Multiply / add rounded as written (no FMA contraction) on every
// backend, so the CUDA passes equal the CPU ones bit for bit.
CELLRT_HOST_DEVICE inline double mul_rn(double a, double b) {
#if CELLRT_DEVICE_PASS
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CELLRT_HOST_DEVICE inline double add_rn(double a, double b) {
#if CELLRT_DEVICE_PASS
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// state = pole * state + x (complex state, real input).
CELLRT_HOST_DEVICE inline void pole_update(double& re, double& im, double pole_re, double pole_im, double x) {
  const double next_re = add_rn(add_rn(mul_rn(pole_re, re), -mul_rn(pole_im, im)), x);
  im = add_rn(mul_rn(pole_re, im), mul_rn(pole_im, re));
  re = next_re;
}

// Re(coefficient * state).
CELLRT_HOST_DEVICE inline double pole_output(double re, double im, double coef_re, double coef_im) {
  return add_rn(mul_rn(coef_re, re), -mul_rn(coef_im, im));
}

// `lanes` (<= Lanes) lines side by side: sample i of line l at
// in[i * step + l], out likewise; the causal part is stored as float, the
// anticausal part added to it. The CUDA passes run one line (Lanes = 1, a
// column with step = width or a row with step = 1); the CPU runs 32
// interleaved lines so the lane loops vectorise - the same operations in
// the same order per line, so the same bits.
template <int Lanes>
CELLRT_HOST_DEVICE inline void recursive_gaussian_lines(const float* in, int64_t step, int64_t n, float* out,
                                                        int64_t out_step, int32_t lanes,
                                                        const RecursiveGaussianCoefficients& coefficients,
                                                        int32_t mode) {
  const RecursiveGaussianCoefficients c = coefficients;  // a local copy: provably not aliased by the stores
  double re0[Lanes], im0[Lanes], re1[Lanes], im1[Lanes];
  for (int32_t l = 0; l < lanes; ++l) re0[l] = im0[l] = re1[l] = im1[l] = 0.0;
  for (int64_t i = -c.warmup; i < n; ++i) {
    const float* x = in + border_index(i, n, mode) * step;
    for (int32_t l = 0; l < lanes; ++l) {
      const double v = x[l];
      pole_update(re0[l], im0[l], c.pole_re[0], c.pole_im[0], v);
      pole_update(re1[l], im1[l], c.pole_re[1], c.pole_im[1], v);
    }
    if (i < 0) continue;
    float* o = out + i * out_step;
    for (int32_t l = 0; l < lanes; ++l)
      o[l] = static_cast<float>(add_rn(pole_output(re0[l], im0[l], c.causal_re[0], c.causal_im[0]),
                                       pole_output(re1[l], im1[l], c.causal_re[1], c.causal_im[1])));
  }
  for (int32_t l = 0; l < lanes; ++l) re0[l] = im0[l] = re1[l] = im1[l] = 0.0;
  for (int64_t i = n - 1 + c.warmup; i >= 0; --i) {
    if (i < n) {
      float* o = out + i * out_step;
      for (int32_t l = 0; l < lanes; ++l) {
        const double anticausal = add_rn(pole_output(re0[l], im0[l], c.anticausal_re[0], c.anticausal_im[0]),
                                         pole_output(re1[l], im1[l], c.anticausal_re[1], c.anticausal_im[1]));
        o[l] = static_cast<float>(add_rn(static_cast<double>(o[l]), anticausal));
      }
    }
    const float* x = in + border_index(i, n, mode) * step;
    for (int32_t l = 0; l < lanes; ++l) {
      const double v = x[l];
      pole_update(re0[l], im0[l], c.pole_re[0], c.pole_im[0], v);
      pole_update(re1[l], im1[l], c.pole_re[1], c.pole_im[1], v);
    }
  }
}

}  // namespace cellrt::detail
