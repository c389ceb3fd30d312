// CPU tiler. Work partition: threads take disjoint blocks of tile rows
// (tile, channel, row). The part of a row that lies inside the image is a
// contiguous run of source pixels; only the mirrored remainder needs index
// arithmetic. Rows are staged in a small buffer and streamed to the tiles
// with non-temporal stores (core/host_memory.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/half.h"
#include "core/host_memory.h"
#include "core/parallel.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

namespace cellrt::detail {

namespace {

// Consecutive tile rows read image rows a full image row apart, a new page
// each time, which the hardware prefetchers do not follow: the run a few
// rows on is requested explicitly.
constexpr int32_t kPrefetchRows = 4;

// Values that are NaN or infinite once stored as Out, so float16 overflow
// of an unnormalised 16-bit image is reported too: a float rounds to a
// float16 infinity from 65520 up. Counted on the staging row, in cache,
// with a compare that vectorises (NaN compares false).
inline int32_t count_nonfinite(const float* row, const float*, int64_t n) {
  int32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::fabs(row[i]) <= std::numeric_limits<float>::max() ? 0 : 1;
  return bad;
}

inline int32_t count_nonfinite(const float* row, const Half*, int64_t n) {
  int32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::fabs(row[i]) < 65520.0f ? 0 : 1;
  return bad;
}

// Asks for the source run of a later row ahead of time: consecutive tile
// rows read image rows a full image row apart, a new page each time, which
// the hardware prefetchers do not follow.

template <typename In, typename Out>
TileResult run(const TensorView& image, const TileArgs& a, const TensorView& tiles, int32_t num_threads) {
  const In* src = static_cast<const In*>(image.data);
  Out* dst = static_cast<Out*>(tiles.data);
  const int64_t sc = image.strides[0], sy = image.strides[1], sx = image.strides[2];
  const int64_t rows = a.num_tiles * a.channels * a.tile_h;
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), rows));
  std::vector<int64_t> bad(workers, 0);
  parallel_for(workers, workers, [&](int64_t wb, int64_t we) {
    std::vector<float> buffer(a.tile_w);
    for (int64_t wi = wb; wi < we; ++wi) {
      const int64_t r0 = rows * wi / workers, r1 = rows * (wi + 1) / workers;
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t k = row / (int64_t{a.channels} * a.tile_h);
        const int32_t c = static_cast<int32_t>((row / a.tile_h) % a.channels);
        const int32_t ty = static_cast<int32_t>(row % a.tile_h);
        const int64_t y = reflect_index(int64_t{a.origin_y[k]} + ty, a.height);
        const In* line = src + c * sc + y * sy;
        const float scale = a.scale[c], offset = a.offset[c];
        const int64_t ox = a.origin_x[k];
        const int64_t inside = std::min<int64_t>(a.tile_w, a.width - ox);
        if (sx == 1 && ty + kPrefetchRows < a.tile_h) {
          const int64_t ahead = reflect_index(int64_t{a.origin_y[k]} + ty + kPrefetchRows, a.height);
          prefetch_run(src + c * sc + ahead * sy + ox, inside);
        }
        float* buf = buffer.data();
        if (sx == 1) {
          const In* run_start = line + ox;
          for (int64_t i = 0; i < inside; ++i)
            buf[i] = normalise_pixel<float>(to_float(run_start[i]), scale, offset);
        } else {
          for (int64_t i = 0; i < inside; ++i)
            buf[i] = normalise_pixel<float>(to_float(line[(ox + i) * sx]), scale, offset);
        }
        for (int64_t i = inside; i < a.tile_w; ++i)
          buf[i] = normalise_pixel<float>(to_float(line[reflect_index(ox + i, a.width) * sx]), scale, offset);
        bad[wi] += count_nonfinite(buf, dst, a.tile_w);
        stream_copy(dst + row * a.tile_w, buf, a.tile_w);
      }
    }
    store_fence();
  });
  TileResult result;
  for (int64_t b : bad) result.nonfinite += b;
  return result;
}

template <typename In>
TileResult run_in(const TensorView& image, const TileArgs& a, const TensorView& tiles, int32_t threads) {
  if (tiles.dtype == DType::kFloat16) return run<In, Half>(image, a, tiles, threads);
  return run<In, float>(image, a, tiles, threads);
}

}  // namespace

TileResult tile_cpu(const TensorView& image, const TileArgs& args, const TensorView& tiles,
                    int32_t num_threads) {
  switch (image.dtype) {
    case DType::kUInt8: return run_in<uint8_t>(image, args, tiles, num_threads);
    case DType::kUInt16: return run_in<uint16_t>(image, args, tiles, num_threads);
    default: return run_in<float>(image, args, tiles, num_threads);
  }
}

}  // namespace cellrt::detail
