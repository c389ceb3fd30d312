// mask_nms: validation, candidate pairs from a spatial grid, the pairs'
// suppression tests in parallel (nms_kernel.h), then the greedy scan by
// rank - the one sequential step, over the pairs only.
#include "cellrt/nms.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <string>
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


// Validated instances of one call, their tables on the host (copied there
// when the instances are on the device; the masks stay where they are),
// ranked by descending score, ties by index.
struct Ranked {
  int64_t n = 0;
  bool device = false, has_classes = false;
  std::vector<int32_t> box_copy, class_copy;
  std::vector<float> score_copy;
  std::vector<int64_t> offset_copy;
  const int32_t* box = nullptr;
  const float* score = nullptr;
  const int64_t* offsets = nullptr;
  const uint8_t* data = nullptr;
  std::vector<int32_t> order;           // rank -> instance
  std::vector<InstanceBox> ranked;      // by rank
  std::vector<int32_t> classes_ranked;  // by rank (0 without classes)
};

Ranked prepare(const char* op, const TensorView& boxes, const TensorView& scores, const TensorView& classes,
               const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& out, DType out_dtype,
               bool class_aware) {
  Ranked k;
  detail::check_view(op, "boxes", boxes, 2, "(N, 4)", true);
  CELLRT_CHECK(boxes.dtype == DType::kInt32 && boxes.shape[1] == 4, op, ": boxes should be (N, 4) int32, got ",
               dtype_name(boxes.dtype), " ", detail::shape_string(boxes));
  const int64_t n = boxes.shape[0];
  k.n = n;
  CELLRT_CHECK(n < (int64_t{1} << 31), op, ": at most 2^31 - 1 instances, got ", n);
  detail::check_view(op, "scores", scores, 1, "(N,)", true);
  CELLRT_CHECK(scores.dtype == DType::kFloat32 && scores.shape[0] == n, op, ": scores should be (", n,
               ",) float32, got ", dtype_name(scores.dtype), " ", detail::shape_string(scores));
  k.has_classes = classes.data != nullptr;
  if (k.has_classes) {
    detail::check_view(op, "classes", classes, 1, "(N,)", true);
    CELLRT_CHECK(classes.dtype == DType::kInt32 && classes.shape[0] == n, op, ": classes should be (", n,
                 ",) int32, got ", dtype_name(classes.dtype), " ", detail::shape_string(classes));
  }
  CELLRT_CHECK(!class_aware || k.has_classes || n == 0, op,
               ": class_aware needs classes (or pass class_aware = false)");
  detail::check_view(op, "mask_offsets", mask_offsets, 1, "(N + 1,)", true);
  CELLRT_CHECK(mask_offsets.dtype == DType::kInt64 && mask_offsets.shape[0] == n + 1, op,
               ": mask_offsets should be (", n + 1, ",) int64, got ", dtype_name(mask_offsets.dtype), " ",
               detail::shape_string(mask_offsets));
  detail::check_view(op, "mask_data", mask_data, 1, "(M,)", true);
  CELLRT_CHECK(mask_data.dtype == DType::kUInt8, op, ": mask_data should be uint8, got ", dtype_name(mask_data.dtype));
  detail::check_view(op, "out", out, 1, "(N,)", true);
  CELLRT_CHECK(out.dtype == out_dtype && out.shape[0] == n, op, ": its output should be (", n, ",) ",
               dtype_name(out_dtype), ", got ", dtype_name(out.dtype), " ", detail::shape_string(out));
  k.device = boxes.device == Device::kCUDA;
  for (const TensorView* v : {&scores, &mask_offsets, &mask_data, &out})
    CELLRT_CHECK(v->device == boxes.device, op, ": boxes, scores, masks and the output should be on one device");
  CELLRT_CHECK(!k.has_classes || classes.device == boxes.device, op, ": classes should be on the boxes' device");
#if !CELLRT_WITH_CUDA
  if (k.device) throw NotCompiledError(std::string(op) + ": cellrt was built without CUDA support; pass host arrays");
#endif
  k.box = static_cast<const int32_t*>(boxes.data);
  k.score = static_cast<const float*>(scores.data);
  k.offsets = static_cast<const int64_t*>(mask_offsets.data);
  const auto* cls = static_cast<const int32_t*>(classes.data);
#if CELLRT_WITH_CUDA
  if (k.device) {
    k.box_copy.resize(4 * n);
    k.score_copy.resize(n);
    k.offset_copy.resize(n + 1);
    detail::copy_to_host(k.box_copy.data(), k.box, k.box_copy.size() * sizeof(int32_t));
    detail::copy_to_host(k.score_copy.data(), k.score, k.score_copy.size() * sizeof(float));
    detail::copy_to_host(k.offset_copy.data(), k.offsets, k.offset_copy.size() * sizeof(int64_t));
    k.box = k.box_copy.data();
    k.score = k.score_copy.data();
    k.offsets = k.offset_copy.data();
    if (k.has_classes) {
      k.class_copy.resize(n);
      detail::copy_to_host(k.class_copy.data(), cls, k.class_copy.size() * sizeof(int32_t));
      cls = k.class_copy.data();
    }
  }
#endif
  k.data = static_cast<const uint8_t*>(mask_data.data);
  CELLRT_CHECK(k.offsets[0] == 0, op, ": mask_offsets[0] should be 0, got ", k.offsets[0]);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t y0 = k.box[4 * i], x0 = k.box[4 * i + 1], y1 = k.box[4 * i + 2], x1 = k.box[4 * i + 3];
    CELLRT_CHECK(y0 >= 0 && x0 >= 0 && y1 > y0 && x1 > x0, op, ": box ", i, " = [", y0, ", ", x0, ", ", y1, ", ",
                 x1, ") should have 0 <= y0 < y1 and 0 <= x0 < x1");
    CELLRT_CHECK(std::isfinite(k.score[i]), op, ": score ", i, " is ", k.score[i], "; scores should be finite");
    const int64_t size = int64_t{y1 - y0} * (x1 - x0);
    CELLRT_CHECK(k.offsets[i + 1] - k.offsets[i] == size, op, ": mask ", i, " holds ",
                 k.offsets[i + 1] - k.offsets[i], " values; its box is ", y1 - y0, " x ", x1 - x0, " = ", size);
  }
  CELLRT_CHECK(k.offsets[n] <= mask_data.shape[0], op, ": mask_offsets end at ", k.offsets[n],
               " but mask_data has ", mask_data.shape[0], " values");
  k.order.resize(n);
  std::iota(k.order.begin(), k.order.end(), 0);
  std::stable_sort(k.order.begin(), k.order.end(), [&](int32_t a, int32_t b) { return k.score[a] > k.score[b]; });
  k.ranked.resize(n);
  k.classes_ranked.assign(n, 0);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t i = k.order[r];
    k.ranked[r] = InstanceBox{k.box[4 * i], k.box[4 * i + 1], k.box[4 * i + 2], k.box[4 * i + 3]};
    if (k.has_classes) k.classes_ranked[r] = cls[i];
  }
  return k;
}

