// Runs tile, stitch, label, measure, resize and the rest through every option on awkward shapes, for a build
// with AddressSanitizer and UndefinedBehaviorSanitizer, or ThreadSanitizer (tests/test_build.py
// compiles it together with the core sources and the C ABI's), and first the C ABI from several
// threads at once. Exit 0 and "ok" when every call returns and the sanitizers stay quiet.
#include <cellrt/c_api.h>
#include <cellrt/cellrt.h>

#include "segment/segment_ops.h"  // label_measure_by_pixels: the CUDA kernels' bodies on the host

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

using namespace cellrt;

namespace {

// C-contiguous shape and strides, for the C++ and the C view alike.
template <typename View>
void set_contiguous(View& v, const std::vector<int64_t>& shape) {
  v.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    v.shape[i] = shape[i];
    v.strides[i] = stride;
    stride *= shape[i];
  }
}

TensorView make_view(void* data, DType dtype, std::vector<int64_t> shape) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  set_contiguous(v, shape);
  return v;
}

// The tile grid from cellrt::tile_origins (itself under the sanitizers here).
std::vector<int64_t> grid(int64_t h, int64_t w, int64_t t, int64_t overlap) {
  std::vector<int64_t> out(static_cast<size_t>(2 * tile_origins(h, w, t, t, overlap, overlap)));
  tile_origins(h, w, t, t, overlap, overlap, out.data(), static_cast<int64_t>(out.size()));
  return out;
}

cellrt_tensor_t c_view(void* data, cellrt_dtype_t dtype, std::vector<int64_t> shape) {
  cellrt_tensor_t v{};
  v.struct_size = sizeof v;
  v.data = data;
  v.dtype = dtype;
  v.device = CELLRT_DEVICE_CPU;
  set_contiguous(v, shape);
  return v;
}

// What c_api.h's "Threads" promises, through the C ABI (c_api.cpp is compiled in): four threads at once tile and
// stitch fields of their own on two workers each (so the pool is busy and others start threads of their own),
// each drives its own drift monitor, and each fails a call with a message of its own that the others' failures
// do not replace. Returns the number of failed checks.
int concurrent_callers() {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0}, erred{0};
  auto caller = [&](int id) {
    const int64_t h = 61 + 7 * id, w = 47, t = 16, overlap = 4;
    int64_t n = 0;
    cellrt_tile_origins(h, w, t, t, overlap, overlap, nullptr, 0, &n);
    std::vector<int64_t> origins(2 * n);
    if (cellrt_tile_origins(h, w, t, t, overlap, overlap, origins.data(), 2 * n, &n) != CELLRT_STATUS_OK) ++failures;
    std::vector<uint16_t> image(h * w);
    for (int64_t i = 0; i < h * w; ++i) image[i] = static_cast<uint16_t>((i * 2654435761u + id) >> 18);
    std::vector<float> tiles(n * t * t), field(h * w);
    const cellrt_tensor_t image_view = c_view(image.data(), CELLRT_DTYPE_UINT16, {1, h, w});
    const cellrt_tensor_t tiles_view = c_view(tiles.data(), CELLRT_DTYPE_FLOAT32, {n, 1, t, t});
    const cellrt_tensor_t field_view = c_view(field.data(), CELLRT_DTYPE_FLOAT32, {1, h, w});
    cellrt_tile_options_t tile_options;
    cellrt_tile_options_init(&tile_options);
    tile_options.num_threads = 2;
    cellrt_stitch_options_t stitch_options;
    cellrt_stitch_options_init(&stitch_options);
    stitch_options.blend = CELLRT_BLEND_CONSTANT;  // a mean of equal small integers: exact
    stitch_options.num_threads = 2;
    std::vector<float> reference(4 * 3);
    for (size_t i = 0; i < reference.size(); ++i) reference[i] = static_cast<float>((i * 5 + id) % 7);
    const cellrt_tensor_t reference_view = c_view(reference.data(), CELLRT_DTYPE_FLOAT32, {4, 3});
    cellrt_drift_monitor_t* monitor = nullptr;
    if (cellrt_drift_monitor_create(&reference_view, 2.0, 2, 0.5, &monitor) != CELLRT_STATUS_OK) ++failures;
    for (int round = 0; round < 20; ++round) {
      std::fill(field.begin(), field.end(), -1.0f);
      if (cellrt_tile(&image_view, origins.data(), &tiles_view, &tile_options, nullptr, nullptr) != CELLRT_STATUS_OK ||
          cellrt_stitch(&tiles_view, origins.data(), &field_view, &stitch_options, nullptr, nullptr) !=
              CELLRT_STATUS_OK)
        ++failures;
      for (int64_t i = 0; i < h * w; ++i)
        if (field[i] != static_cast<float>(image[i])) {
          ++failures;
          break;
        }
      cellrt_drift_step_t step{};
      step.struct_size = sizeof step;
      if (cellrt_drift_monitor_update(monitor, &reference[3 * (round % 4)], 3, &step) != CELLRT_STATUS_OK ||
          step.index != round)
        ++failures;
    }
    cellrt_drift_monitor_destroy(monitor);
    cellrt_stitch_options_t bad = stitch_options;
    bad.overlap_x = static_cast<int32_t>(t + id);
    if (cellrt_stitch(&tiles_view, origins.data(), &field_view, &bad, nullptr, nullptr) !=
        CELLRT_STATUS_INVALID_ARGUMENT)
      ++failures;
    ++erred;
    while (erred.load() < kThreads) std::this_thread::yield();
    const std::string expected = "got " + std::to_string(t + id);
    if (std::string(cellrt_last_error()).find(expected) == std::string::npos) {
      std::fprintf(stderr, "thread %d: cellrt_last_error() = \"%s\", expected its own \"%s\"\n", id,
                   cellrt_last_error(), expected.c_str());
      ++failures;
    }
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) threads.emplace_back(caller, id);
  for (auto& thread : threads) thread.join();
  return failures.load();
}

}  // namespace

