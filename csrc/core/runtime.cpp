#include <cstdint>

#include "cellrt/types.h"

#if CELLRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

#ifndef CELLRT_VERSION_STRING
#define CELLRT_VERSION_STRING "0.0.0"
#endif

namespace cellrt {

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return 1;
    case DType::kUInt16:
    case DType::kFloat16: return 2;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return "uint8";
    case DType::kUInt16: return "uint16";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kInt32: return "int32";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
  }
  return "unknown";
}

bool is_contiguous(const TensorView& view) {
  for (int i = 0; i < view.ndim; ++i)
    if (view.shape[i] == 0) return true;  // nothing to address
  int64_t expected = 1;
  for (int i = view.ndim - 1; i >= 0; --i) {
    // Extent-1 axes may carry any stride, as in numpy's flags.
    if (view.shape[i] != 1 && view.strides[i] != expected) return false;
    expected *= view.shape[i];
  }
  return true;
}

bool built_with_cuda() { return CELLRT_WITH_CUDA != 0; }

int cuda_device_count() {
#if CELLRT_WITH_CUDA
  int count = 0;
  // No driver or no device is an answer (0), not an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

const char* version() { return CELLRT_VERSION_STRING; }

}  // namespace cellrt
