// Bindings for resize: array conversion and m.def only.
#include <cstdint>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cellrt/resize.h"
#include "core/check.h"
#include "python/array_view.h"
#include "resize/resize_ops.h"

namespace py = pybind11;

namespace cellrt::python {

namespace {

ResizeOptions resize_options(bool antialias, int num_threads) {
  ResizeOptions o;
  o.antialias = antialias ? 1 : 0;
  o.num_threads = num_threads;
  return o;
}

void resize_host(const py::array& image, py::array& out, bool antialias, int num_threads) {
  const TensorView in = host_view(image, "image", false);
  const TensorView dst = host_view(out, "out", true);
  const ResizeOptions o = resize_options(antialias, num_threads);
  py::gil_scoped_release release;
  resize(in, dst, o);
}

void resize_device(uintptr_t image, int dtype, const std::vector<int64_t>& shape, uintptr_t out,
                   const std::vector<int64_t>& out_shape, bool antialias, uintptr_t stream) {
  const TensorView in = contiguous_device_view(image, dtype, shape, "image");
  const TensorView dst = contiguous_device_view(out, static_cast<int32_t>(DType::kFloat32), out_shape, "out");
  const ResizeOptions o = resize_options(antialias, 0);
  py::gil_scoped_release release;
  resize(in, dst, o, reinterpret_cast<void*>(stream));
}

// The CUDA kernels' bodies on the host; the arguments are checked as resize() checks them.
void resize_by_pixels_host(const py::array& image, py::array& out, bool antialias) {
  const TensorView in = host_view(image, "image", false);
  const TensorView dst = host_view(out, "out", true);
  CELLRT_CHECK(in.ndim == 3 && dst.ndim == 3 && dst.dtype == DType::kFloat32 && is_contiguous(in) &&
                   is_contiguous(dst) && in.shape[0] == dst.shape[0],
               "_resize_by_pixels: image (C, H, W) and out (C, H_out, W_out) float32, both C-contiguous");
  CELLRT_CHECK(in.dtype == DType::kUInt8 || in.dtype == DType::kUInt16 || in.dtype == DType::kFloat32,
               "_resize_by_pixels: image should be uint8, uint16 or float32");
  py::gil_scoped_release release;
  detail::resize_by_pixels(in.data, in.dtype, static_cast<float*>(dst.data), in.shape[0], in.shape[1], in.shape[2],
                           dst.shape[1], dst.shape[2], antialias);
}

py::tuple resize_taps_host(int64_t in_size, int64_t out_size, bool antialias) {
  CELLRT_CHECK(in_size >= 1 && out_size >= 1, "_resize_taps: sizes should be >= 1");
  const detail::ResizeTable t = detail::resize_table(in_size, out_size, antialias);
  py::array_t<int64_t> first(static_cast<py::ssize_t>(t.first.size()), t.first.data());
  py::array_t<int32_t> count(static_cast<py::ssize_t>(t.count.size()), t.count.data());
  py::array_t<float> weights({static_cast<py::ssize_t>(out_size), static_cast<py::ssize_t>(t.axis.max_taps)},
                             t.weights.data());
  return py::make_tuple(first, count, weights);
}

}  // namespace

void register_resize(py::module_& m) {
  m.def("resize", &resize_host, py::arg("image"), py::arg("out"), py::arg("antialias"), py::arg("num_threads") = 0,
        "Resample image[C,H,W] (uint8/uint16/float32) into out[C,H_out,W_out] (float32).");
  m.def("resize_cuda", &resize_device, py::arg("image"), py::arg("dtype"), py::arg("shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("antialias"), py::arg("stream"),
        "resize on C-contiguous device pointers, on the given stream.");
  m.def("_resize_by_pixels", &resize_by_pixels_host, py::arg("image"), py::arg("out"), py::arg("antialias"),
        "Test harness: the CUDA kernels' per-sample bodies run on the host.");
  m.def("_resize_taps", &resize_taps_host, py::arg("in_size"), py::arg("out_size"), py::arg("antialias"),
        "Test harness: one axis's tap table (first, count, weights[out, max_taps]).");
}

}  // namespace cellrt::python
