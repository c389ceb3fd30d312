#include <pybind11/pybind11.h>

#include "cellrt/types.h"
#include "core/check.h"

namespace py = pybind11;

namespace cellrt::python {
void register_stitch(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
#if defined(CELLRT_HOST_F16C) && CELLRT_HOST_F16C && (defined(__x86_64__) || defined(__i386__))
  // The CPU kernels were compiled for AVX + F16C; refuse to load on a CPU
  // without them rather than die on an illegal instruction later.
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx") || !__builtin_cpu_supports("f16c")) {
    throw py::import_error(
        "cellrt._core was built with CELLRT_HOST_F16C=ON but this CPU lacks AVX/F16C; "
        "rebuild with -C cmake.define.CELLRT_HOST_F16C=OFF");
  }
#endif
  m.doc() = "cellrt C++/CUDA kernels (private; use cellrt.kernels)";
  py::register_exception<cellrt::NotCompiledError>(m, "NotCompiledError", PyExc_RuntimeError);
  m.def("version", &cellrt::version);
  m.def("has_cuda", &cellrt::built_with_cuda, "True when the extension contains the CUDA kernels.");
  m.def("cuda_device_count", &cellrt::cuda_device_count, "Usable CUDA devices now (0 without driver/GPU).");
#if defined(CELLRT_HOST_F16C) && CELLRT_HOST_F16C
  m.attr("host_f16c") = true;
#else
  m.attr("host_f16c") = false;
#endif
  cellrt::python::register_stitch(m);
}
