// CUDA binary erosion/dilation: the row clearances (morphology_kernel.h),
// a thread per pixel for footprints up to kPixelClearanceMaxRadius (O(radius)
// coalesced reads each) and a thread per row beyond, then a thread per pixel
// tests the footprint. The half-widths and the clearance buffer live on the stream's
// memory pool; nothing comes back to the host.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "segment/morphology_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

__global__ void clearance_kernel(const uint8_t* __restrict__ mask, int16_t* __restrict__ clearance, int32_t height,
                                 int32_t width, bool invert, int16_t cap) {
  const int32_t y = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (y < height) row_clearance(mask + int64_t{y} * width, width, invert, cap, clearance + int64_t{y} * width);
}

// Beyond this radius a pixel's clearance scan costs more than a row's two sweeps.
constexpr int32_t kPixelClearanceMaxRadius = 64;

__global__ void pixel_clearance_kernel(const uint8_t* __restrict__ mask, int16_t* __restrict__ clearance,
                                       int32_t height, int32_t width, bool invert, int16_t cap) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= int64_t{height} * width) return;
  const int64_t y = p / width;
  clearance[p] = pixel_clearance(mask + y * width, width, static_cast<int32_t>(p - y * width), invert, cap);
}

__global__ void erode_kernel(const int16_t* __restrict__ clearance, uint8_t* __restrict__ out, int32_t height,
                             int32_t width, int32_t radius, const int16_t* __restrict__ half_widths, uint8_t flip) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= int64_t{height} * width) return;
  const int32_t y = static_cast<int32_t>(p / width), x = static_cast<int32_t>(p % width);
  out[p] = static_cast<uint8_t>(survives_erosion(clearance, height, width, y, x, radius, half_widths) ^ flip);
}

}  // namespace

void binary_morphology_cuda(const uint8_t* mask, uint8_t* out, int32_t height, int32_t width, int32_t radius,
                            bool dilate, const int16_t* half_widths_host, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const size_t taps = 2 * static_cast<size_t>(radius) + 1;
  StreamBuffer<int16_t> half_widths(taps, s);
  StreamBuffer<int16_t> clearance(static_cast<size_t>(height) * width, s);
  // Pageable source: the copy is staged before cudaMemcpyAsync returns, so the caller's buffer may go away.
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(half_widths.get(), half_widths_host, taps * sizeof(int16_t),
                                    cudaMemcpyHostToDevice, s));
  constexpr int kThreads = 256;
  const int64_t pixels = int64_t{height} * width;
  const auto pixel_blocks = static_cast<unsigned>((pixels + kThreads - 1) / kThreads);
  if (radius <= kPixelClearanceMaxRadius)
    pixel_clearance_kernel<<<pixel_blocks, kThreads, 0, s>>>(mask, clearance.get(), height, width, dilate,
                                                             static_cast<int16_t>(radius));
  else
    clearance_kernel<<<(height + kThreads - 1) / kThreads, kThreads, 0, s>>>(mask, clearance.get(), height, width,
                                                                            dilate, static_cast<int16_t>(radius));
  CELLRT_CUDA_CHECK_LAUNCH();
  erode_kernel<<<pixel_blocks, kThreads, 0, s>>>(
      clearance.get(), out, height, width, radius, half_widths.get(), dilate ? 1 : 0);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace cellrt::detail
