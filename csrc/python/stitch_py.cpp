// Bindings for tile and stitch: array conversion and m.def only; checks
// live in the C++ core (ValueError) and the Python wrappers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cellrt/stitch.h"
#include "cellrt/tile.h"
#include "core/half.h"
#include "python/array_view.h"

namespace py = pybind11;

namespace cellrt::python {

namespace {

using Origins = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

const int64_t* origins_ptr(const Origins& origins, int64_t n) {
  CELLRT_CHECK(origins.ndim() == 2 && origins.shape(0) == n && origins.shape(1) == 2,
               "origins should have shape (", n, ", 2), got ndim ", origins.ndim());
  return n ? origins.data() : nullptr;
}

StitchOptions stitch_options(int blend, int overlap_y, int overlap_x, float sigma_scale, int activation,
                             bool argmax, float fill_value, int num_threads) {
  StitchOptions o;
  o.blend = static_cast<Blend>(blend);
  o.overlap_y = overlap_y;
  o.overlap_x = overlap_x;
  o.sigma_scale = sigma_scale;
  o.activation = static_cast<Activation>(activation);
  o.argmax = argmax;
  o.fill_value = fill_value;
  o.num_threads = num_threads;
  return o;
}

int64_t tile_host(const py::array& image, const Origins& origins, py::array& tiles, const Floats& scale,
                  const Floats& offset, int num_threads) {
  const TensorView in = host_view(image, "image", false);
  const TensorView out = host_view(tiles, "tiles", true);
  CELLRT_CHECK(in.ndim == 3, "tile: image should have shape (C, H, W), got ndim ", in.ndim);
  CELLRT_CHECK(scale.size() == in.shape[0] && offset.size() == in.shape[0], "tile: scale and offset should have ",
               in.shape[0], " values (one per channel), got ", scale.size(), " and ", offset.size());
  TileOptions o;
  o.scale = scale.data();
  o.offset = offset.data();
  o.num_threads = num_threads;
  const int64_t* org = origins_ptr(origins, out.ndim > 0 ? out.shape[0] : 0);
  py::gil_scoped_release release;
  return tile(in, org, out, o).nonfinite;
}

py::tuple stitch_host(const py::array& tiles, const Origins& origins, py::array& out, int blend, int overlap_y,
                      int overlap_x, float sigma_scale, int activation, bool argmax, float fill_value,
                      int num_threads) {
  const TensorView in = host_view(tiles, "tiles", false);
  const TensorView dst = host_view(out, "out", true);
  const int64_t* org = origins_ptr(origins, in.ndim > 0 ? in.shape[0] : 0);
  const StitchOptions o =
      stitch_options(blend, overlap_y, overlap_x, sigma_scale, activation, argmax, fill_value, num_threads);
  StitchResult r;
  {
    py::gil_scoped_release release;
    r = stitch(in, org, dst, o);
  }
  return py::make_tuple(r.uncovered, r.nonfinite);
}

int64_t tile_device(uintptr_t image, int32_t image_dtype, const std::vector<int64_t>& image_shape,
                    const std::vector<int64_t>& image_strides, const Origins& origins, uintptr_t tiles,
                    int32_t tiles_dtype, const std::vector<int64_t>& tiles_shape, const Floats& scale,
                    const Floats& offset, uintptr_t stream) {
  const TensorView in = device_view(image, image_dtype, image_shape, image_strides, "image");
  const TensorView out = contiguous_device_view(tiles, tiles_dtype, tiles_shape, "tiles");
  TileOptions o;
  o.scale = scale.data();
  o.offset = offset.data();
  const int64_t* org = origins_ptr(origins, tiles_shape.empty() ? 0 : tiles_shape[0]);
  py::gil_scoped_release release;
  return tile(in, org, out, o, reinterpret_cast<void*>(stream)).nonfinite;
}

py::tuple stitch_device(uintptr_t tiles, int32_t tiles_dtype, const std::vector<int64_t>& tiles_shape,
                        const std::vector<int64_t>& tiles_strides, const Origins& origins, uintptr_t out,
                        int32_t out_dtype, const std::vector<int64_t>& out_shape, int blend, int overlap_y,
                        int overlap_x, float sigma_scale, int activation, bool argmax, float fill_value,
                        uintptr_t stream) {
  const TensorView in = device_view(tiles, tiles_dtype, tiles_shape, tiles_strides, "tiles");
  const TensorView dst = contiguous_device_view(out, out_dtype, out_shape, "out");
  const int64_t* org = origins_ptr(origins, tiles_shape.empty() ? 0 : tiles_shape[0]);
  const StitchOptions o = stitch_options(blend, overlap_y, overlap_x, sigma_scale, activation, argmax, fill_value, 0);
  StitchResult r;
  {
    py::gil_scoped_release release;
    r = stitch(in, org, dst, o, reinterpret_cast<void*>(stream));
  }
  return py::make_tuple(r.uncovered, r.nonfinite);
}

py::array_t<int64_t> tile_origins_host(int64_t height, int64_t width, int64_t tile_h, int64_t tile_w,
                                       int64_t overlap_y, int64_t overlap_x) {
  const int64_t n = tile_origins(height, width, tile_h, tile_w, overlap_y, overlap_x);
  py::array_t<int64_t> origins({static_cast<py::ssize_t>(n), py::ssize_t{2}});
  tile_origins(height, width, tile_h, tile_w, overlap_y, overlap_x, origins.mutable_data(), 2 * n);
  return origins;
}

// Exposed for tests: the portable float16 conversions that back the host
// path when F16C is not compiled in.
py::array_t<uint16_t> float_to_half_bits(const Floats& values) {
  py::array_t<uint16_t> out(values.size());
  auto* dst = out.mutable_data();
  for (py::ssize_t i = 0; i < values.size(); ++i) dst[i] = detail::float_to_half_bits_portable(values.data()[i]);
  return out;
}

py::array_t<float> half_bits_to_float(const py::array_t<uint16_t, py::array::c_style | py::array::forcecast>& bits) {
  py::array_t<float> out(bits.size());
  auto* dst = out.mutable_data();
  for (py::ssize_t i = 0; i < bits.size(); ++i) dst[i] = detail::half_bits_to_float_portable(bits.data()[i]);
  return out;
}

}  // namespace

void register_stitch(py::module_& m) {
  m.def("tile", &tile_host, py::arg("image"), py::arg("origins"), py::arg("tiles"), py::arg("scale"),
        py::arg("offset"), py::arg("num_threads") = 0,
        "Fill tiles[N,C,th,tw] from image[C,H,W]; returns the number of non-finite values written.");
  m.def("stitch", &stitch_host, py::arg("tiles"), py::arg("origins"), py::arg("out"), py::arg("blend"),
        py::arg("overlap_y"), py::arg("overlap_x"), py::arg("sigma_scale"), py::arg("activation"),
        py::arg("argmax"), py::arg("fill_value"), py::arg("num_threads") = 0,
        "Blend tiles[N,C,th,tw] into out; returns (uncovered pixels, non-finite values).");
  m.def("tile_origins", &tile_origins_host, py::arg("height"), py::arg("width"), py::arg("tile_h"),
        py::arg("tile_w"), py::arg("overlap_y"), py::arg("overlap_x"),
        "Top-left corners (N, 2) int64 of the tile grid over a height x width image (overlaps in pixels).");
  m.def("tile_cuda", &tile_device, py::arg("image"), py::arg("image_dtype"), py::arg("image_shape"),
        py::arg("image_strides"), py::arg("origins"), py::arg("tiles"), py::arg("tiles_dtype"),
        py::arg("tiles_shape"), py::arg("scale"), py::arg("offset"), py::arg("stream"),
        "tile on device pointers (from __cuda_array_interface__); synchronises the stream.");
  m.def("stitch_cuda", &stitch_device, py::arg("tiles"), py::arg("tiles_dtype"), py::arg("tiles_shape"),
        py::arg("tiles_strides"), py::arg("origins"), py::arg("out"), py::arg("out_dtype"), py::arg("out_shape"),
        py::arg("blend"), py::arg("overlap_y"), py::arg("overlap_x"), py::arg("sigma_scale"),
        py::arg("activation"), py::arg("argmax"), py::arg("fill_value"), py::arg("stream"),
        "stitch on device pointers (from __cuda_array_interface__); synchronises the stream.");
  m.def("_float_to_half_bits", &float_to_half_bits);
  m.def("_half_bits_to_float", &half_bits_to_float);
}

}  // namespace cellrt::python
