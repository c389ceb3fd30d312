// extern "C" wrappers over the C++ API. No exception crosses this boundary:
// translate_exceptions() maps each to a status and keeps the message in a
// thread-local for cellrt_last_error() (the cuVS / faiss pattern).
//
// This file, like cpu_check.cpp, is compiled for baseline x86-64 even when
// cellrt_core is compiled for x86-64-v3 (see CMakeLists.txt): every call
// that reaches cellrt_core passes translate_exceptions(), which checks the
// CPU first, so an older CPU gets a status instead of SIGILL. The few
// entry points that return no status stay out of cellrt_core's code.
#include "cellrt/c_api.h"

#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "c_api/cpu_check.h"
#include "cellrt/cellrt.h"
#include "core/check.h"

#ifndef CELLRT_VERSION_STRING
#define CELLRT_VERSION_STRING "0.0.0"
#endif

namespace {

thread_local std::string g_last_error;

template <typename Fn>
cellrt_status_t translate_exceptions(Fn&& fn) {
  if (const char* why = cellrt::c_abi::unsupported_cpu()) {
    g_last_error = why;
    return CELLRT_STATUS_NOT_COMPILED;
  }
  g_last_error.clear();
  try {
    fn();
    return CELLRT_STATUS_OK;
  } catch (const cellrt::NotCompiledError& e) {
    g_last_error = e.what();
    return CELLRT_STATUS_NOT_COMPILED;
  } catch (const std::invalid_argument& e) {
    g_last_error = e.what();
    return CELLRT_STATUS_INVALID_ARGUMENT;
  } catch (const std::out_of_range& e) {
    g_last_error = e.what();
    return CELLRT_STATUS_OUT_OF_RANGE;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return CELLRT_STATUS_RUNTIME_ERROR;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return CELLRT_STATUS_RUNTIME_ERROR;
  } catch (...) {
    g_last_error = "unknown error";
    return CELLRT_STATUS_UNKNOWN_ERROR;
  }
}

// A struct from an older caller is shorter: copy the fields it has and keep
// the defaults for the rest. A struct_size that is too small to hold the
// size field itself is rejected.
template <typename T>
T versioned_copy(const T* in, const T& defaults, const char* fn, const char* name, const char* type) {
  T out = defaults;
  if (in == nullptr) return out;
  CELLRT_CHECK(in->struct_size >= sizeof(size_t), fn, ": ", name, ".struct_size should be sizeof(", type, ") = ",
               sizeof(T), ", got ", in->struct_size);
  std::memcpy(&out, in, in->struct_size < sizeof(T) ? in->struct_size : sizeof(T));
  out.struct_size = sizeof(T);
  return out;
}

// The caller's options struct (of any version, see versioned_copy), or the
// defaults init gives where it passes NULL.
template <typename T>
T read_options(const T* options, void (*init)(T*), const char* fn, const char* type) {
  T defaults;
  init(&defaults);
  return versioned_copy(options, defaults, fn, "options", type);
}

// fn names the C function: these checks run before the C++ API's, whose
// messages name their op, so without it a message like "mask should not be
// NULL" did not say which call of a chain refused it.
cellrt::TensorView to_view(const cellrt_tensor_t* t, const char* fn, const char* name) {
  CELLRT_CHECK(t != nullptr, fn, ": ", name, " should not be NULL");
  cellrt_tensor_t defaults{};
  cellrt_tensor_t c = versioned_copy(t, defaults, fn, name, "cellrt_tensor_t");
  CELLRT_CHECK(c.ndim >= 0 && c.ndim <= 4, fn, ": ", name, ".ndim should be 0..4, got ", c.ndim);
  CELLRT_CHECK(c.dtype >= 0 && c.dtype <= 6, fn, ": ", name, ".dtype should be a cellrt_dtype_t (0..6), got ",
               c.dtype);
  CELLRT_CHECK(c.device == 0 || c.device == 1, fn, ": ", name, ".device should be a cellrt_device_t (0 or 1), got ",
               c.device);
  CELLRT_CHECK(c.data != nullptr, fn, ": ", name, ".data should not be NULL");
  cellrt::TensorView v;
  v.data = c.data;
  v.dtype = static_cast<cellrt::DType>(c.dtype);
  v.device = static_cast<cellrt::Device>(c.device);
  v.ndim = c.ndim;
  for (int i = 0; i < c.ndim; ++i) {
    v.shape[i] = c.shape[i];
    v.strides[i] = c.strides[i];
  }
  return v;
}

cellrt::FilterOptions filter_options(const cellrt_filter_options_t* options, const char* fn) {
  const auto o = read_options(options, cellrt_filter_options_init, fn, "cellrt_filter_options_t");
  cellrt::FilterOptions opts;
  opts.border = static_cast<cellrt::BorderMode>(o.border);
  opts.num_threads = o.num_threads;
  return opts;
}

// An output struct (may be NULL) the library fills: it must hold every
// field. Checked before the call's work: a refusal after it left the tiles or
// the output written under an error status.
template <typename T>
void check_output_struct(const T* out, const char* fn, const char* name, const char* type) {
  CELLRT_CHECK(out == nullptr || out->struct_size >= sizeof(T), fn, ": ", name, ".struct_size should be sizeof(",
               type, ") = ", sizeof(T), ", got ", out == nullptr ? 0 : out->struct_size);
}

void check_counts(const cellrt_counts_t* counts, const char* fn) {
  check_output_struct(counts, fn, "counts", "cellrt_counts_t");
}

void write_counts(cellrt_counts_t* counts, int64_t uncovered, int64_t nonfinite) {
  if (counts == nullptr) return;
  counts->uncovered = uncovered;
  counts->nonfinite = nonfinite;
}

}  // namespace

