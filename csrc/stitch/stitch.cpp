// Validates stitch arguments, builds the plan and routes to a backend. The
// only file that knows about both the CPU and CUDA implementations.
#include "cellrt/stitch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/validate.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

namespace cellrt {
namespace detail {

namespace {

// Sorted, de-duplicated cut positions along one axis and, for each pixel,
// the index of the cell it falls in.
void make_axis_cells(const std::vector<int32_t>& origins, int32_t tile, int32_t extent,
                     std::vector<int32_t>& bounds, std::vector<int32_t>& cell_of) {
  bounds.assign({0, extent});
  for (int32_t o : origins) {
    bounds.push_back(o);
    bounds.push_back(std::min<int64_t>(int64_t{o} + tile, extent));
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  cell_of.assign(extent, 0);
  for (size_t j = 0; j + 1 < bounds.size(); ++j)
    std::fill(cell_of.begin() + bounds[j], cell_of.begin() + bounds[j + 1], static_cast<int32_t>(j));
}

}  // namespace

StitchPlan make_stitch_plan(const int64_t* origins, int64_t num_tiles, int32_t channels,
                            int32_t tile_h, int32_t tile_w, int32_t height, int32_t width,
                            const StitchOptions& options) {
  StitchPlan p;
  p.num_tiles = num_tiles;
  p.channels = channels;
  p.tile_h = tile_h;
  p.tile_w = tile_w;
  p.height = height;
  p.width = width;
  p.origin_y.resize(num_tiles);
  p.origin_x.resize(num_tiles);
  for (int64_t k = 0; k < num_tiles; ++k) {
    p.origin_y[k] = static_cast<int32_t>(origins[2 * k]);
    p.origin_x[k] = static_cast<int32_t>(origins[2 * k + 1]);
  }

  // A tile's windows depend only on which of its sides lie inside the image,
  // so each axis has at most four distinct windows: compute those once.
  const int mode = static_cast<int>(options.blend);
  auto axis_windows = [&](int32_t len, int32_t overlap, const std::vector<int32_t>& origin, int32_t extent,
                          std::vector<float>& table) {
    std::vector<float> variants(4 * static_cast<size_t>(len));
    for (int v = 0; v < 4; ++v)
      for (int i = 0; i < len; ++i)
        variants[v * len + i] = window_1d(i, len, v & 1, v & 2, mode, overlap, options.sigma_scale);
    table.resize(num_tiles * len);
    for (int64_t k = 0; k < num_tiles; ++k) {
      const int v = (origin[k] > 0 ? 1 : 0) | (int64_t{origin[k]} + len < extent ? 2 : 0);
      std::copy_n(variants.begin() + v * len, len, table.begin() + k * len);
    }
  };
  axis_windows(tile_h, options.overlap_y, p.origin_y, height, p.window_y);
  axis_windows(tile_w, options.overlap_x, p.origin_x, width, p.window_x);

  make_axis_cells(p.origin_y, tile_h, height, p.y_bounds, p.row_cell);
  make_axis_cells(p.origin_x, tile_w, width, p.x_bounds, p.col_cell);
  for (size_t j = 0; j + 1 < p.x_bounds.size(); ++j)
    p.max_span = std::max<int64_t>(p.max_span, p.x_bounds[j + 1] - p.x_bounds[j]);
  const int64_t ny = static_cast<int64_t>(p.y_bounds.size()) - 1;
  const int64_t nx = p.cell_columns();
  CELLRT_CHECK(ny * nx < std::numeric_limits<int32_t>::max() / 2, "stitch: origins cut the image into ",
               ny, " x ", nx, " cells; use a regular tile grid");

  // Two passes (count, fill) build the CSR lists; visiting tiles in ascending
  // order keeps every list sorted, which fixes the summation order.
  p.cell_start.assign(ny * nx + 1, 0);
  auto for_each_cell = [&](int64_t k, auto&& fn) {
    const int32_t r0 = p.row_cell[p.origin_y[k]];
    const int32_t r1 = p.row_cell[std::min<int64_t>(int64_t{p.origin_y[k]} + tile_h, height) - 1];
    const int32_t c0 = p.col_cell[p.origin_x[k]];
    const int32_t c1 = p.col_cell[std::min<int64_t>(int64_t{p.origin_x[k]} + tile_w, width) - 1];
    for (int32_t r = r0; r <= r1; ++r)
      for (int32_t c = c0; c <= c1; ++c) fn(r * nx + c);
  };
  for (int64_t k = 0; k < num_tiles; ++k) for_each_cell(k, [&](int64_t cell) { ++p.cell_start[cell + 1]; });
  for (int64_t i = 0; i < ny * nx; ++i) p.cell_start[i + 1] += p.cell_start[i];
  p.cell_tiles.resize(p.cell_start.back());
  std::vector<int32_t> fill(p.cell_start.begin(), p.cell_start.end() - 1);
  for (int64_t k = 0; k < num_tiles; ++k)
    for_each_cell(k, [&](int64_t cell) { p.cell_tiles[fill[cell]++] = static_cast<int32_t>(k); });
  return p;
}

}  // namespace detail

StitchResult stitch(const TensorView& tiles, const int64_t* origins, const TensorView& out,
                    const StitchOptions& options, void* stream) {
  using detail::check_view;
  check_view("stitch", "tiles", tiles, 4, "(N, C, tile_h, tile_w)", true);
  CELLRT_CHECK(tiles.dtype == DType::kFloat32 || tiles.dtype == DType::kFloat16,
               "stitch: tiles should be float32 or float16, got ", dtype_name(tiles.dtype));
  const int64_t n = tiles.shape[0], c = tiles.shape[1], th = tiles.shape[2], tw = tiles.shape[3];
  CELLRT_CHECK(c > 0 && th > 0 && tw > 0, "stitch: tiles should have non-empty C, tile_h and tile_w, got ",
               detail::shape_string(tiles));

  if (options.argmax) {
    check_view("stitch", "out", out, 2, "(H, W) for argmax", true);
    CELLRT_CHECK(out.dtype == DType::kInt32, "stitch: out should be int32 for argmax, got ",
                 dtype_name(out.dtype));
  } else {
    check_view("stitch", "out", out, 3, "(C, H, W)", true);
    CELLRT_CHECK(out.dtype == DType::kFloat32, "stitch: out should be float32, got ", dtype_name(out.dtype));
    CELLRT_CHECK(out.shape[0] == c, "stitch: out should have ", c, " channels like tiles, got ",
                 out.shape[0]);
  }
  const int64_t h = out.shape[out.ndim - 2], w = out.shape[out.ndim - 1];
  CELLRT_CHECK(h > 0 && w > 0, "stitch: the image should be non-empty, got out shape ",
               detail::shape_string(out));
  detail::check_sides("stitch", h, w, th, tw);
  detail::check_same_device("stitch", "tiles", tiles, "out", out);
  detail::check_no_overlap("stitch", "tiles", tiles, "out", out, false);

  const int blend = static_cast<int>(options.blend);
  CELLRT_CHECK(blend >= 0 && blend <= 4, "stitch: blend should be 0..4 (constant, linear, cosine, gaussian, crop), got ",
               blend);
  const int act = static_cast<int>(options.activation);
  CELLRT_CHECK(act >= 0 && act <= 2, "stitch: activation should be 0..2 (none, sigmoid, softmax), got ", act);
  CELLRT_CHECK(options.overlap_y >= 0 && options.overlap_y < th, "stitch: overlap_y should be in [0, ", th,
               "), got ", options.overlap_y);
  CELLRT_CHECK(options.overlap_x >= 0 && options.overlap_x < tw, "stitch: overlap_x should be in [0, ", tw,
               "), got ", options.overlap_x);
  CELLRT_CHECK(options.blend != Blend::kGaussian ||
                   (std::isfinite(options.sigma_scale) && options.sigma_scale > 0.0f),
               "stitch: sigma_scale should be a positive number, got ", options.sigma_scale);
  CELLRT_CHECK((options.activation != Activation::kSoftmax && !options.argmax) ||
                   c <= detail::kMaxFusedChannels,
               "stitch: softmax and argmax take at most ", detail::kMaxFusedChannels, " channels, got ", c);
  detail::check_origins("stitch", origins, n, h, w);

  const detail::StitchPlan plan = detail::make_stitch_plan(
      origins, n, static_cast<int32_t>(c), static_cast<int32_t>(th), static_cast<int32_t>(tw),
      static_cast<int32_t>(h), static_cast<int32_t>(w), options);
  if (out.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    return detail::stitch_cuda(tiles, plan, out, options, stream);
#else
    (void)stream;
    throw NotCompiledError("stitch: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  return detail::stitch_cpu(tiles, plan, out, options);
}

}  // namespace cellrt
