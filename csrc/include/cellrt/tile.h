// tile: extract overlapping tiles of an image into one contiguous batch,
// with fused normalisation and cast (the mirror of stitch).
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

struct TileOptions {
  // Per-channel affine normalisation applied to every pixel before the cast:
  //   tile = (pixel - offset[c]) * scale[c]
  // Host pointers to C floats each; nullptr means scale 1 / offset 0.
  const float* scale = nullptr;
  const float* offset = nullptr;
  // CPU worker threads; 0 (or less) = all hardware threads; at most 4x the
  // hardware threads and one per work item are started. Ignored on CUDA.
  int32_t num_threads = 0;
};

struct TileResult {
  // Number of non-finite values (NaN, +-inf) written into the tiles. Only
  // float images can produce them. Pixels read more than once (overlaps,
  // reflections) count once per read.
  int64_t nonfinite = 0;
};

// Copies the window [oy, oy+th) x [ox, ox+tw) of every channel of image into
// tiles[n], for each origin n. Coordinates outside the image are mirrored
// (numpy "reflect": the edge pixel is not repeated), so tiles may extend past
// the bottom/right border, e.g. when the image is smaller than a tile.
//
// Args:
//   image:   [C, H, W] uint8, uint16 or float32; any strides; CPU or CUDA.
//   origins: [N, 2] int64 (y, x) of each tile's top-left corner, host
//            memory, row-major. 0 <= y < H and 0 <= x < W.
//   tiles:   [N, C, th, tw] float32 or float16, C-contiguous, same device
//            as image; written entirely.
//   options: normalisation and threads.
//   stream:  cudaStream_t for CUDA inputs (nullptr = default stream).
//
// Returns: counts of non-finite values written. On CUDA the call waits for
// the stream to finish (the count is read back).
//
// Throws std::invalid_argument for bad shapes, dtypes, devices or origins
// (on CUDA also for tiles over 524280 rows: 65535 blocks of 8 thread rows),
// cellrt::NotCompiledError for CUDA views in a CPU-only build, and
// std::runtime_error for CUDA failures.
TileResult tile(const TensorView& image, const int64_t* origins, const TensorView& tiles,
                const TileOptions& options = TileOptions{}, void* stream = nullptr);

// The regular grid of tiles that tile() cuts and stitch() blends back, as
// Python's cellrt.kernels.tile_origins lays it out: top-left corners (y, x)
// in raster order, neighbours sharing overlap_y / overlap_x pixels (a stride
// of tile - overlap), the last tile of each row and column flush with the
// bottom / right border, and an axis no longer than its tile covered by one
// tile at 0 (tile() mirrors the image into the rest).
//
// Args:
//   height, width:        image size, >= 1.
//   tile_h, tile_w:       tile size, >= 1.
//   overlap_y, overlap_x: in [0, tile_h) and [0, tile_w).
//   origins:              nullptr to count only, or room for `capacity`
//                         int64 values (two per tile), row-major [N, 2].
//
// Returns the number of tiles N.
//
// Throws std::invalid_argument for bad sizes or overlaps, and
// std::out_of_range when origins is given and capacity < 2 N (nothing is
// written then).
int64_t tile_origins(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap_y,
                     int64_t overlap_x, int64_t* origins = nullptr, int64_t capacity = 0);

}  // namespace cellrt
