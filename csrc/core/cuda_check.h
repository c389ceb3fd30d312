// Every CUDA runtime call and every launch goes through CELLRT_CUDA_CHECK,
// which throws std::runtime_error naming the call site (tiny-cuda-nn's
// CUDA_CHECK_THROW). Library code never exits or prints.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define CELLRT_CUDA_CHECK(expr)                                              \
  do {                                                                       \
    cudaError_t cellrt_err_ = (expr);                                        \
    if (cellrt_err_ != cudaSuccess) {                                        \
      throw std::runtime_error(std::string("CUDA error at ") + __FILE__ + ":" + \
                               std::to_string(__LINE__) + " in " #expr ": " +  \
                               cudaGetErrorString(cellrt_err_));             \
    }                                                                        \
  } while (0)

// After a kernel launch: configuration errors surface here, not at the next
// unrelated call.
#define CELLRT_CUDA_CHECK_LAUNCH() CELLRT_CUDA_CHECK(cudaGetLastError())
