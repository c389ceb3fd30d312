// contours: validation, first pixel of every object, then parallel border
// following over objects (each trace only reads the label image).
#include "cellrt/contour.h"

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "segment/contour_kernel.h"

namespace cellrt {

int64_t contours(const TensorView& labels, int64_t num_objects, int64_t* offsets, int32_t* points,
                 double* perimeter, const ContourOptions& options) {
  detail::check_view("contours", "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, "contours: labels should be int32, got ", dtype_name(labels.dtype));
  CELLRT_CHECK(labels.device == Device::kCPU, "contours: only host arrays are supported so far");
  CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31), "contours: num_objects should be in [0, 2^31), got ",
               num_objects);
  CELLRT_CHECK(offsets != nullptr, "contours: offsets should not be null");
  const int32_t height = static_cast<int32_t>(labels.shape[0]), width = static_cast<int32_t>(labels.shape[1]);
  const auto* lab = static_cast<const int32_t*>(labels.data);

  // First pixel of every object: strips scanned in parallel, the earliest
  // strip that has the object wins.
  const int strips = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(options.num_threads), height)));
  std::vector<std::vector<int64_t>> strip_first(strips);
  detail::parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      std::vector<int64_t>& f = strip_first[s];
      f.assign(num_objects + 1, -1);
      const int64_t begin = int64_t{height} * s / strips * width, end = int64_t{height} * (s + 1) / strips * width;
      for (int64_t p = begin; p < end; ++p) {
        const int32_t l = lab[p];
        if (l > 0 && l <= num_objects && f[l] < 0) f[l] = p;
      }
    }
  });
  std::vector<int64_t>& first = strip_first[0];
  for (int s = 1; s < strips; ++s)
    for (int64_t l = 1; l <= num_objects; ++l)
      if (first[l] < 0) first[l] = strip_first[s][l];
  std::vector<int64_t> counts(num_objects + 1, 0);
  const int workers = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(detail::resolve_threads(options.num_threads), num_objects)));
  // Pass 1: point counts (and perimeters); pass 2, if asked: the points.
  detail::parallel_for(num_objects, workers, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0 + 1; l <= l1; ++l) {
      if (first[l] < 0) {
        if (perimeter) perimeter[l - 1] = 0.0;
        continue;
      }
      const detail::BorderTrace t = detail::trace_outer_border(
          lab, height, width, static_cast<int32_t>(l), static_cast<int32_t>(first[l] / width),
          static_cast<int32_t>(first[l] % width), [](int32_t, int32_t) {});
      counts[l] = t.points;
      if (perimeter) perimeter[l - 1] = t.length;
    }
  });
  offsets[0] = 0;
  for (int64_t l = 1; l <= num_objects; ++l) offsets[l] = offsets[l - 1] + counts[l];
  if (points != nullptr) {
    detail::parallel_for(num_objects, workers, [&](int64_t l0, int64_t l1) {
      for (int64_t l = l0 + 1; l <= l1; ++l) {
        if (first[l] < 0) continue;
        int32_t* out = points + 2 * offsets[l - 1];
        detail::trace_outer_border(lab, height, width, static_cast<int32_t>(l), static_cast<int32_t>(first[l] / width),
                                   static_cast<int32_t>(first[l] % width), [&](int32_t x, int32_t y) {
                                     *out++ = x;
                                     *out++ = y;
                                   });
      }
    });
  }
  return offsets[num_objects];
}

}  // namespace cellrt
