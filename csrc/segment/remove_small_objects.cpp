// remove_small_objects: object areas, then a renumbering applied to every
// pixel. Object pixels come in runs along rows (an object is tens of pixels
// wide), so both passes look a label up once per run, not once per pixel.
#include "cellrt/remove_small_objects.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"

namespace cellrt {

namespace {

using detail::parallel_for;

// Label tables up to this length (two of them, areas and new labels, 4 bytes
// an entry: at most 32 bytes per pixel, or 128 MB for a small image) index
// by label; larger labels are sparse and found by sorting the distinct ones
// instead.
int64_t dense_table_limit(int64_t pixels) { return std::max<int64_t>(4 * pixels, int64_t{1} << 24); }

// Calls fn(label, begin, end) for each run [begin, end) of equal labels in row[0, width).
template <typename Fn>
void for_each_run(const int32_t* row, int64_t width, Fn&& fn) {
  for (int64_t x = 0; x < width;) {
    const int32_t l = row[x];
    int64_t end = x + 1;
    while (end < width && row[end] == l) ++end;
    fn(l, x, end);
    x = end;
  }
}

struct LabelExtent {
  int32_t max_label = 0;
  int64_t negative = 0;
};

LabelExtent label_extent(const int32_t* labels, int64_t pixels, int workers) {
  std::vector<LabelExtent> part(workers);
  parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t wi = w0; wi < w1; ++wi) {
      const int64_t p0 = pixels * wi / workers, p1 = pixels * (wi + 1) / workers;
      int32_t top = 0;
      int64_t negative = 0;
      for (int64_t p = p0; p < p1; ++p) {  // two branch-free reductions: vectorised
        top = std::max(top, labels[p]);
        negative += labels[p] < 0 ? 1 : 0;
      }
      part[wi] = LabelExtent{top, negative};
    }
  });
  LabelExtent all;
  for (const LabelExtent& e : part) {
    all.max_label = std::max(all.max_label, e.max_label);
    all.negative += e.negative;
  }
  return all;
}

// Pixels per label 0..max_label. Each worker counts its rows into a table
// of its own when those are small against the image; otherwise one thread
// counts (a shared table would need atomics for little gain: it happens
// only when labels outnumber the pixels per worker).
std::vector<int32_t> label_areas(const int32_t* labels, int64_t height, int64_t width, int32_t max_label,
                                 int workers) {
  const int64_t entries = int64_t{max_label} + 1;
  if (entries > std::max<int64_t>(height * width / workers, int64_t{1} << 16)) workers = 1;
  workers = static_cast<int>(std::min<int64_t>(workers, height));
  std::vector<std::vector<int32_t>> part(workers);
  parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    for (int64_t wi = w0; wi < w1; ++wi) {
      std::vector<int32_t>& area = part[wi];
      area.assign(static_cast<size_t>(entries), 0);
      for (int64_t y = height * wi / workers; y < height * (wi + 1) / workers; ++y)
        for_each_run(labels + y * width, width,
                     [&](int32_t l, int64_t begin, int64_t end) { area[l] += static_cast<int32_t>(end - begin); });
    }
  });
  for (int wi = 1; wi < workers; ++wi)
    for (int64_t l = 0; l < entries; ++l) part[0][l] += part[wi][l];
  return std::move(part[0]);
}

// out = new_label(labels) run by run; new_label is called once per run.
template <typename NewLabel>
void renumber(const int32_t* labels, int32_t* out, int64_t height, int64_t width, int32_t num_threads,
              NewLabel&& new_label) {
  parallel_for(height, num_threads, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y)
      for_each_run(labels + y * width, width, [&](int32_t l, int64_t begin, int64_t end) {
        std::fill(out + y * width + begin, out + y * width + end, new_label(l));
      });
  });
}

}  // namespace

int64_t remove_small_objects(const TensorView& labels, const TensorView& out, int64_t min_area, int32_t num_threads) {
  detail::check_view("remove_small_objects", "labels", labels, 2, "(H, W)", true);
  detail::check_view("remove_small_objects", "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(labels.dtype == DType::kInt32, "remove_small_objects: labels should be int32, got ",
               dtype_name(labels.dtype));
  CELLRT_CHECK(out.dtype == DType::kInt32, "remove_small_objects: out should be int32, got ", dtype_name(out.dtype));
  detail::check_same_shape_2d("remove_small_objects", "labels", labels, "out", out);
  detail::check_no_overlap("remove_small_objects", "labels", labels, "out", out, true);
  CELLRT_CHECK(labels.device == Device::kCPU && out.device == Device::kCPU,
               "remove_small_objects: only host arrays are supported (device arrays: cellrt.kernels renumbers "
               "them with cupy)");
  const int64_t h = labels.shape[0], w = labels.shape[1];
  CELLRT_CHECK(h * w < (int64_t{1} << 31), "remove_small_objects: images should have fewer than 2^31 pixels, got ",
               h, " x ", w);
  const int64_t pixels = h * w;
  if (pixels == 0) return 0;
  const auto* in = static_cast<const int32_t*>(labels.data);
  auto* dst = static_cast<int32_t*>(out.data);
  const int workers = static_cast<int>(std::min<int64_t>(detail::resolve_threads(num_threads), h));

  const LabelExtent extent = label_extent(in, pixels, workers);
  CELLRT_CHECK(extent.negative == 0, "remove_small_objects: labels should be >= 0, got ", extent.negative,
               " negative pixel(s)");
  if (min_area <= 0) {
    if (dst != in) std::memcpy(dst, in, sizeof(int32_t) * static_cast<size_t>(pixels));
    return extent.max_label;
  }

  if (int64_t{extent.max_label} + 1 <= dense_table_limit(pixels)) {
    const std::vector<int32_t> area = label_areas(in, h, w, extent.max_label, workers);
    std::vector<int32_t> new_label(area.size(), 0);
    int32_t kept = 0;
    for (size_t l = 1; l < area.size(); ++l) new_label[l] = area[l] >= min_area ? ++kept : 0;
    if (kept == extent.max_label) {  // every label 1..max kept: nothing moves
      if (dst != in) std::memcpy(dst, in, sizeof(int32_t) * static_cast<size_t>(pixels));
    } else {
      renumber(in, dst, h, w, num_threads, [&](int32_t l) { return new_label[l]; });
    }
    return kept;
  }

  // Sparse labels: the runs of each label, sorted by label, summed into the distinct labels' areas.
  std::vector<std::pair<int32_t, int64_t>> runs;  // (label, length)
  for (int64_t y = 0; y < h; ++y)
    for_each_run(in + y * w, w, [&](int32_t l, int64_t begin, int64_t end) {
      if (l != 0) runs.emplace_back(l, end - begin);
    });
  std::sort(runs.begin(), runs.end());
  std::vector<int32_t> distinct, new_label;
  int32_t kept = 0;
  for (size_t i = 0; i < runs.size();) {
    int64_t area = 0;
    size_t j = i;
    for (; j < runs.size() && runs[j].first == runs[i].first; ++j) area += runs[j].second;
    distinct.push_back(runs[i].first);
    new_label.push_back(area >= min_area ? ++kept : 0);
    i = j;
  }
  renumber(in, dst, h, w, num_threads, [&](int32_t l) {
    if (l == 0) return int32_t{0};
    return new_label[std::lower_bound(distinct.begin(), distinct.end(), l) - distinct.begin()];
  });
  return kept;
}

}  // namespace cellrt
