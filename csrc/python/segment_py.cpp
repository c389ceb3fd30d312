// Bindings for label and measure: array conversion and m.def only.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <tuple>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cellrt/contour.h"
#include "cellrt/fill_holes.h"
#include "cellrt/filter.h"
#include "cellrt/grow.h"
#include "cellrt/remove_small_objects.h"
#include "cellrt/watershed.h"
#include "cellrt/histogram.h"
#include "cellrt/label.h"
#include "cellrt/label_measure.h"
#include "cellrt/measure.h"
#include "cellrt/morphology.h"
#include "python/array_view.h"
#include "segment/morphology_kernel.h"
#include "segment/segment_ops.h"

namespace py = pybind11;

namespace cellrt::python {

namespace {

int64_t label_host(const py::array& mask, py::array& labels, int connectivity, int num_threads) {
  const TensorView in = host_view(mask, "mask", false);
  const TensorView out = host_view(labels, "labels", true);
  LabelOptions o;
  o.connectivity = connectivity;
  o.num_threads = num_threads;
  py::gil_scoped_release release;
  return label(in, out, o);
}

int64_t measure_host(const py::array& labels, int64_t num_objects, const py::object& intensities, py::array& features,
                     int num_threads) {
  const TensorView lab = host_view(labels, "labels", false);
  const TensorView feat = host_view(features, "features", true);
  TensorView inten;
  py::array inten_array;
  if (!intensities.is_none()) {
    inten_array = py::array::ensure(intensities);
    inten = host_view(inten_array, "intensities", false);
  }
  MeasureOptions o;
  o.num_threads = num_threads;
  py::gil_scoped_release release;
  return measure(lab, num_objects, intensities.is_none() ? nullptr : &inten, feat, o).out_of_range;
}

// Host views of label_measure's arguments (intensities optional).
struct LabelMeasureViews {
  TensorView mask, labels, features, intensities;
  py::array intensity_array;  // keeps a converted array alive
  bool has_intensities = false;
};

LabelMeasureViews label_measure_views(const py::array& mask, py::array& labels, const py::object& intensities,
                                      py::array& features) {
  LabelMeasureViews v;
  v.mask = host_view(mask, "mask", false);
  v.labels = host_view(labels, "labels", true);
  v.features = host_view(features, "features", true);
  if (!intensities.is_none()) {
    v.intensity_array = py::array::ensure(intensities);
    v.intensities = host_view(v.intensity_array, "intensities", false);
    v.has_intensities = true;
  }
  return v;
}

py::tuple label_measure_host(const py::array& mask, py::array& labels, const py::object& intensities,
                             py::array& features, int connectivity, int64_t min_area, int num_threads) {
  const LabelMeasureViews v = label_measure_views(mask, labels, intensities, features);
  LabelMeasureOptions o;
  o.connectivity = connectivity;
  o.min_area = min_area;
  o.num_threads = num_threads;
  LabelMeasureResult r;
  {
    py::gil_scoped_release release;
    r = label_measure(v.mask, v.labels, v.has_intensities ? &v.intensities : nullptr, v.features, o);
  }
  return py::make_tuple(r.num_objects, r.measured);
}

py::tuple label_measure_by_pixels_host(const py::array& mask, py::array& labels, const py::object& intensities,
                                       py::array& features, int connectivity, int64_t min_area) {
  const LabelMeasureViews v = label_measure_views(mask, labels, intensities, features);
  const TensorView* channels = v.has_intensities ? &v.intensities : nullptr;
  detail::check_label_views("label_measure_by_pixels", v.mask, v.labels, connectivity);
  detail::check_measure_views("label_measure_by_pixels", v.labels, channels, v.features, -1);
  LabelMeasureResult r;
  {
    py::gil_scoped_release release;
    r = detail::label_measure_by_pixels(static_cast<const uint8_t*>(v.mask.data), v.labels, connectivity, min_area,
                                        v.features.shape[0], channels, static_cast<double*>(v.features.data));
  }
  return py::make_tuple(r.num_objects, r.measured);
}

FilterOptions filter_options(int border, int num_threads) {
  FilterOptions o;
  o.border = static_cast<BorderMode>(border);
  o.num_threads = num_threads;
  return o;
}

void gaussian_blur_host(const py::array& image, py::array& out, double sigma, double truncate, int border,
                        int num_threads) {
  const TensorView in = host_view(image, "image", false);
  const TensorView dst = host_view(out, "out", true);
  const FilterOptions o = filter_options(border, num_threads);
  py::gil_scoped_release release;
  gaussian_blur(in, dst, sigma, truncate, o);
}

void gaussian_blur_recursive_host(const py::array& image, py::array& out, double sigma, int border, int num_threads) {
  const TensorView in = host_view(image, "image", false);
  const TensorView dst = host_view(out, "out", true);
  const FilterOptions o = filter_options(border, num_threads);
  py::gil_scoped_release release;
  gaussian_blur_recursive(in, dst, sigma, o);
}

void box_mean_host(const py::array& image, py::array& out, int size_y, int size_x, int border, int num_threads) {
  const TensorView in = host_view(image, "image", false);
  const TensorView dst = host_view(out, "out", true);
  const FilterOptions o = filter_options(border, num_threads);
  py::gil_scoped_release release;
  box_mean(in, dst, size_y, size_x, o);
}

// op 0: gaussian_blur (a = sigma, b = truncate); 1: box_mean (a = size_y, b = size_x);
// 2: gaussian_blur_recursive (a = sigma).
py::array_t<float> filter_by_lines_host(const py::array& image, int op, double a, double b, int border) {
  const TensorView in = host_view(image, "image", false);
  CELLRT_CHECK(in.ndim == 2 && in.dtype == DType::kFloat32, "filter_by_lines: image should be (H, W) float32");
  const auto height = static_cast<int32_t>(in.shape[0]), width = static_cast<int32_t>(in.shape[1]);
  py::array_t<float> out({in.shape[0], in.shape[1]});
  const auto* src = static_cast<const float*>(in.data);
  float* dst = out.mutable_data();
  if (height == 0 || width == 0) return out;  // as the filters: an empty line has no border sample to map
  py::gil_scoped_release release;
  if (op == 0)
    detail::gaussian_blur_by_lines(src, dst, height, width, a, b, border);
  else if (op == 2)
    detail::gaussian_blur_recursive_by_lines(src, dst, height, width, a, border);
  else
    detail::box_mean_by_lines(src, dst, height, width, static_cast<int32_t>(a), static_cast<int32_t>(b), border);
  return out;
}

void filter_device(int op, uintptr_t image, uintptr_t out, const std::vector<int64_t>& shape, double a, double b,
                   int border, uintptr_t stream) {
  const TensorView in = contiguous_device_view(image, static_cast<int32_t>(DType::kFloat32), shape, "image");
  const TensorView dst = contiguous_device_view(out, static_cast<int32_t>(DType::kFloat32), shape, "out");
  const FilterOptions o = filter_options(border, 0);
  py::gil_scoped_release release;
  if (op == 0)
    gaussian_blur(in, dst, a, b, o, reinterpret_cast<void*>(stream));
  else if (op == 2)
    gaussian_blur_recursive(in, dst, a, o, reinterpret_cast<void*>(stream));
  else
    box_mean(in, dst, static_cast<int32_t>(a), static_cast<int32_t>(b), o, reinterpret_cast<void*>(stream));
}

int64_t contours_device(uintptr_t labels, const std::vector<int64_t>& shape, int64_t num_objects, uintptr_t offsets,
                        uintptr_t points, uintptr_t perimeter, uintptr_t stream) {
  const TensorView lab = contiguous_device_view(labels, static_cast<int32_t>(DType::kInt32), shape, "labels");
  py::gil_scoped_release release;
  return contours(lab, num_objects, reinterpret_cast<int64_t*>(offsets), reinterpret_cast<int32_t*>(points),
                  reinterpret_cast<double*>(perimeter), ContourOptions{}, reinterpret_cast<void*>(stream));
}

void fill_holes_device(uintptr_t mask, uintptr_t out, const std::vector<int64_t>& shape, int connectivity,
                       uintptr_t stream) {
  const TensorView in = contiguous_device_view(mask, static_cast<int32_t>(DType::kUInt8), shape, "mask");
  const TensorView dst = contiguous_device_view(out, static_cast<int32_t>(DType::kUInt8), shape, "out");
  py::gil_scoped_release release;
  fill_holes(in, dst, connectivity, reinterpret_cast<void*>(stream));
}

void histogram_device(uintptr_t image, int32_t dtype, int64_t size, uintptr_t counts, uintptr_t stream) {
  const TensorView in = contiguous_device_view(image, dtype, {size}, "image");
  const int64_t bins = static_cast<DType>(dtype) == DType::kUInt8 ? 256 : 65536;
  const TensorView out = contiguous_device_view(counts, static_cast<int32_t>(DType::kInt64), {bins}, "counts");
  py::gil_scoped_release release;
  histogram(in, out, 0, reinterpret_cast<void*>(stream));
}

int64_t grow_labels_host(py::array& labels, const py::array& mask, int steps) {
  const TensorView lab = host_view(labels, "labels", true);
  const TensorView m = host_view(mask, "mask", false);
  py::gil_scoped_release release;
  return grow_labels(lab, m, steps);
}

int64_t remove_small_objects_host(const py::array& labels, py::array& out, int64_t min_area, int num_threads) {
  const TensorView in = host_view(labels, "labels", false);
  const TensorView dst = host_view(out, "out", true);
  py::gil_scoped_release release;
  return remove_small_objects(in, dst, min_area, num_threads);
}

py::array_t<float> distance_transform_host(const py::array& mask, int num_threads) {
  const TensorView in = host_view(mask, "mask", false);
  py::array_t<float> out({in.shape[0], in.shape[1]});
  const TensorView dst = host_view(out, "out", true);
  py::gil_scoped_release release;
  distance_transform(in, dst, num_threads);
  return out;
}

py::array_t<int32_t> h_maxima_seeds_host(const py::array& values, float h, int connectivity) {
  const TensorView in = host_view(values, "values", false);
  py::array_t<int32_t> out({in.shape[0], in.shape[1]});
  const TensorView dst = host_view(out, "seeds", true);
  py::gil_scoped_release release;
  h_maxima_seeds(in, h, dst, connectivity);
  return out;
}

int64_t watershed_host(const py::array& surface, py::array& labels, const py::array& mask, int connectivity,
                       int num_threads) {
  const TensorView s = host_view(surface, "surface", false);
  const TensorView lab = host_view(labels, "labels", true);
  const TensorView m = host_view(mask, "mask", false);
  py::gil_scoped_release release;
  return watershed(s, lab, m, connectivity, num_threads);
}

py::array_t<uint8_t> fill_holes_host(const py::array& mask, int connectivity) {
  const TensorView in = host_view(mask, "mask", false);
  py::array_t<uint8_t> out({in.shape[0], in.shape[1]});
  const TensorView dst = host_view(out, "out", true);
  py::gil_scoped_release release;
  fill_holes(in, dst, connectivity);
  return out;
}

MorphologyOptions morphology_options(int footprint, int num_threads) {
  MorphologyOptions o;
  o.footprint = static_cast<Footprint>(footprint);
  o.num_threads = num_threads;
  return o;
}

py::array_t<uint8_t> binary_morphology_host(const py::array& mask, int radius, int footprint, bool dilate,
                                            int num_threads) {
  const TensorView in = host_view(mask, "mask", false);
  py::array_t<uint8_t> out({in.shape[0], in.shape[1]});
  const TensorView dst = host_view(out, "out", true);
  py::gil_scoped_release release;
  binary_morphology(in, dst, radius, dilate, morphology_options(footprint, num_threads));
  return out;
}

void binary_morphology_device(uintptr_t mask, uintptr_t out, const std::vector<int64_t>& shape, int radius,
                              int footprint, bool dilate, uintptr_t stream) {
  const TensorView in = contiguous_device_view(mask, static_cast<int32_t>(DType::kUInt8), shape, "mask");
  const TensorView dst = contiguous_device_view(out, static_cast<int32_t>(DType::kUInt8), shape, "out");
  py::gil_scoped_release release;
  binary_morphology(in, dst, radius, dilate, morphology_options(footprint, 0), reinterpret_cast<void*>(stream));
}

// Both clearance formulas of morphology_kernel.h, row sweeps and per pixel,
// run on the host: the CUDA kernel's per-pixel arithmetic tested without a GPU.
py::array_t<int16_t> row_clearances_host(const py::array& mask, int cap, bool invert, bool by_pixel) {
  const TensorView in = host_view(mask, "mask", false);
  CELLRT_CHECK(in.ndim == 2 && in.dtype == DType::kUInt8, "row_clearances: mask should be (H, W) uint8");
  CELLRT_CHECK(cap >= 0 && cap < 32767, "row_clearances: cap should be in [0, 32767), got ", cap);
  const auto height = static_cast<int32_t>(in.shape[0]), width = static_cast<int32_t>(in.shape[1]);
  py::array_t<int16_t> out({in.shape[0], in.shape[1]});
  const auto* rows = static_cast<const uint8_t*>(in.data);
  int16_t* c = out.mutable_data();
  for (int32_t y = 0; y < height; ++y) {
    const uint8_t* row = rows + int64_t{y} * width;
    if (by_pixel)
      for (int32_t x = 0; x < width; ++x)
        c[int64_t{y} * width + x] = detail::pixel_clearance(row, width, x, invert, static_cast<int16_t>(cap));
    else
      detail::row_clearance(row, width, invert, static_cast<int16_t>(cap), c + int64_t{y} * width);
  }
  return out;
}

std::pair<std::vector<double>, int64_t> percentiles_host(const py::array& values, const std::vector<double>& qs,
                                                         int num_threads) {
  const TensorView in = host_view(values, "values", false);
  std::vector<double> out(qs.size());
  py::gil_scoped_release release;
  const int64_t finite = percentiles(in, qs.data(), static_cast<int32_t>(qs.size()), out.data(), num_threads);
  return {out, finite};
}

// (counts, edges, number of finite values)
std::tuple<py::array_t<int64_t>, py::array_t<float>, int64_t> float_histogram_host(const py::array& values,
                                                                                   int nbins, int num_threads) {
  const TensorView in = host_view(values, "values", false);
  if (nbins < 1 || nbins > (1 << 24))   // before allocating; the kernel checks it as well
    throw std::invalid_argument("float_histogram: nbins should be 1 .. 2^24, got " + std::to_string(nbins));
  py::array_t<int64_t> counts(nbins);
  py::array_t<float> edges(int64_t{nbins} + 1);
  int64_t* c = counts.mutable_data();
  float* e = edges.mutable_data();
  int64_t finite = 0;
  {
    py::gil_scoped_release release;
    finite = float_histogram(in, nbins, c, e, num_threads);
  }
  return {counts, edges, finite};
}

py::array_t<int64_t> histogram_host(const py::array& image, int num_threads) {
  const TensorView in = host_view(image, "image", false);
  py::array_t<int64_t> counts(in.dtype == DType::kUInt8 ? 256 : 65536);
  const TensorView out = host_view(counts, "counts", true);
  py::gil_scoped_release release;
  histogram(in, out, num_threads);
  return counts;
}

// First contour pass: offsets (CSR) and perimeters, without the points.
struct ContourCounts {
  py::array_t<int64_t> offsets;
  py::array_t<double> perimeter;
  int64_t total;
};

ContourCounts count_contours(const TensorView& lab, int64_t num_objects, const ContourOptions& o) {
  CELLRT_CHECK(num_objects >= 0, "contours: num_objects should be >= 0, got ", num_objects);
  ContourCounts c{py::array_t<int64_t>(num_objects + 1), py::array_t<double>(num_objects), 0};
  int64_t* offsets = c.offsets.mutable_data();
  double* perimeter = c.perimeter.mutable_data();
  py::gil_scoped_release release;
  c.total = contours(lab, num_objects, offsets, nullptr, perimeter, o);
  return c;
}

ContourOptions contour_options(int num_threads) {
  ContourOptions o;
  o.num_threads = num_threads;
  return o;
}

py::tuple contours_host(const py::array& labels, int64_t num_objects, int num_threads) {
  const TensorView lab = host_view(labels, "labels", false);
  const ContourOptions o = contour_options(num_threads);
  ContourCounts c = count_contours(lab, num_objects, o);
  py::array_t<int32_t> points({c.total, int64_t{2}});
  int64_t* offsets = c.offsets.mutable_data();
  int32_t* out = points.mutable_data();
  {
    py::gil_scoped_release release;
    contours(lab, num_objects, offsets, out, nullptr, o);
  }
  return py::make_tuple(c.offsets, points, c.perimeter);
}

py::tuple hole_contours_arrays(const HoleContours& holes) {
  py::array_t<int64_t> object_offsets(static_cast<py::ssize_t>(holes.object_offsets.size()));
  std::copy(holes.object_offsets.begin(), holes.object_offsets.end(), object_offsets.mutable_data());
  py::array_t<int64_t> point_offsets(static_cast<py::ssize_t>(holes.point_offsets.size()));
  std::copy(holes.point_offsets.begin(), holes.point_offsets.end(), point_offsets.mutable_data());
  py::array_t<int32_t> points({static_cast<py::ssize_t>(holes.points.size() / 2), py::ssize_t{2}});
  std::copy(holes.points.begin(), holes.points.end(), points.mutable_data());
  return py::make_tuple(object_offsets, point_offsets, points);
}

py::tuple hole_contours_host(const py::array& labels, int64_t num_objects, int num_threads) {
  const TensorView lab = host_view(labels, "labels", false);
  HoleContours holes;
  {
    py::gil_scoped_release release;
    holes = hole_contours(lab, num_objects, contour_options(num_threads));
  }
  return hole_contours_arrays(holes);
}

py::tuple hole_contours_device(uintptr_t labels, const std::vector<int64_t>& shape, int64_t num_objects,
                               uintptr_t stream) {
  const TensorView lab = contiguous_device_view(labels, static_cast<int32_t>(DType::kInt32), shape, "labels");
  HoleContours holes;
  {
    py::gil_scoped_release release;
    holes = hole_contours(lab, num_objects, ContourOptions{}, reinterpret_cast<void*>(stream));
  }
  return hole_contours_arrays(holes);
}

int64_t label_device(uintptr_t mask, const std::vector<int64_t>& shape, uintptr_t labels, int connectivity,
                     uintptr_t stream) {
  const TensorView in = contiguous_device_view(mask, static_cast<int32_t>(DType::kUInt8), shape, "mask");
  const TensorView out = contiguous_device_view(labels, static_cast<int32_t>(DType::kInt32), shape, "labels");
  LabelOptions o;
  o.connectivity = connectivity;
  py::gil_scoped_release release;
  return label(in, out, o, reinterpret_cast<void*>(stream));
}

int64_t measure_device(uintptr_t labels, const std::vector<int64_t>& shape, int64_t num_objects, uintptr_t image,
                       int32_t image_dtype, const std::vector<int64_t>& image_shape,
                       const std::vector<int64_t>& image_strides, uintptr_t features, int64_t columns,
                       uintptr_t stream) {
  const TensorView lab = contiguous_device_view(labels, static_cast<int32_t>(DType::kInt32), shape, "labels");
  const TensorView feat =
      contiguous_device_view(features, static_cast<int32_t>(DType::kFloat64), {num_objects, columns}, "features");
  TensorView inten;
  if (image != 0) inten = device_view(image, image_dtype, image_shape, image_strides, "intensities");
  py::gil_scoped_release release;
  return measure(lab, num_objects, image != 0 ? &inten : nullptr, feat, MeasureOptions{},
                 reinterpret_cast<void*>(stream))
      .out_of_range;
}

py::tuple label_measure_device(uintptr_t mask, const std::vector<int64_t>& shape, uintptr_t labels, uintptr_t image,
                               int32_t image_dtype, const std::vector<int64_t>& image_shape,
                               const std::vector<int64_t>& image_strides, uintptr_t features, int64_t capacity,
                               int64_t columns, int connectivity, int64_t min_area, uintptr_t stream) {
  const TensorView in = contiguous_device_view(mask, static_cast<int32_t>(DType::kUInt8), shape, "mask");
  const TensorView lab = contiguous_device_view(labels, static_cast<int32_t>(DType::kInt32), shape, "labels");
  const TensorView feat =
      contiguous_device_view(features, static_cast<int32_t>(DType::kFloat64), {capacity, columns}, "features");
  TensorView inten;
  if (image != 0) inten = device_view(image, image_dtype, image_shape, image_strides, "intensities");
  LabelMeasureOptions o;
  o.connectivity = connectivity;
  o.min_area = min_area;
  LabelMeasureResult r;
  {
    py::gil_scoped_release release;
    r = label_measure(in, lab, image != 0 ? &inten : nullptr, feat, o, reinterpret_cast<void*>(stream));
  }
  return py::make_tuple(r.num_objects, r.measured);
}

}  // namespace

void register_segment(py::module_& m) {
  m.def("label", &label_host, py::arg("mask"), py::arg("labels"), py::arg("connectivity"),
        py::arg("num_threads") = 0, "Label mask[H,W] (uint8) into labels[H,W] (int32); returns the count.");
  m.def("measure", &measure_host, py::arg("labels"), py::arg("num_objects"), py::arg("intensities"),
        py::arg("features"), py::arg("num_threads") = 0,
        "Fill features[N, 12 + 5K] (float64); returns the number of out-of-range label pixels.");
  m.def("label_measure", &label_measure_host, py::arg("mask"), py::arg("labels"), py::arg("intensities"),
        py::arg("features"), py::arg("connectivity"), py::arg("min_area"), py::arg("num_threads") = 0,
        "label + remove_small_objects + measure into features[capacity, 12 + 5K]; returns (N, rows measured).");
  m.def("label_measure_by_pixels", &label_measure_by_pixels_host, py::arg("mask"), py::arg("labels"),
        py::arg("intensities"), py::arg("features"), py::arg("connectivity"), py::arg("min_area"),
        "label_measure by the CUDA kernels' bodies run on the host, one after another: tests the CUDA arithmetic "
        "without a GPU. Returns (N, rows measured).");
  m.def("label_measure_cuda", &label_measure_device, py::arg("mask"), py::arg("shape"), py::arg("labels"),
        py::arg("image"), py::arg("image_dtype"), py::arg("image_shape"), py::arg("image_strides"),
        py::arg("features"), py::arg("capacity"), py::arg("columns"), py::arg("connectivity"), py::arg("min_area"),
        py::arg("stream"), "label_measure on device pointers; image 0 for none; synchronises the stream once.");
  m.def("gaussian_blur", &gaussian_blur_host, py::arg("image"), py::arg("out"), py::arg("sigma"),
        py::arg("truncate"), py::arg("border"), py::arg("num_threads") = 0);
  m.def("gaussian_blur_recursive", &gaussian_blur_recursive_host, py::arg("image"), py::arg("out"),
        py::arg("sigma"), py::arg("border"), py::arg("num_threads") = 0);
  m.def("box_mean", &box_mean_host, py::arg("image"), py::arg("out"), py::arg("size_y"), py::arg("size_x"),
        py::arg("border"), py::arg("num_threads") = 0);
  m.def("filter_by_lines", &filter_by_lines_host, py::arg("image"), py::arg("op"), py::arg("a"), py::arg("b"),
        py::arg("border"),
        "The CUDA filter passes run on the host (op 0 gaussian_blur: a=sigma, b=truncate; 1 box_mean: a=size_y, "
        "b=size_x; 2 gaussian_blur_recursive: a=sigma): tests the CUDA arithmetic without a GPU.");
  m.def("row_clearances", &row_clearances_host, py::arg("mask"), py::arg("cap"), py::arg("invert"),
        py::arg("by_pixel"),
        "Erosion row clearances by the row sweeps (CPU, large-radius CUDA) or per pixel (CUDA): tests the CUDA "
        "arithmetic without a GPU.");
  m.def("filter_cuda", &filter_device, py::arg("op"), py::arg("image"), py::arg("out"), py::arg("shape"),
        py::arg("a"), py::arg("b"), py::arg("border"), py::arg("stream"),
        "gaussian_blur (op 0) / box_mean (op 1) / gaussian_blur_recursive (op 2) on device pointers, on the given "
        "stream.");
  m.def("contours", &contours_host, py::arg("labels"), py::arg("num_objects"), py::arg("num_threads") = 0,
        "Outer contours of objects 1..N: (offsets[N+1], points[P,2] xy int32, perimeter[N]).");
  m.def("hole_contours_cuda", &hole_contours_device, py::arg("labels"), py::arg("shape"), py::arg("num_objects"),
        py::arg("stream"),
        "Hole contours of device labels, found on the GPU: host (object_offsets, point_offsets, points).");
  m.def("hole_contours", &hole_contours_host, py::arg("labels"), py::arg("num_objects"), py::arg("num_threads") = 0,
        "Hole contours of objects 1..N: (object_offsets[N+1], point_offsets[holes+1], points[P,2] xy int32).");
  m.def("label_cuda", &label_device, py::arg("mask"), py::arg("shape"), py::arg("labels"), py::arg("connectivity"),
        py::arg("stream"), "label on device pointers (from __cuda_array_interface__); synchronises the stream.");
  m.def("measure_cuda", &measure_device, py::arg("labels"), py::arg("shape"), py::arg("num_objects"),
        py::arg("image"), py::arg("image_dtype"), py::arg("image_shape"), py::arg("image_strides"),
        py::arg("features"), py::arg("columns"), py::arg("stream"),
        "measure on device pointers; image 0 for none; synchronises the stream.");
  m.def("fill_holes", &fill_holes_host, py::arg("mask"), py::arg("connectivity"),
        "mask[H,W] uint8 with holes (background not touching the border) filled.");
  m.def("binary_morphology", &binary_morphology_host, py::arg("mask"), py::arg("radius"), py::arg("footprint"),
        py::arg("dilate"), py::arg("num_threads") = 0,
        "mask[H,W] uint8 eroded (or dilated) by a square (0) or disk (1) of the radius; 0/1 uint8.");
  m.def("binary_morphology_cuda", &binary_morphology_device, py::arg("mask"), py::arg("out"), py::arg("shape"),
        py::arg("radius"), py::arg("footprint"), py::arg("dilate"), py::arg("stream"),
        "binary_morphology on device pointers (from __cuda_array_interface__), on the given stream.");
  m.def("contours_cuda", &contours_device, py::arg("labels"), py::arg("shape"), py::arg("num_objects"),
        py::arg("offsets"), py::arg("points"), py::arg("perimeter"), py::arg("stream"),
        "Outer contours on device pointers (points, perimeter may be 0); returns the total point count.");
  m.def("grow_labels", &grow_labels_host, py::arg("labels"), py::arg("mask"), py::arg("steps"),
        "In place: up to `steps` synchronous layers of seeded growth over the mask; returns pixels labelled.");
  m.def("remove_small_objects", &remove_small_objects_host, py::arg("labels"), py::arg("out"), py::arg("min_area"),
        py::arg("num_threads") = 0,
        "Objects of at least min_area pixels renumbered 1..N in label order into out (may be labels); returns N.");
  m.def("distance_transform", &distance_transform_host, py::arg("mask"), py::arg("num_threads") = 0,
        "Exact Euclidean distance of every non-zero mask pixel to the nearest zero one (float32; inf: none).");
  m.def("h_maxima_seeds", &h_maxima_seeds_host, py::arg("values"), py::arg("h"), py::arg("connectivity"),
        "One labelled seed pixel per h-maximum of the positive values (int32, 1..N in raster order).");
  m.def("watershed", &watershed_host, py::arg("surface"), py::arg("labels"), py::arg("mask"),
        py::arg("connectivity"), py::arg("num_threads") = 0,
        "In place: seeded watershed of the labels' seeds over the mask; returns pixels labelled.");
  m.def("fill_holes_cuda", &fill_holes_device, py::arg("mask"), py::arg("out"), py::arg("shape"),
        py::arg("connectivity"), py::arg("stream"), "fill_holes on device pointers, on the given stream.");
  m.def("histogram_cuda", &histogram_device, py::arg("image"), py::arg("dtype"), py::arg("size"), py::arg("counts"),
        py::arg("stream"), "histogram of a contiguous uint8/uint16 device buffer into int64 device counts.");
  m.def("percentiles", &percentiles_host, py::arg("values"), py::arg("qs"), py::arg("num_threads") = 0,
        "(percentiles of the finite float32 values as numpy's 'linear' method, number of finite values).");
  m.def("float_histogram", &float_histogram_host, py::arg("values"), py::arg("nbins"), py::arg("num_threads") = 0,
        "(counts, edges, number of finite values): numpy.histogram(values, nbins, range=(min, max)) of the finite "
        "float32 values.");
  m.def("histogram", &histogram_host, py::arg("image"), py::arg("num_threads") = 0,
        "Per-value counts of a uint8 (256) or uint16 (65536) image.");
  m.attr("MEASURE_SHAPE_COLUMNS") = kMeasureShapeColumns;
  m.attr("MEASURE_INTENSITY_COLUMNS") = kMeasureIntensityColumns;
}

}  // namespace cellrt::python