extern "C" {

const char* cellrt_last_error(void) { return g_last_error.c_str(); }
// Answered here rather than by cellrt_core, so that they work on any CPU:
// callers print them when reporting the CPU check's refusal.
const char* cellrt_version(void) { return CELLRT_VERSION_STRING; }
int32_t cellrt_c_api_version(void) { return CELLRT_C_API_VERSION; }
int32_t cellrt_has_cuda(void) { return CELLRT_WITH_CUDA ? 1 : 0; }
int32_t cellrt_cuda_device_count(void) {
  // No device is usable through a library that cannot run on this CPU.
  return cellrt::c_abi::unsupported_cpu() != nullptr ? 0 : cellrt::cuda_device_count();
}

void cellrt_tile_options_init(cellrt_tile_options_t* options) {
  if (options == nullptr) return;
  const cellrt::TileOptions d;
  *options = cellrt_tile_options_t{sizeof(cellrt_tile_options_t), d.scale, d.offset, d.num_threads};
}

void cellrt_stitch_options_init(cellrt_stitch_options_t* options) {
  if (options == nullptr) return;
  const cellrt::StitchOptions d;
  *options = cellrt_stitch_options_t{sizeof(cellrt_stitch_options_t), static_cast<int32_t>(d.blend),
                                     d.overlap_y, d.overlap_x, d.sigma_scale,
                                     static_cast<int32_t>(d.activation), d.argmax ? 1 : 0,
                                     d.fill_value, d.num_threads};
}

cellrt_status_t cellrt_tile(const cellrt_tensor_t* image, const int64_t* origins, const cellrt_tensor_t* tiles,
                            const cellrt_tile_options_t* options, void* cuda_stream, cellrt_counts_t* counts) {
  static constexpr const char* fn = "cellrt_tile";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_tile_options_init, fn, "cellrt_tile_options_t");
    check_counts(counts, fn);
    cellrt::TileOptions opts;
    opts.scale = o.scale;
    opts.offset = o.offset;
    opts.num_threads = o.num_threads;
    const cellrt::TileResult r =
        cellrt::tile(to_view(image, fn, "image"), origins, to_view(tiles, fn, "tiles"), opts, cuda_stream);
    write_counts(counts, 0, r.nonfinite);
  });
}

cellrt_status_t cellrt_stitch(const cellrt_tensor_t* tiles, const int64_t* origins, const cellrt_tensor_t* out,
                              const cellrt_stitch_options_t* options, void* cuda_stream, cellrt_counts_t* counts) {
  static constexpr const char* fn = "cellrt_stitch";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_stitch_options_init, fn, "cellrt_stitch_options_t");
    check_counts(counts, fn);
    cellrt::StitchOptions opts;
    opts.blend = static_cast<cellrt::Blend>(o.blend);
    opts.overlap_y = o.overlap_y;
    opts.overlap_x = o.overlap_x;
    opts.sigma_scale = o.sigma_scale;
    opts.activation = static_cast<cellrt::Activation>(o.activation);
    opts.argmax = o.argmax != 0;
    opts.fill_value = o.fill_value;
    opts.num_threads = o.num_threads;
    const cellrt::StitchResult r =
        cellrt::stitch(to_view(tiles, fn, "tiles"), origins, to_view(out, fn, "out"), opts, cuda_stream);
    write_counts(counts, r.uncovered, r.nonfinite);
  });
}

