// Plain data types of the public C++ API: element types, devices and a
// non-owning tensor view. No pybind11, CUDA or STL containers appear here, so
// acquisition software can include these headers with any toolchain.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace cellrt {

// Thrown when a call is given device (CUDA) views and this build has no CUDA
// kernels (built_with_cuda() is false); the C ABI's CELLRT_STATUS_NOT_COMPILED.
// Declared here so that callers can catch it apart from other runtime errors.
class NotCompiledError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType : int32_t {
  kUInt8 = 0,
  kUInt16 = 1,
  kFloat16 = 2,  // IEEE binary16, stored as 16-bit words
  kFloat32 = 3,
  kInt32 = 4,
  kFloat64 = 5,
  kInt64 = 6,
};

enum class Device : int32_t {
  kCPU = 0,
  kCUDA = 1,  // data points to device memory of the current CUDA device
};

// A non-owning view of an up-to-4-D array.
//
// shape[i] and strides[i] (in elements, not bytes) are meaningful for
// i < ndim. The caller keeps the memory alive for the duration of the call.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;
  int32_t ndim = 0;
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};
};

// Bytes per element of a DType.
int64_t dtype_size(DType dtype);

// Name of a DType as numpy spells it ("uint8", "float16", ...).
const char* dtype_name(DType dtype);

// True when strides describe a C-contiguous layout of shape.
bool is_contiguous(const TensorView& view);

// Whether this build contains the CUDA kernels.
bool built_with_cuda();

// Number of CUDA devices usable right now; 0 in CPU-only builds or when no
// driver / device is present. Never throws.
int cuda_device_count();

// Library version, "MAJOR.MINOR.PATCH".
const char* version();

}  // namespace cellrt