int main() {
  if (const int failed = concurrent_callers()) {
    std::printf("%d checks of concurrent C ABI callers failed\n", failed);
    return 1;
  }
  const int64_t shapes[][4] = {{1, 37, 53, 16}, {3, 9, 5, 16}, {2, 64, 64, 64}, {4, 100, 31, 24}};
  int calls = 0;
  for (const auto& s : shapes) {
    const int64_t c = s[0], h = s[1], w = s[2], t = s[3];
    for (int64_t overlap : {int64_t{0}, t / 4, t - 1}) {
      std::vector<int64_t> origins = grid(h, w, t, overlap);
      const int64_t n = static_cast<int64_t>(origins.size() / 2);
      std::vector<uint16_t> image(c * h * w);
      for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint16_t>(i * 40503u);
      // Strided view: every other column of a twice-as-wide buffer.
      std::vector<uint16_t> wide(c * h * w * 2);
      for (size_t i = 0; i < image.size(); ++i) wide[2 * i] = image[i];
      TensorView strided = make_view(wide.data(), DType::kUInt16, {c, h, w});
      for (int i = 0; i < 3; ++i) strided.strides[i] *= 2;
      for (DType tile_type : {DType::kFloat32, DType::kFloat16}) {
        std::vector<float> tile_data(n * c * t * t);  // large enough for either type
        TensorView tiles = make_view(tile_data.data(), tile_type, {n, c, t, t});
        std::vector<float> scale(c, 1.0f / 65535.0f), offset(c, 0.0f);
        TileOptions to;
        to.scale = scale.data();
        to.offset = offset.data();
        tile(make_view(image.data(), DType::kUInt16, {c, h, w}), origins.data(), tiles, to);
        tile(strided, origins.data(), tiles, to);
        calls += 2;
        for (Blend blend : {Blend::kConstant, Blend::kLinear, Blend::kCosine, Blend::kGaussian, Blend::kCrop}) {
          for (int mode = 0; mode < 4; ++mode) {
            StitchOptions so;
            so.blend = blend;
            so.overlap_y = so.overlap_x = static_cast<int32_t>(overlap);
            so.activation = mode == 1 ? Activation::kSigmoid : mode == 2 ? Activation::kSoftmax : Activation::kNone;
            so.argmax = mode == 3;
            so.num_threads = 3;
            std::vector<float> values(c * h * w);
            std::vector<int32_t> labels(h * w);
            TensorView out = so.argmax ? make_view(labels.data(), DType::kInt32, {h, w})
                                       : make_view(values.data(), DType::kFloat32, {c, h, w});
            stitch(tiles, origins.data(), out, so);
            // Only the first tile: most of the image uncovered.
            TensorView one = tiles;
            one.shape[0] = 1;
            stitch(one, origins.data(), out, so);
            calls += 2;
          }
        }
      }
    }
  }
  // label + measure on masks with seams, borders and empty rows, every
  // thread count from 1 to more strips than rows allow.
  const int64_t mask_shapes[][2] = {{1, 1}, {1, 77}, {77, 1}, {33, 65}, {130, 17}, {300, 41}};
  for (const auto& ms : mask_shapes) {
    const int64_t h = ms[0], w = ms[1];
    std::vector<uint8_t> mask(h * w);
    uint32_t state = 12345;
    for (auto& m : mask) {
      state = state * 1664525u + 1013904223u;
      m = (state >> 24) % 3 == 0 ? 1 : 0;
    }
    std::vector<int32_t> labels(h * w);
    std::vector<float> intensity(2 * h * w, 1.5f);
    for (int32_t connectivity : {4, 8}) {
      for (int32_t threads : {1, 2, 7}) {
        LabelOptions lo;
        lo.connectivity = connectivity;
        lo.num_threads = threads;
        const int64_t n = label(make_view(mask.data(), DType::kUInt8, {h, w}),
                                make_view(labels.data(), DType::kInt32, {h, w}), lo);
        std::vector<double> features((n + 2) * (kMeasureShapeColumns + 2 * kMeasureIntensityColumns));
        const TensorView inten = make_view(intensity.data(), DType::kFloat32, {2, h, w});
        MeasureOptions mo;
        mo.num_threads = threads;
        measure(make_view(labels.data(), DType::kInt32, {h, w}), n + 2, &inten,
                make_view(features.data(), DType::kFloat64, {n + 2, kMeasureShapeColumns + 2 * kMeasureIntensityColumns}),
                mo);
        std::vector<int64_t> offsets(n + 3);
        std::vector<double> perimeter(n + 2);
        ContourOptions co;
        co.num_threads = threads;
        const TensorView lv = make_view(labels.data(), DType::kInt32, {h, w});
        const int64_t total = contours(lv, n + 2, offsets.data(), nullptr, perimeter.data(), co);
        std::vector<int32_t> points(2 * total);
        contours(lv, n + 2, offsets.data(), points.data(), nullptr, co);
        const HoleContours holes = hole_contours(lv, n + 2, co);
        if (holes.object_offsets.size() != static_cast<size_t>(n + 3) ||
            holes.points.size() != 2 * static_cast<size_t>(holes.point_offsets.back())) {
          std::printf("hole_contours: offsets and points disagree\n");
          return 1;
        }
        std::vector<int32_t> grown(labels);
        grow_labels(make_view(grown.data(), DType::kInt32, {h, w}), make_view(mask.data(), DType::kUInt8, {h, w}), 3);
        // In place, and into a second buffer, with the thread count of this round.
        std::vector<int32_t> kept(h * w);
        remove_small_objects(make_view(grown.data(), DType::kInt32, {h, w}), make_view(kept.data(), DType::kInt32, {h, w}),
                             4, threads);
        remove_small_objects(make_view(grown.data(), DType::kInt32, {h, w}), make_view(grown.data(), DType::kInt32, {h, w}),
                             4, threads);
        if (grown != kept) {
          std::printf("remove_small_objects: in place and into another buffer disagree\n");
          return 1;
        }
        calls += 3;
        // label_measure with a table too small for every object, and the CUDA kernels' bodies run on the host
        // (union-find, root filter, count in memory, capacity): both must give these labels and rows.
        {
          const int64_t columns = kMeasureShapeColumns + 2 * kMeasureIntensityColumns;
          const int64_t capacity = n / 2;
          std::vector<int32_t> fused(h * w), by_pixels(h * w);
          std::vector<double> fused_rows(capacity * columns + 1), pixel_rows(capacity * columns + 1);
          const TensorView inten2 = make_view(intensity.data(), DType::kFloat32, {2, h, w});
          LabelMeasureOptions lmo;
          lmo.connectivity = connectivity;
          lmo.min_area = 3;
          lmo.num_threads = threads;
          const LabelMeasureResult a =
              label_measure(make_view(mask.data(), DType::kUInt8, {h, w}), make_view(fused.data(), DType::kInt32, {h, w}),
                            &inten2, make_view(fused_rows.data(), DType::kFloat64, {capacity, columns}), lmo);
          const LabelMeasureResult b = detail::label_measure_by_pixels(
              mask.data(), make_view(by_pixels.data(), DType::kInt32, {h, w}), connectivity, 3, capacity, &inten2,
              pixel_rows.data());
          if (a.num_objects != b.num_objects || a.measured != b.measured || fused != by_pixels ||
              a.measured != std::min(a.num_objects, capacity)) {
            std::printf("label_measure: the CPU and the CUDA kernel bodies disagree\n");
            return 1;
          }
          // The rows: shape columns from integer sums, equal; float intensity sums in another order, to the
          // last bits; NaN where the other is NaN.
          for (int64_t i = 0; i < a.measured * columns; ++i) {
            const double x = fused_rows[i], y = pixel_rows[i];
            const bool shape = i % columns < kMeasureShapeColumns;
            const bool same = (std::isnan(x) && std::isnan(y)) ||
                              (shape ? x == y : std::fabs(x - y) <= 1e-9 * std::max(1.0, std::fabs(y)));
            if (!same) {
              std::printf("label_measure: row %lld column %lld: %.17g on the CPU, %.17g by the CUDA kernel bodies\n",
                          static_cast<long long>(i / columns), static_cast<long long>(i % columns), x, y);
              return 1;
            }
          }
          calls += 2;
        }
        // The split of touching objects: distance transform and watershed with this round's threads.
        std::vector<float> distance(h * w), surface(h * w);
        distance_transform(make_view(mask.data(), DType::kUInt8, {h, w}),
                           make_view(distance.data(), DType::kFloat32, {h, w}), threads);
        std::vector<int32_t> seeds(h * w), flooded(h * w);
        h_maxima_seeds(make_view(distance.data(), DType::kFloat32, {h, w}), 0.5f,
                       make_view(seeds.data(), DType::kInt32, {h, w}), connectivity);
        for (size_t i = 0; i < surface.size(); ++i) surface[i] = -distance[i];
        for (int32_t flood_threads : {1, threads}) {
          std::vector<int32_t> result(seeds);
          watershed(make_view(surface.data(), DType::kFloat32, {h, w}), make_view(result.data(), DType::kInt32, {h, w}),
                    make_view(mask.data(), DType::kUInt8, {h, w}), connectivity, flood_threads);
          if (flood_threads == 1) {
            flooded = result;
          } else if (result != flooded) {
            std::printf("watershed: %d threads and 1 disagree\n", flood_threads);
            return 1;
          }
        }
        calls += 4;
        std::vector<uint8_t> morphed(h * w);
        for (int32_t radius : {0, 1, 3, 40}) {
          MorphologyOptions mopt;
          mopt.num_threads = threads;
          mopt.footprint = radius % 2 ? Footprint::kDisk : Footprint::kSquare;
          binary_morphology(make_view(mask.data(), DType::kUInt8, {h, w}),
                            make_view(morphed.data(), DType::kUInt8, {h, w}), radius, radius == 3, mopt);
          calls += 1;
        }
        // Percentiles of a float image with non-finite pixels, this round's threads.
        std::vector<float> spread(h * w);
        for (size_t i = 0; i < spread.size(); ++i) spread[i] = static_cast<float>((i * 2654435761u) % 1000) - 500.0f;
        spread[0] = std::numeric_limits<float>::quiet_NaN();
        const double qs[4] = {0.0, 1.0, 99.8, 100.0};
        double ps[4];
        percentiles(make_view(spread.data(), DType::kFloat32, {h, w}), qs, 4, ps, threads);
        // Equal bins of the same values: a few (four interleaved sub-histograms) and many (one).
        for (int32_t nbins : {7, 5000}) {
          std::vector<int64_t> bins(nbins);
          std::vector<float> edges(nbins + 1);
          float_histogram(make_view(spread.data(), DType::kFloat32, {h, w}), nbins, bins.data(), edges.data(),
                          threads);
        }
        calls += 3;
        std::vector<int64_t> counts(256);
        histogram(make_view(mask.data(), DType::kUInt8, {h, w}), make_view(counts.data(), DType::kInt64, {256}),
                  threads);
        std::vector<uint8_t> filled(h * w);
        fill_holes(make_view(mask.data(), DType::kUInt8, {h, w}), make_view(filled.data(), DType::kUInt8, {h, w}),
                   connectivity);
        calls += 7;
      }
    }
    // Filters with windows larger than the image and every border mode.
    std::vector<float> image(h * w), filtered(h * w);
    for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>(i % 17);
    for (BorderMode border : {BorderMode::kReflect, BorderMode::kNearest}) {
      FilterOptions fo;
      fo.border = border;
      fo.num_threads = 3;
      for (double sigma : {0.0, 0.8, 9.0}) {
        gaussian_blur(make_view(image.data(), DType::kFloat32, {h, w}), make_view(filtered.data(), DType::kFloat32, {h, w}),
                      sigma, 4.0, fo);
        ++calls;
      }
      for (int32_t size : {1, 4, 101}) {
        box_mean(make_view(image.data(), DType::kFloat32, {h, w}), make_view(filtered.data(), DType::kFloat32, {h, w}),
                 size, size + 2, fo);
        ++calls;
      }
    }
  }
  // resize: up, down, extreme ratios and one-pixel sides, each input type, more threads than lines.
  for (int64_t h : {1, 7, 64}) {
    for (int64_t w : {1, 5, 129}) {
      std::vector<uint16_t> image(2 * h * w);
      for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint16_t>((i * 37) % 1000);
      std::vector<float> as_float(image.begin(), image.end());
      for (int64_t oh : {1, 3, 200}) {
        for (int64_t ow : {2, 64}) {
          std::vector<float> out(2 * oh * ow);
          for (int32_t antialias : {0, 1}) {
            ResizeOptions ro;
            ro.antialias = antialias;
            ro.num_threads = 5;
            resize(make_view(image.data(), DType::kUInt16, {2, h, w}), make_view(out.data(), DType::kFloat32, {2, oh, ow}),
                   ro);
            resize(make_view(as_float.data(), DType::kFloat32, {2, h, w}),
                   make_view(out.data(), DType::kFloat32, {2, oh, ow}), ro);
            calls += 2;
          }
        }
      }
    }
  }
  // RBF kernel sums and values (the drift monitor's): empty and one-dimensional sets, several threads.
  for (int64_t m : {0, 1, 37}) {
    for (int64_t n : {0, 1, 300}) {
      for (int64_t d : {1, 5, 128}) {
        std::vector<float> q(m * d), pts(n * d);
        for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>(i % 7) * 0.1f;
        for (size_t i = 0; i < pts.size(); ++i) pts[i] = static_cast<float>(i % 5) * 0.2f;
        std::vector<double> sums(m), values(m * n);
        rbf_kernel(make_view(q.data(), DType::kFloat32, {m, d}), make_view(pts.data(), DType::kFloat32, {n, d}), 1.5,
                   make_view(sums.data(), DType::kFloat64, {m}), 3);
        rbf_kernel(make_view(q.data(), DType::kFloat32, {m, d}), make_view(pts.data(), DType::kFloat32, {n, d}), 1.5,
                   make_view(values.data(), DType::kFloat64, {m, n}), 3);
        calls += 2;
      }
    }
  }
  // Mask NMS: boxes at the image origin, one-pixel boxes, exact duplicates, large overlapping groups.
  for (int32_t count : {0, 1, 2, 200}) {
    std::vector<int32_t> boxes(4 * count), classes(count);
    std::vector<float> scores(count);
    std::vector<int64_t> offsets(count + 1, 0);
    for (int32_t i = 0; i < count; ++i) {
      const int32_t y = (i * 7) % 50, x = (i * 13) % 60, hh = 1 + i % 9, ww = 1 + (i * 3) % 11;
      boxes[4 * i] = y;
      boxes[4 * i + 1] = x;
      boxes[4 * i + 2] = y + hh;
      boxes[4 * i + 3] = x + ww;
      scores[i] = static_cast<float>(i % 10) * 0.1f;
      classes[i] = i % 3;
      offsets[i + 1] = offsets[i] + int64_t{hh} * ww;
    }
    std::vector<uint8_t> masks(offsets[count]), keep(count);
    for (size_t i = 0; i < masks.size(); ++i) masks[i] = static_cast<uint8_t>((i * 7) % 3 != 0);
    for (bool aware : {false, true}) {
      MaskNmsOptions nms;
      nms.class_aware = aware;
      nms.ios_threshold = 0.7f;
      nms.num_threads = 3;
      mask_nms(make_view(boxes.data(), DType::kInt32, {count, 4}), make_view(scores.data(), DType::kFloat32, {count}),
               make_view(classes.data(), DType::kInt32, {count}), make_view(offsets.data(), DType::kInt64, {count + 1}),
               make_view(masks.data(), DType::kUInt8, {static_cast<int64_t>(masks.size())}),
               make_view(keep.data(), DType::kUInt8, {count}), nms);
      std::vector<float> decayed(count);
      MatrixNmsOptions matrix;
      matrix.class_aware = aware;
      matrix.kernel = aware ? MatrixNmsKernel::kLinear : MatrixNmsKernel::kGaussian;
      matrix.num_threads = 3;
      matrix_nms(make_view(boxes.data(), DType::kInt32, {count, 4}), make_view(scores.data(), DType::kFloat32, {count}),
                 make_view(classes.data(), DType::kInt32, {count}),
                 make_view(offsets.data(), DType::kInt64, {count + 1}),
                 make_view(masks.data(), DType::kUInt8, {static_cast<int64_t>(masks.size())}),
                 make_view(decayed.data(), DType::kFloat32, {count}), matrix);
      calls += 2;
    }
  }
  std::printf("%d calls\nok\n", calls);
  return 0;
}
