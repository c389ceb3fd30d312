// CPU measurements. Work partition: threads take disjoint strips of rows,
// each with private per-object sums (segment_kernel.h), merged in strip
// order at the end; one pass over the labels and the intensity channels.
// Then one row per object (threads over objects), the perimeter traced from
// the object's bounding box (contour_kernel.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "segment/contour_kernel.h"
#include "segment/segment_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

struct StripSums {
  std::vector<ObjectSums> objects;        // [N + 1], index 0 unused
  std::vector<IntensitySums> intensity;   // [K][N + 1]
  int64_t out_of_range = 0;
};

template <typename In>
void accumulate_strip(const int32_t* labels, int32_t y0, int32_t y1, int32_t width, int64_t num_objects,
                      const TensorView* intensities, StripSums& s) {
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  const In* base = intensities ? static_cast<const In*>(intensities->data) : nullptr;
  const int64_t sc = intensities ? intensities->strides[0] : 0;
  const int64_t sy = intensities ? intensities->strides[1] : 0;
  const int64_t sx = intensities ? intensities->strides[2] : 0;
  const int64_t stride_k = num_objects + 1;
  for (int32_t y = y0; y < y1; ++y) {
    const int32_t* row = labels + int64_t{y} * width;
    // Runs of one label: shape sums in closed form per run, intensities
    // per pixel; background skipped two labels at a time.
    int32_t x = 0;
    while (x < width) {
      while (x + 2 <= width) {
        uint64_t pair;
        std::memcpy(&pair, row + x, sizeof pair);
        if (pair) break;
        x += 2;
      }
      if (x < width && row[x] == 0) {
        ++x;
        continue;
      }
      if (x >= width) break;
      const int32_t l = row[x];
      int32_t end = x + 1;
      while (end < width && row[end] == l) ++end;
      if (l < 0 || l > num_objects) {
        s.out_of_range += end - x;
      } else {
        add_run(s.objects[l], x, end, y);
        for (int64_t k = 0; k < channels; ++k) {
          // The run's values in a local accumulator (registers): through the object's entry
          // every add waited on the previous store. Same additions in the same order.
          IntensitySums run = s.intensity[k * stride_k + l];
          const In* src = base + k * sc + y * sy;
          for (int32_t i = x; i < end; ++i) add_value(run, to_float(src[i * sx]));
          s.intensity[k * stride_k + l] = run;
        }
      }
      x = end;
    }
  }
}

}  // namespace

MeasureResult measure_cpu(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                          double* features, int32_t num_threads) {
  const int32_t height = static_cast<int32_t>(labels.shape[0]), width = static_cast<int32_t>(labels.shape[1]);
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  const int strips = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), height)));
  std::vector<StripSums> sums(strips);
  const auto* lab = static_cast<const int32_t*>(labels.data);
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      StripSums& st = sums[s];
      st.objects.resize(num_objects + 1);
      st.intensity.resize(channels * (num_objects + 1));
      for (auto& o : st.objects) reset(o);
      for (auto& i : st.intensity) reset(i);
      const int32_t y0 = static_cast<int32_t>(int64_t{height} * s / strips);
      const int32_t y1 = static_cast<int32_t>(int64_t{height} * (s + 1) / strips);
      if (!intensities) {
        accumulate_strip<float>(lab, y0, y1, width, num_objects, nullptr, st);
      } else if (intensities->dtype == DType::kUInt8) {
        accumulate_strip<uint8_t>(lab, y0, y1, width, num_objects, intensities, st);
      } else if (intensities->dtype == DType::kUInt16) {
        accumulate_strip<uint16_t>(lab, y0, y1, width, num_objects, intensities, st);
      } else {
        accumulate_strip<float>(lab, y0, y1, width, num_objects, intensities, st);
      }
    }
  });

  MeasureResult result;
  StripSums& total = sums[0];
  for (int s = 1; s < strips; ++s) {
    for (int64_t l = 1; l <= num_objects; ++l) merge(total.objects[l], sums[s].objects[l]);
    for (size_t i = 0; i < total.intensity.size(); ++i) merge(total.intensity[i], sums[s].intensity[i]);
  }
  for (const auto& st : sums) result.out_of_range += st.out_of_range;

  const int64_t columns = kMeasureShapeColumns + kMeasureIntensityColumns * channels;
  // Rows are independent; the perimeter trace makes them worth spreading.
  parallel_for(num_objects, num_threads, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0 + 1; l <= l1; ++l) {
      double* row = features + (l - 1) * columns;
      const ObjectSums& o = total.objects[l];
      shape_features(o, row);
      row[kPerimeter] = o.area ? outer_perimeter(lab, height, width, static_cast<int32_t>(l), o.min_x, o.min_y) : 0.0;
      for (int64_t k = 0; k < channels; ++k)
        intensity_features(total.intensity[k * (num_objects + 1) + l], o.area,
                           row + kMeasureShapeColumns + kMeasureIntensityColumns * k);
    }
  });
  return result;
}

}  // namespace cellrt::detail
