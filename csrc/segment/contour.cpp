// contours: validation, first pixel of every object, then parallel border
// following over objects (each trace only reads the label image).
#include "cellrt/contour.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "segment/contour_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt {

namespace {

void check_contour_input(const char* op, const TensorView& labels, int64_t num_objects) {
  detail::check_view(op, "labels", labels, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, op, ": labels should be int32, got ", dtype_name(labels.dtype));
  CELLRT_CHECK(labels.device == Device::kCPU, op, ": only host arrays are supported so far");
  detail::check_int32_sides(op, "labels", labels);   // and the points' coordinates
  CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31), op, ": num_objects should be in [0, 2^31), got ",
               num_objects);
}

struct Box {
  int32_t y0, y1, x0, x1;  // inclusive; y0 > y1 when the label does not occur
};

std::vector<Box> bounding_boxes(const int32_t* lab, int32_t height, int32_t width, int64_t num_objects, int threads) {
  const int strips = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, height)));
  const Box empty{height, -1, width, -1};
  std::vector<std::vector<Box>> strip_boxes(strips);
  detail::parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      std::vector<Box>& boxes = strip_boxes[s];
      boxes.assign(num_objects + 1, empty);
      for (int32_t y = static_cast<int32_t>(int64_t{height} * s / strips);
           y < static_cast<int32_t>(int64_t{height} * (s + 1) / strips); ++y) {
        const int32_t* row = lab + int64_t{y} * width;
        for (int32_t x = 0; x < width; ++x) {
          const int32_t l = row[x];
          if (l <= 0 || l > num_objects) continue;
          Box& b = boxes[l];
          b.y0 = std::min(b.y0, y);
          b.y1 = y;
          b.x0 = std::min(b.x0, x);
          b.x1 = std::max(b.x1, x);
        }
      }
    }
  });
  std::vector<Box>& boxes = strip_boxes[0];
  for (int s = 1; s < strips; ++s)
    for (int64_t l = 1; l <= num_objects; ++l) {
      const Box& o = strip_boxes[s][l];
      if (o.y1 < 0) continue;
      Box& b = boxes[l];
      b = Box{std::min(b.y0, o.y0), std::max(b.y1, o.y1), std::min(b.x0, o.x0), std::max(b.x1, o.x1)};
    }
  return std::move(boxes);
}

}  // namespace

HoleContours hole_contours(const TensorView& labels, int64_t num_objects, const ContourOptions& options,
                           void* stream) {
  if (labels.device == Device::kCUDA) {
    detail::check_view("hole_contours", "labels", labels, 2, "(H, W)", true);
    CELLRT_CHECK(labels.dtype == DType::kInt32, "hole_contours: labels should be int32, got ",
                 dtype_name(labels.dtype));
    CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31),
                 "hole_contours: num_objects should be in [0, 2^31), got ", num_objects);
    CELLRT_CHECK(labels.shape[0] * labels.shape[1] < (int64_t{1} << 31),
                 "hole_contours: device label images should have fewer than 2^31 pixels");
#if CELLRT_WITH_CUDA
    return detail::hole_contours_cuda(static_cast<const int32_t*>(labels.data), static_cast<int32_t>(labels.shape[0]),
                                      static_cast<int32_t>(labels.shape[1]), num_objects, stream);
#else
    (void)stream;
    throw NotCompiledError("hole_contours: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  check_contour_input("hole_contours", labels, num_objects);
  const int32_t height = static_cast<int32_t>(labels.shape[0]), width = static_cast<int32_t>(labels.shape[1]);
  CELLRT_CHECK(int64_t{height} * width < (int64_t{1} << 31), "hole_contours: images of 2^31 pixels or more are not "
               "supported, got ", height, " x ", width);
  const auto* lab = static_cast<const int32_t*>(labels.data);
  const int threads = detail::resolve_threads(options.num_threads);
  const std::vector<Box> boxes = bounding_boxes(lab, height, width, num_objects, threads);
  std::vector<std::vector<int32_t>> object_points(num_objects + 1);
  std::vector<std::vector<int64_t>> hole_sizes(num_objects + 1);
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, num_objects)));
  detail::parallel_for(num_objects, workers, [&](int64_t l0, int64_t l1) {
    std::vector<uint8_t> state;
    std::vector<int32_t> stack;
    std::vector<std::pair<int32_t, int32_t>> starts;
    for (int64_t l = l0 + 1; l <= l1; ++l) {
      const Box& b = boxes[l];
      if (b.y1 < 0) continue;
      const size_t area = static_cast<size_t>(b.y1 - b.y0 + 1) * static_cast<size_t>(b.x1 - b.x0 + 1);
      state.resize(area);
      stack.resize(area);
      starts.clear();
      detail::find_holes(lab, width, static_cast<int32_t>(l), b.y0, b.y1, b.x0, b.x1, state.data(), stack.data(),
                         [&](int32_t hy, int32_t hx) { starts.emplace_back(hy, hx); });
      std::vector<int32_t>& out = object_points[l];
      for (const auto& [hy, hx] : starts) {
        const detail::BorderTrace t = detail::trace_hole_border(lab, height, width, static_cast<int32_t>(l), hy, hx,
                                                                [&](int32_t x, int32_t y) {
                                                                  out.push_back(x);
                                                                  out.push_back(y);
                                                                });
        hole_sizes[l].push_back(t.points);
      }
    }
  });
  HoleContours result;
  result.object_offsets.assign(num_objects + 1, 0);
  result.point_offsets.assign(1, 0);
  for (int64_t l = 1; l <= num_objects; ++l) {
    result.object_offsets[l] = result.object_offsets[l - 1] + static_cast<int64_t>(hole_sizes[l].size());
    for (const int64_t n : hole_sizes[l]) result.point_offsets.push_back(result.point_offsets.back() + n);
    result.points.insert(result.points.end(), object_points[l].begin(), object_points[l].end());
  }
  return result;
}

int64_t contours(const TensorView& labels, int64_t num_objects, int64_t* offsets, int32_t* points,
                 double* perimeter, const ContourOptions& options, void* stream) {
  detail::check_view("contours", "labels", labels, 2, "(H, W)", true);
  if (labels.device == Device::kCUDA) {
    CELLRT_CHECK(labels.dtype == DType::kInt32, "contours: labels should be int32, got ", dtype_name(labels.dtype));
    CELLRT_CHECK(num_objects >= 0 && num_objects < (int64_t{1} << 31),
                 "contours: num_objects should be in [0, 2^31), got ", num_objects);
    CELLRT_CHECK(offsets != nullptr, "contours: offsets should not be null");
    CELLRT_CHECK(labels.shape[0] * labels.shape[1] < (int64_t{1} << 31),
                 "contours: device label images should have fewer than 2^31 pixels");
#if CELLRT_WITH_CUDA
    return detail::contours_cuda(static_cast<const int32_t*>(labels.data), static_cast<int32_t>(labels.shape[0]),
                                 static_cast<int32_t>(labels.shape[1]), num_objects, offsets, points, perimeter,
                                 stream);
#else
    (void)stream;
    throw NotCompiledError("contours: cellrt was built without CUDA support; pass host arrays");
#endif
  }
  check_contour_input("contours", labels, num_objects);
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