// Mask areas by rank and, per candidate pair, the masks' intersection - on the host, in parallel.
void pair_overlaps_cpu(const Ranked& k, const std::vector<Pair>& pairs, int workers, std::vector<int64_t>& area,
                       std::vector<int64_t>& both) {
  area.assign(k.n, 0);
  both.assign(pairs.size(), 0);
  detail::parallel_for(k.n, workers, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t i = k.order[r];
      area[r] = detail::mask_area(k.data + k.offsets[i], k.offsets[i + 1] - k.offsets[i]);
    }
  });
  detail::parallel_for(static_cast<int64_t>(pairs.size()), workers, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int32_t a = pairs[p].kept, b = pairs[p].other;
      both[p] = detail::mask_intersection(k.ranked[a], k.data + k.offsets[k.order[a]], k.ranked[b],
                                          k.data + k.offsets[k.order[b]]);
    }
  });
}

}  // namespace

int64_t mask_nms(const TensorView& boxes, const TensorView& scores, const TensorView& classes,
                 const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& keep,
                 const MaskNmsOptions& options) {
  CELLRT_CHECK(std::isfinite(options.iou_threshold) && options.iou_threshold >= 0.0f && options.iou_threshold <= 1.0f,
               "mask_nms: iou_threshold should be in [0, 1], got ", options.iou_threshold);
  CELLRT_CHECK(std::isfinite(options.ios_threshold) && options.ios_threshold >= 0.0f,
               "mask_nms: ios_threshold should be >= 0 (above 1: off), got ", options.ios_threshold);
  const Ranked k = prepare("mask_nms", boxes, scores, classes, mask_offsets, mask_data, keep, DType::kUInt8,
                           options.class_aware);
  const int64_t n = k.n;
  if (n == 0) return 0;
  const std::vector<Pair> pairs = candidate_pairs(k.ranked, k.classes_ranked, options.class_aware && k.has_classes);
  std::vector<uint8_t> hit(pairs.size(), 0);
  if (k.device) {
#if CELLRT_WITH_CUDA
    std::vector<int32_t> pair_index(2 * pairs.size());
    for (size_t p = 0; p < pairs.size(); ++p) {
      pair_index[2 * p] = k.order[pairs[p].kept];
      pair_index[2 * p + 1] = k.order[pairs[p].other];
    }
    detail::mask_nms_hits_cuda(static_cast<const int32_t*>(boxes.data), static_cast<const int64_t*>(mask_offsets.data),
                               k.data, n, pair_index, options.iou_threshold, options.ios_threshold, hit);
#endif
  } else {
    std::vector<int64_t> area, both;
    pair_overlaps_cpu(k, pairs, detail::resolve_threads(options.num_threads), area, both);
    for (size_t p = 0; p < pairs.size(); ++p)
      hit[p] = detail::suppresses(both[p], area[pairs[p].kept], area[pairs[p].other], options.iou_threshold,
                                  options.ios_threshold);
  }
  std::vector<uint8_t> kept(n, 0);
  int64_t count = 0;
  {
    std::vector<uint8_t> suppressed(n, 0);
    size_t p = 0;
    for (int64_t r = 0; r < n; ++r) {
      const bool alive = !suppressed[r];
      kept[k.order[r]] = alive ? 1 : 0;
      count += alive;
      for (; p < pairs.size() && pairs[p].kept == r; ++p)
        if (alive && hit[p]) suppressed[pairs[p].other] = 1;
    }
  }
  if (k.device) {
#if CELLRT_WITH_CUDA
    detail::copy_to_device(keep.data, kept.data(), kept.size());
#endif
  } else {
    std::copy(kept.begin(), kept.end(), static_cast<uint8_t*>(keep.data));
  }
  return count;
}

