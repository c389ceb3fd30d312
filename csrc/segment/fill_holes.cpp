// fill_holes: background regions that do not touch the image border become
// foreground. Union-find over the background's horizontal runs (run
// indices, not pixels: no image-sized scratch), roots touching the border
// flagged, then the remaining runs filled.
#include "cellrt/fill_holes.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "core/validate.h"
#include "segment/runs.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace {

// Runs of zeros of row y, appended to runs.
void find_background_runs(const uint8_t* mask, int32_t y, int32_t width, std::vector<detail::Run>& runs) {
  const int32_t row = y * width, row_end = row + width;
  for (int32_t p = detail::next_pixel<false>(mask, row, row_end); p < row_end;
       p = detail::next_pixel<false>(mask, p, row_end)) {
    const int32_t end = detail::next_pixel<true>(mask, p, row_end);
    runs.push_back(detail::Run{p, end});
    p = end;
  }
}

}  // namespace

void fill_holes(const TensorView& mask, const TensorView& out, int32_t connectivity, void* stream) {
  detail::check_view("fill_holes", "mask", mask, 2, "(H, W)", true);
  detail::check_view("fill_holes", "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(mask.dtype == DType::kUInt8 && out.dtype == DType::kUInt8,
               "fill_holes: mask and out should be uint8, got ", dtype_name(mask.dtype), " and ", dtype_name(out.dtype));
  detail::check_same_shape_2d("fill_holes", "mask", mask, "out", out);
  detail::check_no_overlap("fill_holes", "mask", mask, "out", out, true);
  CELLRT_CHECK(connectivity == 4 || connectivity == 8, "fill_holes: connectivity should be 4 or 8, got ", connectivity);
  detail::check_same_device("fill_holes", "mask", mask, "out", out);
  const int64_t h64 = mask.shape[0], w64 = mask.shape[1];
  CELLRT_CHECK(h64 * w64 < (int64_t{1} << 31), "fill_holes: the mask should have fewer than 2^31 pixels");
  const int32_t height = static_cast<int32_t>(h64), width = static_cast<int32_t>(w64);
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* o = static_cast<uint8_t*>(out.data);
  if (mask.device == Device::kCUDA) {
#if CELLRT_WITH_CUDA
    if (height > 0 && width > 0) detail::fill_holes_cuda(m, o, height, width, connectivity, stream);
    return;
#else
    (void)stream;
    throw NotCompiledError("fill_holes: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  if (m != o) std::memcpy(o, m, static_cast<size_t>(h64 * w64));
  if (height == 0 || width == 0) return;

  // Background connectivity is the complement of the foreground's: holes of
  // an 8-connected object are 4-connected.
  const bool background_eight = connectivity == 4;
  std::vector<detail::Run> runs;
  std::vector<int32_t> row_start(height + 1, 0);
  for (int32_t y = 0; y < height; ++y) {
    row_start[y] = static_cast<int32_t>(runs.size());
    find_background_runs(m, y, width, runs);
  }
  row_start[height] = static_cast<int32_t>(runs.size());
  std::vector<int32_t> parent(runs.size());
  std::iota(parent.begin(), parent.end(), 0);
  const detail::Run* base = runs.data();
  auto index_of = [base](const detail::Run* r) { return static_cast<int32_t>(r - base); };
  for (int32_t y = 1; y < height; ++y)
    detail::unite_rows(parent.data(), base + row_start[y - 1], base + row_start[y], base + row_start[y],
                       base + row_start[y + 1], width, background_eight, index_of);

  std::vector<uint8_t> touches(runs.size(), 0);
  for (int32_t i = 0; i < static_cast<int32_t>(runs.size()); ++i) {
    const int32_t x0 = runs[i].begin % width, y = runs[i].begin / width;
    if (y == 0 || y == height - 1 || x0 == 0 || runs[i].end - runs[i].begin + x0 == width)
      touches[detail::find_root_halving(parent.data(), i)] = 1;
  }
  for (int32_t i = 0; i < static_cast<int32_t>(runs.size()); ++i)
    if (!touches[detail::find_root_halving(parent.data(), i)])
      std::memset(o + runs[i].begin, 1, static_cast<size_t>(runs[i].end - runs[i].begin));
}

}  // namespace cellrt
