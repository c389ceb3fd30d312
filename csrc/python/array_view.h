// numpy array / raw device pointer -> cellrt::TensorView for the bindings.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cellrt/types.h"
#include "core/check.h"

namespace cellrt::python {

namespace py = pybind11;

inline DType dtype_of(const py::dtype& dt, const char* name) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'u' && size == 1) return DType::kUInt8;
  if (kind == 'u' && size == 2) return DType::kUInt16;
  if (kind == 'f' && size == 2) return DType::kFloat16;
  if (kind == 'f' && size == 4) return DType::kFloat32;
  if (kind == 'i' && size == 4) return DType::kInt32;
  if (kind == 'f' && size == 8) return DType::kFloat64;
  if (kind == 'i' && size == 8) return DType::kInt64;
  throw std::invalid_argument(std::string(name) + " has unsupported dtype " +
                              py::str(static_cast<const py::object&>(dt)).cast<std::string>());
}

inline TensorView host_view(const py::array& a, const char* name, bool writable) {
  CELLRT_CHECK(a.ndim() <= 4, name, " should have at most 4 dimensions, got ", a.ndim());
  CELLRT_CHECK(!writable || a.writeable(), name, " should be writable");
  TensorView v;
  v.data = const_cast<void*>(a.data());
  v.dtype = dtype_of(a.dtype(), name);
  v.device = Device::kCPU;
  v.ndim = static_cast<int32_t>(a.ndim());
  const auto item = a.itemsize();
  for (int i = 0; i < v.ndim; ++i) {
    v.shape[i] = a.shape(i);
    CELLRT_CHECK(a.strides(i) % item == 0, name, " has a stride that is not a multiple of its item size");
    v.strides[i] = a.strides(i) / item;
  }
  return v;
}

// Device arrays arrive as (pointer, dtype code, shape, strides in elements)
// taken from __cuda_array_interface__ on the Python side.
inline TensorView device_view(uintptr_t ptr, int32_t dtype, const std::vector<int64_t>& shape,
                              const std::vector<int64_t>& strides, const char* name) {
  CELLRT_CHECK(shape.size() == strides.size() && shape.size() <= 4, name,
               " should have matching shape and strides of at most 4 dimensions");
  CELLRT_CHECK(dtype >= 0 && dtype <= 6, name, " has an unknown dtype code ", dtype);
  TensorView v;
  v.data = reinterpret_cast<void*>(ptr);
  v.dtype = static_cast<DType>(dtype);
  v.device = Device::kCUDA;
  v.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    v.shape[i] = shape[i];
    v.strides[i] = strides[i];
  }
  return v;
}

// A C-contiguous device array described by its shape alone.
inline TensorView contiguous_device_view(uintptr_t ptr, int32_t dtype, const std::vector<int64_t>& shape,
                                         const char* name) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return device_view(ptr, dtype, shape, strides, name);
}

}  // namespace cellrt::python
