// The CUDA label and measure kernels' per-thread bodies
// (label_measure_kernel.h) run on the host, one thread's work after
// another, in the order the CUDA backend launches them, with plain
// arithmetic for the atomics. Concurrency aside, this is the CUDA
// backend's computation - the union-find links, the small-object filter at
// the roots, the count read from memory by the measure kernels, the
// table's capacity - tested against the CPU backend on machines without a
// GPU.
#include <algorithm>
#include <vector>

#include "segment/label_measure_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

namespace lk = label_measure_kernel;

struct SequentialOps {
  template <typename T>
  static void add(T* address, T value) {
    *address += value;
  }
  template <typename T>
  static void min(T* address, T value) {
    if (value < *address) *address = value;
  }
  template <typename T>
  static void max(T* address, T value) {
    if (value > *address) *address = value;
  }
  static int32_t link(int32_t* address, int32_t value) {
    const int32_t old = *address;
    if (value < old) *address = value;
    return old;
  }
};

template <typename In>
void accumulate_all(const int32_t* labels, int32_t height, int32_t width, const int32_t* count_in_memory,
                    int64_t capacity, const TensorView* intensities, const lk::Sums& sums) {
  const In* image = intensities ? static_cast<const In*>(intensities->data) : nullptr;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  const int64_t sc = intensities ? intensities->strides[0] : 0;
  const int64_t sy = intensities ? intensities->strides[1] : 0;
  const int64_t sx = intensities ? intensities->strides[2] : 0;
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      const int64_t count = lk::object_count(count_in_memory, capacity);
      lk::accumulate_pixel<SequentialOps>(labels, width, count, capacity, image, channels, sc, sy, sx, sums, x, y);
    }
  }
}

}  // namespace

LabelMeasureResult label_measure_by_pixels(const uint8_t* mask, const TensorView& labels_view, int32_t connectivity,
                                           int64_t min_area, int64_t capacity, const TensorView* intensities,
                                           double* features) {
  auto* labels = static_cast<int32_t*>(labels_view.data);
  const auto height = static_cast<int32_t>(labels_view.shape[0]), width = static_cast<int32_t>(labels_view.shape[1]);
  const int64_t pixels = int64_t{height} * width;
  if (pixels == 0) return LabelMeasureResult{};

  // label_cuda_async
  for (int64_t p = 0; p < pixels; ++p) lk::init_pixel(mask, labels, p);
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      lk::merge_pixel<SequentialOps>(mask, labels, height, width, connectivity == 8, x, y);
    }
  }
  std::vector<int32_t> root_flag(pixels), root_number(pixels);
  for (int64_t p = 0; p < pixels; ++p) lk::compress_pixel(labels, root_flag.data(), p);
  if (min_area > 1) {
    std::vector<int32_t> root_area(pixels, 0);
    for (int64_t p = 0; p < pixels; ++p) lk::add_area_at_root<SequentialOps>(labels, root_area.data(), p);
    for (int64_t p = 0; p < pixels; ++p) lk::drop_small_root(root_flag.data(), root_area.data(), min_area, p);
  }
  int32_t running = 0;  // CUB's exclusive scan
  for (int64_t p = 0; p < pixels; ++p) {
    root_number[p] = running;
    running += root_flag[p];
  }
  for (int64_t p = 0; p < pixels; ++p) lk::relabel_pixel(labels, root_flag.data(), root_number.data(), p);
  const int32_t count = lk::component_count(root_flag.data(), root_number.data(), pixels);

  // measure_cuda_async, reading the count from memory as the kernels do
  const int64_t n1 = capacity + 1;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  std::vector<unsigned long long> moments(6 * n1);
  std::vector<int32_t> bounds(4 * n1);
  std::vector<double> intensity(2 * channels * n1);
  std::vector<float> extremes(2 * channels * n1);
  unsigned long long out_of_range = 0;
  lk::Sums sums{moments.data(), bounds.data(), intensity.data(), extremes.data(), &out_of_range};
  for (int64_t i = 0; i < n1; ++i) lk::init_object(sums, n1, channels, i);
  if (!intensities || intensities->dtype == DType::kFloat32) {
    accumulate_all<float>(labels, height, width, &count, capacity, intensities, sums);
  } else if (intensities->dtype == DType::kUInt16) {
    accumulate_all<uint16_t>(labels, height, width, &count, capacity, intensities, sums);
  } else {
    accumulate_all<uint8_t>(labels, height, width, &count, capacity, intensities, sums);
  }
  for (int64_t l = 1; l <= capacity; ++l) {
    lk::finalize_object(sums, labels, height, width, lk::object_count(&count, capacity), capacity, channels, features,
                        l);
  }
  check_labels_within_count(out_of_range);
  return LabelMeasureResult{count, std::min<int64_t>(count, capacity)};
}

}  // namespace cellrt::detail
