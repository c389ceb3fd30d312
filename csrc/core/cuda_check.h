// Every CUDA runtime call and every launch goes through CELLRT_CUDA_CHECK,
// which throws std::runtime_error naming the call site (tiny-cuda-nn's
// CUDA_CHECK_THROW). Library code never exits or prints.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

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

// Freed scratch the pool keeps for the next call, per device.
constexpr uint64_t kRetainedScratchBytes = uint64_t{1} << 30;

// cellrt's own stream-ordered pool on the current device. The device's
// default pool hands freed memory back to the driver at every
// synchronisation (release threshold 0), so each call that synchronises
// paid for a fresh physical allocation on its next scratch request; this
// pool keeps up to kRetainedScratchBytes, and leaves the default pool's
// settings, which other libraries in the process rely on, alone.
inline cudaMemPool_t scratch_pool() {
  int device = 0;
  CELLRT_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex mutex;
  static std::vector<cudaMemPool_t> pools;
  const std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(device) >= pools.size()) pools.resize(device + 1, nullptr);
  if (pools[device] == nullptr) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool = nullptr;
    CELLRT_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
    uint64_t keep = kRetainedScratchBytes;
    CELLRT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    pools[device] = pool;
  }
  return pools[device];
}

// Scratch memory from cellrt's pool, returned to it when the scope ends -
// also when a check above throws, so a failed call leaks nothing.
template <typename T>
class StreamBuffer {
 public:
  StreamBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    CELLRT_CUDA_CHECK(cudaMallocFromPoolAsync(reinterpret_cast<void**>(&data_), (count ? count : 1) * sizeof(T),
                                              scratch_pool(), stream));
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