void matrix_nms(const TensorView& boxes, const TensorView& scores, const TensorView& classes,
                const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& decayed,
                const MatrixNmsOptions& options) {
  CELLRT_CHECK(options.kernel == MatrixNmsKernel::kGaussian || options.kernel == MatrixNmsKernel::kLinear,
               "matrix_nms: kernel should be kGaussian or kLinear, got ", static_cast<int32_t>(options.kernel));
  CELLRT_CHECK(std::isfinite(options.sigma) && options.sigma > 0.0, "matrix_nms: sigma should be a positive number, "
               "got ", options.sigma);
  CELLRT_CHECK(boxes.device == Device::kCPU, "matrix_nms: instances should be in host memory");
  const Ranked k = prepare("matrix_nms", boxes, scores, classes, mask_offsets, mask_data, decayed, DType::kFloat32,
                           options.class_aware);
  const int64_t n = k.n;
  if (n == 0) return;
  // Pairs that do not overlap have IoU 0, whose decay term is >= 1 and never the minimum: the sparse pairs
  // give the dense matrix's result exactly.
  const std::vector<Pair> pairs = candidate_pairs(k.ranked, k.classes_ranked, options.class_aware && k.has_classes);
  std::vector<int64_t> area, both;
  pair_overlaps_cpu(k, pairs, detail::resolve_threads(options.num_threads), area, both);
  std::vector<double> iou(pairs.size()), compensate(n, 0.0), decay(n, 1.0);
  for (size_t p = 0; p < pairs.size(); ++p) {
    const int32_t a = pairs[p].kept, b = pairs[p].other;
    iou[p] = both[p] ? static_cast<double>(both[p]) / static_cast<double>(area[a] + area[b] - both[p]) : 0.0;
    compensate[b] = std::max(compensate[b], iou[p]);
  }
  const bool gaussian = options.kernel == MatrixNmsKernel::kGaussian;
  for (size_t p = 0; p < pairs.size(); ++p) {
    const int32_t a = pairs[p].kept, b = pairs[p].other;
    const double c = compensate[a];
    const double d = gaussian ? std::exp(-options.sigma * (iou[p] * iou[p] - c * c))
                              : (c < 1.0 ? (1.0 - iou[p]) / (1.0 - c) : 1.0);
    decay[b] = std::min(decay[b], d);
  }
  auto* out = static_cast<float*>(decayed.data);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t i = k.order[r];
    out[i] = static_cast<float>(static_cast<double>(k.score[i]) * decay[r]);
  }
}

}  // namespace cellrt
