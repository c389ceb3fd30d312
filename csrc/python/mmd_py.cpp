// Bindings of rbf_kernel (the streaming MMD drift monitor's arithmetic).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cellrt/mmd.h"
#include "python/array_view.h"

namespace py = pybind11;

namespace cellrt::python {

namespace {

void rbf_kernel_host(const py::array& queries, const py::array& points, double sigma, py::array& out,
                     int num_threads) {
  const TensorView q = host_view(queries, "queries", false);
  const TensorView p = host_view(points, "points", false);
  const TensorView o = host_view(out, "out", true);
  py::gil_scoped_release release;
  rbf_kernel(q, p, sigma, o, num_threads);
}

void rbf_kernel_device(uintptr_t queries, const std::vector<int64_t>& queries_shape, uintptr_t points,
                       const std::vector<int64_t>& points_shape, double sigma, uintptr_t out,
                       const std::vector<int64_t>& out_shape, uintptr_t stream) {
  const auto f32 = static_cast<int32_t>(DType::kFloat32);
  const TensorView q = contiguous_device_view(queries, f32, queries_shape, "queries");
  const TensorView p = contiguous_device_view(points, f32, points_shape, "points");
  const TensorView o = contiguous_device_view(out, static_cast<int32_t>(DType::kFloat64), out_shape, "out");
  py::gil_scoped_release release;
  rbf_kernel(q, p, sigma, o, 0, reinterpret_cast<void*>(stream));
}

}  // namespace

void register_mmd(py::module_& m) {
  m.def("rbf_kernel", &rbf_kernel_host, py::arg("queries"), py::arg("points"), py::arg("sigma"), py::arg("out"),
        py::arg("num_threads") = 0,
        "RBF kernel of queries[M, D] and points[N, D] (float32) into out: (M,) float64 sums over the points or "
        "(M, N) float64 values.");
  m.def("rbf_kernel_cuda", &rbf_kernel_device, py::arg("queries"), py::arg("queries_shape"), py::arg("points"),
        py::arg("points_shape"), py::arg("sigma"), py::arg("out"), py::arg("out_shape"), py::arg("stream"),
        "rbf_kernel on contiguous device buffers, on the given stream.");
}

}  // namespace cellrt::python
