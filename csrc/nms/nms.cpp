// mask_nms: validation, candidate pairs from a spatial grid, the pairs'
// suppression tests in parallel (nms_kernel.h), then the greedy scan by
// rank - the one sequential step, over the pairs only.
#include "cellrt/nms.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "nms/nms_kernel.h"
#include "nms/nms_ops.h"

namespace cellrt {

namespace {

using detail::InstanceBox;

struct Pair {
  int32_t kept, other;  // ranks: kept < other
};

// Pairs of instances whose boxes overlap, each once: listed in the grid cell
// holding the top-left corner of the two boxes' overlap. Grid cells are about
// a typical box wide, so a box meets a handful of cells.
std::vector<Pair> candidate_pairs(const std::vector<InstanceBox>& ranked, const std::vector<int32_t>& classes_ranked,
                                  bool class_aware) {
  const int64_t n = static_cast<int64_t>(ranked.size());
  if (n < 2) return {};
  int64_t top = INT64_MAX, left = INT64_MAX, bottom = 0, right = 0, side_sum = 0;
  for (const InstanceBox& b : ranked) {
    top = std::min<int64_t>(top, b.y0);
    left = std::min<int64_t>(left, b.x0);
    bottom = std::max<int64_t>(bottom, b.y1);
    right = std::max<int64_t>(right, b.x1);
    side_sum += std::max(b.y1 - b.y0, b.x1 - b.x0);
  }
  // Cells about a typical box wide over the boxes' extent, coarser when the boxes are few and far apart
  // (a mosaic's coordinates): the grid never has more than max(2^16, 4N) cells.
  int64_t cell = std::clamp<int64_t>(side_sum / n, 8, 1024);
  const int64_t max_cells = std::max<int64_t>(int64_t{1} << 16, 4 * n);
  while (((bottom - top + cell - 1) / cell) * ((right - left + cell - 1) / cell) > max_cells) cell *= 2;
  const int64_t rows = (bottom - top + cell - 1) / cell, cols = (right - left + cell - 1) / cell;
  std::vector<int64_t> start(rows * cols + 1, 0);
  auto for_cells = [&](const InstanceBox& b, auto&& fn) {
    for (int64_t r = (b.y0 - top) / cell; r <= (b.y1 - 1 - top) / cell; ++r)
      for (int64_t c = (b.x0 - left) / cell; c <= (b.x1 - 1 - left) / cell; ++c) fn(r * cols + c);
  };
  for (const InstanceBox& b : ranked) for_cells(b, [&](int64_t g) { ++start[g + 1]; });
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int32_t> members(start.back());
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) for_cells(ranked[i], [&](int64_t g) { members[fill[g]++] = static_cast<int32_t>(i); });

  std::vector<Pair> pairs;
  for (int64_t g = 0; g < rows * cols; ++g) {
    const int64_t r = g / cols, c = g % cols;
    for (int64_t a = start[g]; a < start[g + 1]; ++a) {
      for (int64_t b = a + 1; b < start[g + 1]; ++b) {
        const int32_t i = members[a], j = members[b];  // ascending rank within a cell
        const InstanceBox &p = ranked[i], &q = ranked[j];
        if (!detail::boxes_overlap(p, q)) continue;
        if (class_aware && classes_ranked[i] != classes_ranked[j]) continue;
        if ((std::max(p.y0, q.y0) - top) / cell != r || (std::max(p.x0, q.x0) - left) / cell != c)
          continue;  // counted in the cell of the overlap's top-left corner
        pairs.push_back(Pair{i, j});
      }
    }
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const Pair& a, const Pair& b) { return a.kept != b.kept ? a.kept < b.kept : a.other < b.other; });
  return pairs;
}


// The pairs' suppression tests on the host: areas per instance, then one
// intersection per pair, both in parallel.
void evaluate_pairs_cpu(const std::vector<InstanceBox>& ranked, const std::vector<int32_t>& order,
                        const int64_t* offsets, const uint8_t* data, const std::vector<Pair>& pairs,
                        const MaskNmsOptions& options, int workers, std::vector<uint8_t>& hit) {
  const int64_t n = static_cast<int64_t>(ranked.size());
  std::vector<int64_t> area(n);
  detail::parallel_for(n, workers, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t i = order[r];
      area[r] = detail::mask_area(data + offsets[i], offsets[i + 1] - offsets[i]);
    }
  });
  detail::parallel_for(static_cast<int64_t>(pairs.size()), workers, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int32_t a = pairs[p].kept, b = pairs[p].other;
      const int64_t both = detail::mask_intersection(ranked[a], data + offsets[order[a]], ranked[b],
                                                     data + offsets[order[b]]);
      hit[p] = detail::suppresses(both, area[a], area[b], options.iou_threshold, options.ios_threshold);
    }
  });
}

}  // namespace

