// grow_labels: synchronous frontier growth. Each step computes every
// candidate's new label from the labels before the step, then writes them
// all; the next step's candidates are the unlabelled mask neighbours of the
// pixels just written (stamped so each is listed once per step).
#include "cellrt/grow.h"

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/validate.h"

namespace cellrt {

namespace {

struct Grower {
  int32_t* labels;
  const uint8_t* mask;
  int32_t height, width;

  int32_t largest_neighbour(int32_t p) const {
    const int32_t y = p / width, x = p % width;
    int32_t best = 0;
    if (x > 0) best = std::max(best, labels[p - 1]);
    if (x + 1 < width) best = std::max(best, labels[p + 1]);
    if (y > 0) best = std::max(best, labels[p - width]);
    if (y + 1 < height) best = std::max(best, labels[p + width]);
    return best;
  }

  bool candidate(int32_t p) const { return labels[p] == 0 && mask[p] != 0; }
};

}  // namespace

int64_t grow_labels(const TensorView& labels, const TensorView& mask, int32_t steps) {
  detail::check_view("grow_labels", "labels", labels, 2, "(H, W)", true);
  detail::check_view("grow_labels", "mask", mask, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, "grow_labels: labels should be int32, got ", dtype_name(labels.dtype));
  CELLRT_CHECK(mask.dtype == DType::kUInt8, "grow_labels: mask should be uint8, got ", dtype_name(mask.dtype));
  detail::check_same_shape_2d("grow_labels", "labels", labels, "mask", mask);
  detail::check_no_overlap("grow_labels", "mask", mask, "labels", labels, false);
  CELLRT_CHECK(labels.device == Device::kCPU && mask.device == Device::kCPU,
               "grow_labels: only host arrays are supported (device arrays: cellrt.kernels grows them with cupy)");
  CELLRT_CHECK(steps >= 0, "grow_labels: steps should be >= 0, got ", steps);
  const int64_t h = labels.shape[0], w = labels.shape[1];
  CELLRT_CHECK(h * w < (int64_t{1} << 31), "grow_labels: images should have fewer than 2^31 pixels");
  if (h == 0 || w == 0 || steps == 0) return 0;
  Grower g{static_cast<int32_t*>(labels.data), static_cast<const uint8_t*>(mask.data), static_cast<int32_t>(h),
           static_cast<int32_t>(w)};
  const int32_t pixels = static_cast<int32_t>(h * w);
  std::vector<int32_t> stamp(pixels, -1);  // the step a pixel was last listed for
  std::vector<int32_t> frontier, next;
  std::vector<int32_t> values;
  for (int32_t p = 0; p < pixels; ++p)
    if (g.candidate(p) && g.largest_neighbour(p) > 0) {
      frontier.push_back(p);
      stamp[p] = 0;
    }
  int64_t grown = 0;
  for (int32_t step = 0; step < steps && !frontier.empty(); ++step) {
    values.resize(frontier.size());
    for (size_t i = 0; i < frontier.size(); ++i) values[i] = g.largest_neighbour(frontier[i]);
    for (size_t i = 0; i < frontier.size(); ++i) g.labels[frontier[i]] = values[i];
    grown += static_cast<int64_t>(frontier.size());
    next.clear();
    for (const int32_t p : frontier) {
      const int32_t y = p / g.width, x = p % g.width;
      const int32_t around[4] = {x > 0 ? p - 1 : -1, x + 1 < g.width ? p + 1 : -1, y > 0 ? p - g.width : -1,
                                 y + 1 < g.height ? p + g.width : -1};
      for (const int32_t q : around)
        if (q >= 0 && stamp[q] != step + 1 && g.candidate(q)) {
          stamp[q] = step + 1;
          next.push_back(q);
        }
    }
    frontier.swap(next);
  }
  return grown;
}

}  // namespace cellrt