void cellrt_label_options_init(cellrt_label_options_t* options) {
  if (options == nullptr) return;
  const cellrt::LabelOptions d;
  *options = cellrt_label_options_t{sizeof(cellrt_label_options_t), d.connectivity, d.num_threads};
}

void cellrt_measure_options_init(cellrt_measure_options_t* options) {
  if (options == nullptr) return;
  const cellrt::MeasureOptions d;
  *options = cellrt_measure_options_t{sizeof(cellrt_measure_options_t), d.num_threads};
}

cellrt_status_t cellrt_label(const cellrt_tensor_t* mask, const cellrt_tensor_t* labels,
                             const cellrt_label_options_t* options, void* cuda_stream, int64_t* num_objects) {
  static constexpr const char* fn = "cellrt_label";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_label_options_init, fn, "cellrt_label_options_t");
    cellrt::LabelOptions opts;
    opts.connectivity = o.connectivity;
    opts.num_threads = o.num_threads;
    const int64_t n = cellrt::label(to_view(mask, fn, "mask"), to_view(labels, fn, "labels"), opts, cuda_stream);
    if (num_objects != nullptr) *num_objects = n;
  });
}

int32_t cellrt_measure_columns(int32_t intensity_channels) {
  // A caller sizes its feature buffer from this: -1 (refused by cellrt_measure) rather than a negative K's
  // smaller count or an overflowed one.
  if (intensity_channels < 0 ||
      intensity_channels > (INT32_MAX - cellrt::kMeasureShapeColumns) / cellrt::kMeasureIntensityColumns)
    return -1;
  return cellrt::kMeasureShapeColumns + cellrt::kMeasureIntensityColumns * intensity_channels;
}

cellrt_status_t cellrt_measure(const cellrt_tensor_t* labels, int64_t num_objects, const cellrt_tensor_t* intensities,
                               const cellrt_tensor_t* features, const cellrt_measure_options_t* options,
                               void* cuda_stream, int64_t* out_of_range) {
  static constexpr const char* fn = "cellrt_measure";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_measure_options_init, fn, "cellrt_measure_options_t");
    cellrt::MeasureOptions opts;
    opts.num_threads = o.num_threads;
    cellrt::TensorView inten;
    if (intensities != nullptr) inten = to_view(intensities, fn, "intensities");
    const cellrt::MeasureResult r = cellrt::measure(to_view(labels, fn, "labels"), num_objects,
                                                    intensities != nullptr ? &inten : nullptr,
                                                    to_view(features, fn, "features"), opts, cuda_stream);
    if (out_of_range != nullptr) *out_of_range = r.out_of_range;
  });
}

void cellrt_label_measure_options_init(cellrt_label_measure_options_t* options) {
  if (options == nullptr) return;
  const cellrt::LabelMeasureOptions d;
  *options = cellrt_label_measure_options_t{sizeof(cellrt_label_measure_options_t), d.connectivity, d.num_threads,
                                            d.min_area};
}

cellrt_status_t cellrt_label_measure(const cellrt_tensor_t* mask, const cellrt_tensor_t* labels,
                                     const cellrt_tensor_t* intensities, const cellrt_tensor_t* features,
                                     const cellrt_label_measure_options_t* options, void* cuda_stream,
                                     int64_t* num_objects, int64_t* measured) {
  static constexpr const char* fn = "cellrt_label_measure";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_label_measure_options_init, fn, "cellrt_label_measure_options_t");
    cellrt::LabelMeasureOptions opts;
    opts.connectivity = o.connectivity;
    opts.num_threads = o.num_threads;
    opts.min_area = o.min_area;
    cellrt::TensorView inten;
    if (intensities != nullptr) inten = to_view(intensities, fn, "intensities");
    const cellrt::LabelMeasureResult r =
        cellrt::label_measure(to_view(mask, fn, "mask"), to_view(labels, fn, "labels"),
                              intensities != nullptr ? &inten : nullptr, to_view(features, fn, "features"), opts,
                              cuda_stream);
    if (num_objects != nullptr) *num_objects = r.num_objects;
    if (measured != nullptr) *measured = r.measured;
  });
}

