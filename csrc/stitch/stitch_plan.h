// Host-side preparation shared by the CPU and CUDA stitchers: the blend
// window tables and a decomposition of the image into cells over which the
// set of covering tiles is constant.
//
// Cells come from cutting the image at every tile edge. Inside one cell the
// covering tiles never change, so the CPU backend processes each output row
// as a few spans with branch-free inner loops, and the CUDA backend finds a
// pixel's tiles with two table lookups instead of testing every tile.
#pragma once

#include <cstdint>
#include <vector>

#include "cellrt/stitch.h"
#include "cellrt/tile.h"

namespace cellrt::detail {

struct StitchPlan {
  int64_t num_tiles = 0;
  int32_t channels = 0, tile_h = 0, tile_w = 0, height = 0, width = 0;
  std::vector<int32_t> origin_y, origin_x;  // [N]
  std::vector<float> window_y;              // [N * tile_h]
  std::vector<float> window_x;              // [N * tile_w]
  std::vector<int32_t> y_bounds, x_bounds;  // cell edges, from 0 to height / width
  std::vector<int32_t> row_cell;            // [height] -> cell row
  std::vector<int32_t> col_cell;            // [width]  -> cell column
  std::vector<int32_t> cell_start;          // CSR offsets, [cells + 1]
  std::vector<int32_t> cell_tiles;          // tile indices, ascending per cell
  int64_t max_span = 0;                     // widest cell column, in pixels

  int64_t cell_columns() const { return static_cast<int64_t>(x_bounds.size()) - 1; }
};

StitchPlan make_stitch_plan(const int64_t* origins, int64_t num_tiles, int32_t channels,
                            int32_t tile_h, int32_t tile_w, int32_t height, int32_t width,
                            const StitchOptions& options);

// Backends. Arguments were validated by cellrt::stitch / cellrt::tile.
StitchResult stitch_cpu(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                        const StitchOptions& options);
StitchResult stitch_cuda(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                         const StitchOptions& options, void* stream);

struct TileArgs {
  int64_t num_tiles = 0;
  int32_t channels = 0, height = 0, width = 0, tile_h = 0, tile_w = 0;
  std::vector<int32_t> origin_y, origin_x;
  std::vector<float> scale, offset;  // [C]
};

TileResult tile_cpu(const TensorView& image, const TileArgs& args, const TensorView& tiles,
                    int32_t num_threads);
TileResult tile_cuda(const TensorView& image, const TileArgs& args, const TensorView& tiles,
                     void* stream);

}  // namespace cellrt::detail
