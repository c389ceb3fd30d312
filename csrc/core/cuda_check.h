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

namespace cellrt::detail {

// Scratch memory from the stream's pool, returned to it when the scope ends -
// also when a check above throws, so a failed call leaks nothing.
template <typename T>
class StreamBuffer {
 public:
  StreamBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    CELLRT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&data_), (count ? count : 1) * sizeof(T), stream));
  }
  ~StreamBuffer() { cudaFreeAsync(data_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace cellrt::detail