void cellrt_filter_options_init(cellrt_filter_options_t* options) {
  if (options == nullptr) return;
  const cellrt::FilterOptions d;
  *options = cellrt_filter_options_t{sizeof(cellrt_filter_options_t), static_cast<int32_t>(d.border), d.num_threads};
}

void cellrt_mask_nms_options_init(cellrt_mask_nms_options_t* options) {
  if (options == nullptr) return;
  const cellrt::MaskNmsOptions d;
  *options = cellrt_mask_nms_options_t{sizeof(cellrt_mask_nms_options_t), d.iou_threshold, d.ios_threshold,
                                       d.class_aware ? 1 : 0, d.num_threads};
}

cellrt_status_t cellrt_mask_nms(const cellrt_tensor_t* boxes, const cellrt_tensor_t* scores,
                                const cellrt_tensor_t* classes, const cellrt_tensor_t* mask_offsets,
                                const cellrt_tensor_t* mask_data, const cellrt_tensor_t* keep,
                                const cellrt_mask_nms_options_t* options, int64_t* num_kept) {
  static constexpr const char* fn = "cellrt_mask_nms";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_mask_nms_options_init, fn, "cellrt_mask_nms_options_t");
    cellrt::MaskNmsOptions opts;
    opts.iou_threshold = o.iou_threshold;
    opts.ios_threshold = o.ios_threshold;
    opts.class_aware = o.class_aware != 0;
    opts.num_threads = o.num_threads;
    cellrt::TensorView no_classes;
    const int64_t kept = cellrt::mask_nms(to_view(boxes, fn, "boxes"), to_view(scores, fn, "scores"),
                                          classes != nullptr ? to_view(classes, fn, "classes") : no_classes,
                                          to_view(mask_offsets, fn, "mask_offsets"),
                                          to_view(mask_data, fn, "mask_data"),
                                          to_view(keep, fn, "keep"), opts);
    if (num_kept != nullptr) *num_kept = kept;
  });
}

struct cellrt_drift_monitor {
  cellrt::DriftMonitor monitor;
};

cellrt_status_t cellrt_drift_monitor_create(const cellrt_tensor_t* reference, double sigma, int32_t window,
                                            double threshold, cellrt_drift_monitor_t** monitor) {
  // NULL on every failure, the CPU check's included.
  if (monitor != nullptr) *monitor = nullptr;
  static constexpr const char* fn = "cellrt_drift_monitor_create";
  return translate_exceptions([&] {
    CELLRT_CHECK(monitor != nullptr, fn, ": monitor (the output pointer) should not be NULL");
    *monitor = new cellrt_drift_monitor{cellrt::DriftMonitor(to_view(reference, fn, "reference"), sigma, window,
                                                             threshold)};
  });
}

cellrt_status_t cellrt_drift_monitor_update(cellrt_drift_monitor_t* monitor, const float* embedding, int64_t dims,
                                            cellrt_drift_step_t* step) {
  static constexpr const char* fn = "cellrt_drift_monitor_update";
  return translate_exceptions([&] {
    CELLRT_CHECK(monitor != nullptr, fn, ": monitor should not be NULL");
    check_output_struct(step, fn, "step", "cellrt_drift_step_t");
    const cellrt::DriftStep s = monitor->monitor.update(embedding, dims);
    if (step != nullptr) {
      step->index = s.index;
      step->statistic = s.statistic;
      step->threshold = s.threshold;
      step->window_full = s.window_full ? 1 : 0;
      step->alarm = s.alarm ? 1 : 0;
    }
  });
}

cellrt_status_t cellrt_drift_monitor_reset(cellrt_drift_monitor_t* monitor) {
  static constexpr const char* fn = "cellrt_drift_monitor_reset";
  return translate_exceptions([&] {
    CELLRT_CHECK(monitor != nullptr, fn, ": monitor should not be NULL");
    monitor->monitor.reset();
  });
}

void cellrt_drift_monitor_destroy(cellrt_drift_monitor_t* monitor) { delete monitor; }

