// Validates tile arguments and routes to a backend.
#include "cellrt/tile.h"

#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/validate.h"
#include "stitch/stitch_plan.h"

namespace cellrt {

TileResult tile(const TensorView& image, const int64_t* origins, const TensorView& tiles,
                const TileOptions& options, void* stream) {
  using detail::check_view;
  check_view("tile", "image", image, 3, "(C, H, W)", false);
  CELLRT_CHECK(image.dtype == DType::kUInt8 || image.dtype == DType::kUInt16 || image.dtype == DType::kFloat32,
               "tile: image should be uint8, uint16 or float32, got ", dtype_name(image.dtype));
  check_view("tile", "tiles", tiles, 4, "(N, C, tile_h, tile_w)", true);
  CELLRT_CHECK(tiles.dtype == DType::kFloat32 || tiles.dtype == DType::kFloat16,
               "tile: tiles should be float32 or float16, got ", dtype_name(tiles.dtype));
  const int64_t c = image.shape[0], h = image.shape[1], w = image.shape[2];
  const int64_t n = tiles.shape[0], th = tiles.shape[2], tw = tiles.shape[3];
  CELLRT_CHECK(c > 0 && h > 0 && w > 0, "tile: image should be non-empty, got shape ", detail::shape_string(image));
  CELLRT_CHECK(tiles.shape[1] == c, "tile: tiles should have ", c, " channels like image, got ", tiles.shape[1]);
  CELLRT_CHECK(th > 0 && tw > 0, "tile: tiles should have positive tile_h and tile_w, got ",
               detail::shape_string(tiles));
  detail::check_sides("tile", h, w, th, tw);
  detail::check_same_device("tile", "image", image, "tiles", tiles);
  detail::check_no_overlap("tile", "image", image, "tiles", tiles, false);
  detail::check_origins("tile", origins, n, h, w);

  detail::TileArgs args;
  args.num_tiles = n;
  args.channels = static_cast<int32_t>(c);
  args.height = static_cast<int32_t>(h);
  args.width = static_cast<int32_t>(w);
  args.tile_h = static_cast<int32_t>(th);
  args.tile_w = static_cast<int32_t>(tw);
  args.origin_y.resize(n);
  args.origin_x.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    args.origin_y[k] = static_cast<int32_t>(origins[2 * k]);
    args.origin_x[k] = static_cast<int32_t>(origins[2 * k + 1]);
  }
  args.scale.assign(c, 1.0f);
  args.offset.assign(c, 0.0f);
  for (int64_t i = 0; i < c; ++i) {
    if (options.scale) args.scale[i] = options.scale[i];
    if (options.offset) args.offset[i] = options.offset[i];
    CELLRT_CHECK(std::isfinite(args.scale[i]) && std::isfinite(args.offset[i]), "tile: scale and offset of channel ",
                 i, " should be finite, got ", args.scale[i], " and ", args.offset[i]);
  }
  if (n == 0) return TileResult{};

  if (image.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    return detail::tile_cuda(image, args, tiles, stream);
#else
    (void)stream;
    throw NotCompiledError("tile: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  return detail::tile_cpu(image, args, tiles, options.num_threads);
}

}  // namespace cellrt
