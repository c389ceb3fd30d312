// tile_origins: the tile grid, one definition for C++, the C ABI and Python
// (cellrt.kernels.tile_origins calls it when the extension is present; its
// numpy twin there is the reference the tests hold it to).
#include <limits>
#include <stdexcept>

#include "cellrt/tile.h"
#include "core/check.h"

namespace cellrt {

namespace {

int64_t axis_count(int64_t length, int64_t tile, int64_t overlap) {
  if (length <= tile) return 1;
  // ceil((length - tile) / stride) + 1, written so it cannot overflow near
  // INT64_MAX: length - tile >= 1 here.
  const int64_t stride = tile - overlap;
  return (length - tile - 1) / stride + 2;
}

int64_t axis_origin(int64_t index, int64_t length, int64_t tile, int64_t overlap) {
  if (length <= tile) return 0;
  // index * stride < length: index <= ceil((length - tile) / stride).
  const int64_t position = index * (tile - overlap);
  return position < length - tile ? position : length - tile;
}

}  // namespace

int64_t tile_origins(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap_y,
                     int64_t overlap_x, int64_t* origins, int64_t capacity) {
  CELLRT_CHECK(height >= 1 && width >= 1, "tile_origins: height and width should be >= 1, got ", height, " x ",
               width);
  CELLRT_CHECK(tile_h >= 1 && tile_w >= 1, "tile_origins: tile_h and tile_w should be >= 1, got ", tile_h, " x ",
               tile_w);
  CELLRT_CHECK(overlap_y >= 0 && overlap_y < tile_h, "tile_origins: overlap_y should be in [0, tile_h) = [0, ",
               tile_h, "), got ", overlap_y);
  CELLRT_CHECK(overlap_x >= 0 && overlap_x < tile_w, "tile_origins: overlap_x should be in [0, tile_w) = [0, ",
               tile_w, "), got ", overlap_x);
  const int64_t rows = axis_count(height, tile_h, overlap_y), columns = axis_count(width, tile_w, overlap_x);
  CELLRT_CHECK(rows <= std::numeric_limits<int64_t>::max() / 2 / columns, "tile_origins: a grid of ", rows, " x ",
               columns, " tiles is too large to address");
  const int64_t count = rows * columns;
  if (origins == nullptr) return count;
  if (capacity < 2 * count)
    throw std::out_of_range(detail::concat("tile_origins: origins should hold 2 x ", count, " = ", 2 * count,
                                           " values for the ", rows, " x ", columns, " grid, got room for ",
                                           capacity));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t y = axis_origin(r, height, tile_h, overlap_y);
    for (int64_t c = 0; c < columns; ++c) {
      origins[2 * (r * columns + c)] = y;
      origins[2 * (r * columns + c) + 1] = axis_origin(c, width, tile_w, overlap_x);
    }
  }
  return count;
}

}  // namespace cellrt