void cellrt_morphology_options_init(cellrt_morphology_options_t* options) {
  if (options == nullptr) return;
  const cellrt::MorphologyOptions d;
  *options = cellrt_morphology_options_t{sizeof(cellrt_morphology_options_t), static_cast<int32_t>(d.footprint),
                                         d.num_threads};
}

cellrt_status_t cellrt_histogram(const cellrt_tensor_t* image, const cellrt_tensor_t* counts, int32_t num_threads,
                                 void* cuda_stream) {
  static constexpr const char* fn = "cellrt_histogram";
  return translate_exceptions(
      [&] { cellrt::histogram(to_view(image, fn, "image"), to_view(counts, fn, "counts"), num_threads, cuda_stream); });
}

cellrt_status_t cellrt_rbf_kernel(const cellrt_tensor_t* queries, const cellrt_tensor_t* points, double sigma,
                                  const cellrt_tensor_t* out, int32_t num_threads, void* cuda_stream) {
  static constexpr const char* fn = "cellrt_rbf_kernel";
  return translate_exceptions([&] {
    cellrt::rbf_kernel(to_view(queries, fn, "queries"), to_view(points, fn, "points"), sigma, to_view(out, fn, "out"),
                       num_threads, cuda_stream);
  });
}

cellrt_status_t cellrt_gaussian_blur(const cellrt_tensor_t* image, const cellrt_tensor_t* out, double sigma,
                                     double truncate, const cellrt_filter_options_t* options, void* cuda_stream) {
  static constexpr const char* fn = "cellrt_gaussian_blur";
  return translate_exceptions([&] {
    cellrt::gaussian_blur(to_view(image, fn, "image"), to_view(out, fn, "out"), sigma, truncate,
                          filter_options(options, fn),
                          cuda_stream);
  });
}

cellrt_status_t cellrt_gaussian_blur_recursive(const cellrt_tensor_t* image, const cellrt_tensor_t* out, double sigma,
                                               const cellrt_filter_options_t* options, void* cuda_stream) {
  static constexpr const char* fn = "cellrt_gaussian_blur_recursive";
  return translate_exceptions([&] {
    cellrt::gaussian_blur_recursive(to_view(image, fn, "image"), to_view(out, fn, "out"), sigma,
                                    filter_options(options, fn),
                                    cuda_stream);
  });
}

cellrt_status_t cellrt_box_mean(const cellrt_tensor_t* image, const cellrt_tensor_t* out, int32_t size_y,
                                int32_t size_x, const cellrt_filter_options_t* options, void* cuda_stream) {
  static constexpr const char* fn = "cellrt_box_mean";
  return translate_exceptions([&] {
    cellrt::box_mean(to_view(image, fn, "image"), to_view(out, fn, "out"), size_y, size_x, filter_options(options, fn),
                     cuda_stream);
  });
}

cellrt_status_t cellrt_fill_holes(const cellrt_tensor_t* mask, const cellrt_tensor_t* out, int32_t connectivity,
                                  void* cuda_stream) {
  static constexpr const char* fn = "cellrt_fill_holes";
  return translate_exceptions(
      [&] { cellrt::fill_holes(to_view(mask, fn, "mask"), to_view(out, fn, "out"), connectivity, cuda_stream); });
}

cellrt_status_t cellrt_distance_transform(const cellrt_tensor_t* mask, const cellrt_tensor_t* out,
                                          int32_t num_threads) {
  static constexpr const char* fn = "cellrt_distance_transform";
  return translate_exceptions(
      [&] { cellrt::distance_transform(to_view(mask, fn, "mask"), to_view(out, fn, "out"), num_threads); });
}

cellrt_status_t cellrt_h_maxima_seeds(const cellrt_tensor_t* values, float h, const cellrt_tensor_t* seeds,
                                      int32_t connectivity, int64_t* count) {
  static constexpr const char* fn = "cellrt_h_maxima_seeds";
  return translate_exceptions([&] {
    const int64_t n =
        cellrt::h_maxima_seeds(to_view(values, fn, "values"), h, to_view(seeds, fn, "seeds"), connectivity);
    if (count != nullptr) *count = n;
  });
}

cellrt_status_t cellrt_watershed(const cellrt_tensor_t* surface, const cellrt_tensor_t* labels,
                                 const cellrt_tensor_t* mask, int32_t connectivity, int64_t* labelled) {
  static constexpr const char* fn = "cellrt_watershed";
  return translate_exceptions([&] {
    const int64_t n = cellrt::watershed(to_view(surface, fn, "surface"), to_view(labels, fn, "labels"),
                                        to_view(mask, fn, "mask"), connectivity);
    if (labelled != nullptr) *labelled = n;
  });
}