int64_t mask_nms(const TensorView& boxes, const TensorView& scores, const TensorView& classes,
                 const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& keep,
                 const MaskNmsOptions& options) {
  detail::check_view("mask_nms", "boxes", boxes, 2, "(N, 4)", true);
  CELLRT_CHECK(boxes.dtype == DType::kInt32 && boxes.shape[1] == 4, "mask_nms: boxes should be (N, 4) int32, got ",
               dtype_name(boxes.dtype), " ", detail::shape_string(boxes));
  const int64_t n = boxes.shape[0];
  CELLRT_CHECK(n < (int64_t{1} << 31), "mask_nms: at most 2^31 - 1 instances, got ", n);
  detail::check_view("mask_nms", "scores", scores, 1, "(N,)", true);
  CELLRT_CHECK(scores.dtype == DType::kFloat32 && scores.shape[0] == n, "mask_nms: scores should be (", n,
               ",) float32, got ", dtype_name(scores.dtype), " ", detail::shape_string(scores));
  const bool has_classes = classes.data != nullptr;
  if (has_classes) {
    detail::check_view("mask_nms", "classes", classes, 1, "(N,)", true);
    CELLRT_CHECK(classes.dtype == DType::kInt32 && classes.shape[0] == n, "mask_nms: classes should be (", n,
                 ",) int32, got ", dtype_name(classes.dtype), " ", detail::shape_string(classes));
  }
  CELLRT_CHECK(!options.class_aware || has_classes || n == 0,
               "mask_nms: class_aware needs classes (or pass class_aware = false)");
  detail::check_view("mask_nms", "mask_offsets", mask_offsets, 1, "(N + 1,)", true);
  CELLRT_CHECK(mask_offsets.dtype == DType::kInt64 && mask_offsets.shape[0] == n + 1,
               "mask_nms: mask_offsets should be (", n + 1, ",) int64, got ", dtype_name(mask_offsets.dtype), " ",
               detail::shape_string(mask_offsets));
  detail::check_view("mask_nms", "mask_data", mask_data, 1, "(M,)", true);
  CELLRT_CHECK(mask_data.dtype == DType::kUInt8, "mask_nms: mask_data should be uint8, got ",
               dtype_name(mask_data.dtype));
  detail::check_view("mask_nms", "keep", keep, 1, "(N,)", true);
  CELLRT_CHECK(keep.dtype == DType::kUInt8 && keep.shape[0] == n, "mask_nms: keep should be (", n,
               ",) uint8, got ", dtype_name(keep.dtype), " ", detail::shape_string(keep));
  const bool device = boxes.device == Device::kCUDA;
  for (const TensorView* v : {&scores, &mask_offsets, &mask_data, &keep})
    CELLRT_CHECK(v->device == boxes.device, "mask_nms: boxes, scores, masks and keep should be on one device");
  CELLRT_CHECK(!has_classes || classes.device == boxes.device, "mask_nms: classes should be on the boxes' device");
#if !CELLRT_WITH_CUDA
  if (device) throw NotCompiledError("mask_nms: cellrt was built without CUDA support; pass host arrays");
#endif
  CELLRT_CHECK(std::isfinite(options.iou_threshold) && options.iou_threshold >= 0.0f && options.iou_threshold <= 1.0f,
               "mask_nms: iou_threshold should be in [0, 1], got ", options.iou_threshold);
  CELLRT_CHECK(std::isfinite(options.ios_threshold) && options.ios_threshold >= 0.0f,
               "mask_nms: ios_threshold should be >= 0 (above 1: off), got ", options.ios_threshold);

  // The instance tables are small: on the GPU path they come to the host (the masks stay on the device).
  std::vector<int32_t> box_copy, class_copy;
  std::vector<float> score_copy;
  std::vector<int64_t> offset_copy;
  const auto* box = static_cast<const int32_t*>(boxes.data);
  const auto* score = static_cast<const float*>(scores.data);
  const auto* offsets = static_cast<const int64_t*>(mask_offsets.data);
  const auto* cls = static_cast<const int32_t*>(classes.data);
#if CELLRT_WITH_CUDA
  if (device) {
    box_copy.resize(4 * n);
    score_copy.resize(n);
    offset_copy.resize(n + 1);
    detail::copy_to_host(box_copy.data(), box, box_copy.size() * sizeof(int32_t));
    detail::copy_to_host(score_copy.data(), score, score_copy.size() * sizeof(float));
    detail::copy_to_host(offset_copy.data(), offsets, offset_copy.size() * sizeof(int64_t));
    box = box_copy.data();
    score = score_copy.data();
    offsets = offset_copy.data();
    if (has_classes) {
      class_copy.resize(n);
      detail::copy_to_host(class_copy.data(), cls, class_copy.size() * sizeof(int32_t));
      cls = class_copy.data();
    }
  }
#endif
  const auto* data = static_cast<const uint8_t*>(mask_data.data);
  CELLRT_CHECK(offsets[0] == 0, "mask_nms: mask_offsets[0] should be 0, got ", offsets[0]);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t y0 = box[4 * i], x0 = box[4 * i + 1], y1 = box[4 * i + 2], x1 = box[4 * i + 3];
    CELLRT_CHECK(y0 >= 0 && x0 >= 0 && y1 > y0 && x1 > x0, "mask_nms: box ", i, " = [", y0, ", ", x0, ", ", y1,
                 ", ", x1, ") should have 0 <= y0 < y1 and 0 <= x0 < x1");
    CELLRT_CHECK(std::isfinite(score[i]), "mask_nms: score ", i, " is ", score[i], "; scores should be finite");
    const int64_t size = int64_t{y1 - y0} * (x1 - x0);
    CELLRT_CHECK(offsets[i + 1] - offsets[i] == size, "mask_nms: mask ", i, " holds ", offsets[i + 1] - offsets[i],
                 " values; its box is ", y1 - y0, " x ", x1 - x0, " = ", size);
  }
  CELLRT_CHECK(offsets[n] <= mask_data.shape[0], "mask_nms: mask_offsets end at ", offsets[n],
               " but mask_data has ", mask_data.shape[0], " values");
  if (n == 0) return 0;

  // Rank: descending score, ties by index (stable).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  std::vector<InstanceBox> ranked(n);
  std::vector<int32_t> classes_ranked(n, 0);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t i = order[r];
    ranked[r] = InstanceBox{box[4 * i], box[4 * i + 1], box[4 * i + 2], box[4 * i + 3]};
    if (has_classes) classes_ranked[r] = cls[i];
  }
  const int workers = detail::resolve_threads(options.num_threads);
  const std::vector<Pair> pairs = candidate_pairs(ranked, classes_ranked, options.class_aware && has_classes);
  std::vector<uint8_t> hit(pairs.size(), 0);
  if (device) {
#if CELLRT_WITH_CUDA
    std::vector<int32_t> pair_index(2 * pairs.size());
    for (size_t p = 0; p < pairs.size(); ++p) {
      pair_index[2 * p] = order[pairs[p].kept];
      pair_index[2 * p + 1] = order[pairs[p].other];
    }
    detail::mask_nms_hits_cuda(static_cast<const int32_t*>(boxes.data), static_cast<const int64_t*>(mask_offsets.data),
                               data, n, pair_index, options.iou_threshold, options.ios_threshold, hit);
#endif
  } else {
    evaluate_pairs_cpu(ranked, order, offsets, data, pairs, options, workers, hit);
  }
  std::vector<uint8_t> kept(n, 0);
  int64_t count = 0;
  {
    std::vector<uint8_t> suppressed(n, 0);
    size_t p = 0;
    for (int64_t r = 0; r < n; ++r) {
      const bool alive = !suppressed[r];
      kept[order[r]] = alive ? 1 : 0;
      count += alive;
      for (; p < pairs.size() && pairs[p].kept == r; ++p)
        if (alive && hit[p]) suppressed[pairs[p].other] = 1;
    }
  }
  if (device) {
#if CELLRT_WITH_CUDA
    detail::copy_to_device(keep.data, kept.data(), kept.size());
#endif
  } else {
    std::copy(kept.begin(), kept.end(), static_cast<uint8_t*>(keep.data));
  }
  return count;
}

}  // namespace cellrt
