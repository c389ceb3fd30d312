#include <pybind11/pybind11.h>

#include "cellrt/types.h"
#include "core/check.h"

namespace py = pybind11;

namespace cellrt::python {
void register_stitch(py::module_& m);
void register_segment(py::module_& m);
void register_mmd(py::module_& m);
void register_nms(py::module_& m);
void register_resize(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
#if defined(CELLRT_X86_64_V3) && CELLRT_X86_64_V3 && defined(__x86_64__)
  // The CPU kernels were compiled for x86-64-v3; refuse to load on an older
  // CPU rather than die on an illegal instruction later. (This file itself
  // is compiled for the baseline.)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("x86-64-v3")) {
    throw py::import_error(
        "cellrt._core was built for x86-64-v3 (AVX2, FMA, F16C) but this CPU lacks it; "
        "rebuild with: pip install . -C cmake.define.CELLRT_X86_64_V3=OFF");
  }
#endif
  m.doc() = "cellrt C++/CUDA kernels (private; use cellrt.kernels)";
  py::register_exception<cellrt::NotCompiledError>(m, "NotCompiledError", PyExc_RuntimeError);
  m.def("version", &cellrt::version);
  m.def("has_cuda", &cellrt::built_with_cuda, "True when the extension contains the CUDA kernels.");
  m.def("cuda_device_count", &cellrt::cuda_device_count, "Usable CUDA devices now (0 without driver/GPU).");
#if defined(CELLRT_X86_64_V3) && CELLRT_X86_64_V3
  m.attr("host_isa") = "x86-64-v3";
#else
  m.attr("host_isa") = "baseline";
#endif
  cellrt::python::register_stitch(m);
  cellrt::python::register_segment(m);
  cellrt::python::register_mmd(m);
  cellrt::python::register_nms(m);
  cellrt::python::register_resize(m);
}