cellrt_status_t cellrt_watershed_ex(const cellrt_tensor_t* surface, const cellrt_tensor_t* labels,
                                    const cellrt_tensor_t* mask, int32_t connectivity, int32_t num_threads,
                                    int64_t* labelled) {
  static constexpr const char* fn = "cellrt_watershed_ex";
  return translate_exceptions([&] {
    const int64_t n = cellrt::watershed(to_view(surface, fn, "surface"), to_view(labels, fn, "labels"),
                                        to_view(mask, fn, "mask"), connectivity, num_threads);
    if (labelled != nullptr) *labelled = n;
  });
}

cellrt_status_t cellrt_remove_small_objects(const cellrt_tensor_t* labels, const cellrt_tensor_t* out,
                                            int64_t min_area, int32_t num_threads, int64_t* num_objects) {
  static constexpr const char* fn = "cellrt_remove_small_objects";
  return translate_exceptions([&] {
    const int64_t n = cellrt::remove_small_objects(to_view(labels, fn, "labels"), to_view(out, fn, "out"), min_area,
                                                   num_threads);
    if (num_objects != nullptr) *num_objects = n;
  });
}

cellrt_status_t cellrt_percentiles(const cellrt_tensor_t* values, const double* qs, int32_t count, double* out,
                                   int32_t num_threads, int64_t* finite) {
  static constexpr const char* fn = "cellrt_percentiles";
  return translate_exceptions([&] {
    const int64_t n = cellrt::percentiles(to_view(values, fn, "values"), qs, count, out, num_threads);
    if (finite != nullptr) *finite = n;
  });
}

cellrt_status_t cellrt_float_histogram(const cellrt_tensor_t* values, int32_t nbins, int64_t* counts, float* edges,
                                       int32_t num_threads, int64_t* finite) {
  static constexpr const char* fn = "cellrt_float_histogram";
  return translate_exceptions([&] {
    const int64_t n = cellrt::float_histogram(to_view(values, fn, "values"), nbins, counts, edges, num_threads);
    if (finite != nullptr) *finite = n;
  });
}

cellrt_status_t cellrt_binary_morphology(const cellrt_tensor_t* mask, const cellrt_tensor_t* out, int32_t radius,
                                         int32_t dilate, const cellrt_morphology_options_t* options,
                                         void* cuda_stream) {
  static constexpr const char* fn = "cellrt_binary_morphology";
  return translate_exceptions([&] {
    const auto o = read_options(options, cellrt_morphology_options_init, fn, "cellrt_morphology_options_t");
    cellrt::MorphologyOptions opts;
    opts.footprint = static_cast<cellrt::Footprint>(o.footprint);
    opts.num_threads = o.num_threads;
    cellrt::binary_morphology(to_view(mask, fn, "mask"), to_view(out, fn, "out"), radius, dilate != 0, opts,
                              cuda_stream);
  });
}

cellrt_status_t cellrt_contours(const cellrt_tensor_t* labels, int64_t num_objects, int64_t* offsets,
                                int32_t* points, double* perimeter, int32_t num_threads, void* cuda_stream,
                                int64_t* total) {
  static constexpr const char* fn = "cellrt_contours";
  return translate_exceptions([&] {
    cellrt::ContourOptions opts;
    opts.num_threads = num_threads;
    const int64_t n = cellrt::contours(to_view(labels, fn, "labels"), num_objects, offsets, points, perimeter, opts,
                                       cuda_stream);
    if (total != nullptr) *total = n;
  });
}

cellrt_status_t cellrt_tile_origins(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w, int64_t overlap_y,
                                   int64_t overlap_x, int64_t* origins, int64_t capacity, int64_t* count) {
  return translate_exceptions([&] {
    const int64_t n = cellrt::tile_origins(height, width, tile_h, tile_w, overlap_y, overlap_x);
    // Before the buffer is checked, so a caller whose buffer is too small learns the size it needs.
    if (count != nullptr) *count = n;
    if (origins != nullptr)
      cellrt::tile_origins(height, width, tile_h, tile_w, overlap_y, overlap_x, origins, capacity);
  });
}

}  // extern "C"
