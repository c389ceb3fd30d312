// binary_morphology: validation, footprint half-widths, then the CPU backend
// (row clearances in parallel over row blocks, then the per-pixel test) or
// the CUDA one.
#include "cellrt/morphology.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "segment/morphology_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace detail {

namespace {

// Footprints up to this radius take the level-by-level clearance below.
constexpr int32_t kLevelClearanceMaxRadius = 32;

// The values of row_clearance() (morphology_kernel.h) computed level by
// level, vectorisable: e_k[x] = e_{k-1}[x-1] & e_{k-1}[x] & e_{k-1}[x+1] says the run
// through x reaches k pixels to both sides, and the clearance counts the
// levels that hold. `e` and `next` have width + 2 bytes (a guard each side:
// outside the row is foreground).
void row_clearance_by_levels(const uint8_t* __restrict row, int32_t width, bool invert, int16_t cap,
                             int16_t* __restrict clearance, uint8_t* __restrict e, uint8_t* __restrict next,
                             uint8_t* __restrict count) {
  // Separate restrict-qualified byte buffers: uint8_t may alias anything, and
  // without the promise none of these loops vectorises.
  const uint8_t on = invert ? 0 : 1;
  e[0] = e[width + 1] = next[0] = next[width + 1] = 1;
  for (int32_t x = 0; x < width; ++x) {
    const uint8_t v = static_cast<uint8_t>((row[x] != 0) == (on != 0));
    e[x + 1] = v;
    count[x] = v;
  }
  for (int16_t level = 1; level <= cap; ++level) {
    for (int32_t x = 0; x < width; ++x) {
      const uint8_t v = e[x] & e[x + 1] & e[x + 2];
      next[x + 1] = v;
      count[x] = static_cast<uint8_t>(count[x] + v);
    }
    uint8_t* swap = e;
    e = next;
    next = swap;
  }
  for (int32_t x = 0; x < width; ++x) clearance[x] = static_cast<int16_t>(count[x] - 1);
}

// survives_erosion() (morphology_kernel.h) for a whole output row: one
// compare per footprint row and pixel, vectorised over x (the CUDA kernel
// calls it per pixel). Value parameters only: nothing a byte store could alias.
void erode_row(const int16_t* __restrict clearance, uint8_t* __restrict row, int32_t height, int32_t width, int32_t y,
               int32_t radius, const int16_t* __restrict half_widths, uint8_t flip) {
  for (int32_t x = 0; x < width; ++x) row[x] = 1;
  const int32_t top = std::max(-radius, -y), bottom = std::min(radius, height - 1 - y);
  for (int32_t dy = top; dy <= bottom; ++dy) {
    const int16_t* __restrict c = clearance + int64_t{y + dy} * width;
    const int16_t need = half_widths[dy + radius];
    for (int32_t x = 0; x < width; ++x) row[x] = static_cast<uint8_t>(row[x] & (c[x] >= need));
  }
  for (int32_t x = 0; x < width; ++x) row[x] = static_cast<uint8_t>(row[x] ^ flip);
}

}  // namespace

void binary_morphology_cpu(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t radius,
                           bool dilate, const int16_t* half_widths, int32_t num_threads) {
  std::vector<int16_t> clearance(static_cast<size_t>(height) * width);
  const int16_t cap = static_cast<int16_t>(radius);
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), height)));
  int16_t* c_out = clearance.data();
  parallel_for(height, workers, [=](int64_t y0, int64_t y1) {
    const size_t stride = radius <= kLevelClearanceMaxRadius ? static_cast<size_t>(width) + 2 : 0;
    std::vector<uint8_t> scratch(3 * stride);
    for (int64_t y = y0; y < y1; ++y) {
      if (radius <= kLevelClearanceMaxRadius)
        row_clearance_by_levels(mask + y * width, width, dilate, cap, c_out + y * width, scratch.data(),
                                scratch.data() + stride, scratch.data() + 2 * stride);
      else
        row_clearance(mask + y * width, width, dilate, cap, c_out + y * width);
    }
  });
  const uint8_t flip = dilate ? 1 : 0;
  const int16_t* c = clearance.data();
  parallel_for(height, workers, [=](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y)
      erode_row(c, out + y * width, height, width, static_cast<int32_t>(y), radius, half_widths, flip);
  });
}

}  // namespace detail

void binary_morphology(const TensorView& mask, const TensorView& out, int32_t radius, bool dilate,
                       const MorphologyOptions& options, void* stream) {
  const char* op = dilate ? "binary_dilation" : "binary_erosion";
  detail::check_view(op, "mask", mask, 2, "(H, W)", true);
  detail::check_view(op, "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(mask.dtype == DType::kUInt8 && out.dtype == DType::kUInt8, op, ": mask and out should be uint8, got ",
               dtype_name(mask.dtype), " and ", dtype_name(out.dtype));
  detail::check_same_shape_2d(op, "mask", mask, "out", out);
  CELLRT_CHECK(radius >= 0 && radius < 32767, op, ": radius should be in [0, 32767), got ", radius);
  CELLRT_CHECK(options.footprint == Footprint::kSquare || options.footprint == Footprint::kDisk, op,
               ": footprint should be kSquare or kDisk, got ", static_cast<int32_t>(options.footprint));
  detail::check_no_overlap(op, "mask", mask, "out", out, false);
  detail::check_same_device(op, "mask", mask, "out", out);
  const int64_t h = mask.shape[0], w = mask.shape[1];
  CELLRT_CHECK(h * w < (int64_t{1} << 31), op, ": the mask should have fewer than 2^31 pixels, got ", h, " x ", w);
  if (h == 0 || w == 0) return;
  std::vector<int16_t> half_widths(2 * static_cast<size_t>(radius) + 1);
  for (int32_t dy = -radius; dy <= radius; ++dy)
    half_widths[dy + radius] = static_cast<int16_t>(
        detail::footprint_half_width(static_cast<int32_t>(options.footprint), radius, dy));
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* o = static_cast<uint8_t*>(out.data);
  if (mask.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    detail::binary_morphology_cuda(m, o, static_cast<int32_t>(h), static_cast<int32_t>(w), radius, dilate,
                                   half_widths.data(), stream);
    return;
#else
    (void)stream;
    throw NotCompiledError(std::string(op) + ": cellrt was built without CUDA support; pass host arrays");
#endif
  }
  detail::binary_morphology_cpu(m, o, static_cast<int32_t>(h), static_cast<int32_t>(w), radius, dilate,
                                half_widths.data(), options.num_threads);
}

}  // namespace cellrt
