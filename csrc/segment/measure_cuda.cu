// CUDA measurements: one kernel accumulates every pixel into per-object
// sums with atomics (integer moments exact, intensity sums in double), a
// second turns each object's sums into its feature row with the shared
// shape_features / intensity_features (segment_kernel.h) and traces its
// perimeter (contour_kernel.h, one thread per object), so the table is
// built on the device and matches the CPU backend's arithmetic. Integer
// sums are order-independent, so those columns are deterministic; double
// intensity sums may differ from the CPU in the last bits. The per-thread
// bodies are in label_measure_kernel.h (tested on the host).
//
// The object count may be a device word (label_cuda_async's): the sums are
// then sized for a capacity chosen by the caller, objects past it are
// skipped (the caller measures again once it knows the count), and nothing
// waits for the stream in between.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "segment/device_atomics.cuh"
#include "segment/label_measure_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

namespace lk = label_measure_kernel;

__global__ void init_kernel(lk::Sums s, int64_t n1, int64_t channels) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < n1) lk::init_object(s, n1, channels, i);
}

template <typename In>
__global__ void accumulate_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width,
                                  const int32_t* device_count, int64_t capacity, const In* __restrict__ image,
                                  int64_t channels, int64_t sc, int64_t sy, int64_t sx, lk::Sums s) {
  const int32_t x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x >= width) return;
  const int64_t count = lk::object_count(device_count, capacity);
  // Rows stride by the grid's height: gridDim.y stops at 65535 (images over 524280 rows).
  for (int64_t y = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; y < height; y += int64_t{gridDim.y} * blockDim.y) {
    lk::accumulate_pixel<DeviceAtomics>(labels, width, count, capacity, image, channels, sc, sy, sx, s, x,
                                        static_cast<int32_t>(y));
  }
}

__global__ void finalize_kernel(lk::Sums s, const int32_t* __restrict__ labels, int32_t height, int32_t width,
                                const int32_t* device_count, int64_t capacity, int64_t channels, double* features) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  const int64_t count = lk::object_count(device_count, capacity);
  lk::finalize_object(s, labels, height, width, count, capacity, channels, features, l);
}

template <typename In>
void launch_accumulate(const TensorView& labels, const int32_t* device_count, int64_t capacity,
                       const TensorView* intensities, const lk::Sums& sums, cudaStream_t stream) {
  const int32_t height = static_cast<int32_t>(labels.shape[0]), width = static_cast<int32_t>(labels.shape[1]);
  const dim3 block(32, 8);
  const dim3 grid((width + block.x - 1) / block.x, std::min((height + block.y - 1) / block.y, 65535u));
  const In* image = intensities ? static_cast<const In*>(intensities->data) : nullptr;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  accumulate_kernel<In><<<grid, block, 0, stream>>>(
      static_cast<const int32_t*>(labels.data), height, width, device_count, capacity, image, channels,
      intensities ? intensities->strides[0] : 0, intensities ? intensities->strides[1] : 0,
      intensities ? intensities->strides[2] : 0, sums);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void measure_cuda_async(const TensorView& labels, const int32_t* device_count, int64_t capacity,
                        const TensorView* intensities, double* features, unsigned long long* device_out_of_range,
                        void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t n1 = capacity + 1;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t moment_bytes = align(6 * n1 * sizeof(unsigned long long));
  const size_t bound_bytes = align(4 * n1 * sizeof(int32_t));
  const size_t intensity_bytes = align(2 * channels * n1 * sizeof(double));
  const size_t extreme_bytes = align(2 * channels * n1 * sizeof(float));
  // Freed in stream order when this returns: the kernels queued below still
  // own it (cudaFreeAsync runs after them).
  StreamBuffer<char> scratch_buffer(moment_bytes + bound_bytes + intensity_bytes + extreme_bytes, stream);
  char* scratch = scratch_buffer.get();
  lk::Sums sums;
  sums.out_of_range = device_out_of_range;
  sums.moments = reinterpret_cast<unsigned long long*>(scratch);
  sums.bounds = reinterpret_cast<int32_t*>(scratch + moment_bytes);
  sums.intensity = reinterpret_cast<double*>(scratch + moment_bytes + bound_bytes);
  sums.extremes = reinterpret_cast<float*>(scratch + moment_bytes + bound_bytes + intensity_bytes);
  CELLRT_CUDA_CHECK(cudaMemsetAsync(device_out_of_range, 0, sizeof(unsigned long long), stream));
  const int threads = 256;
  init_kernel<<<static_cast<unsigned>((n1 + threads - 1) / threads), threads, 0, stream>>>(sums, n1, channels);
  CELLRT_CUDA_CHECK_LAUNCH();
  if (!intensities || intensities->dtype == DType::kFloat32) {
    launch_accumulate<float>(labels, device_count, capacity, intensities, sums, stream);
  } else if (intensities->dtype == DType::kUInt16) {
    launch_accumulate<uint16_t>(labels, device_count, capacity, intensities, sums, stream);
  } else {
    launch_accumulate<uint8_t>(labels, device_count, capacity, intensities, sums, stream);
  }
  if (capacity > 0) {
    finalize_kernel<<<static_cast<unsigned>((capacity + threads - 1) / threads), threads, 0, stream>>>(
        sums, static_cast<const int32_t*>(labels.data), static_cast<int32_t>(labels.shape[0]),
        static_cast<int32_t>(labels.shape[1]), device_count, capacity, channels, features);
    CELLRT_CUDA_CHECK_LAUNCH();
  }
}

MeasureResult measure_cuda(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                           double* features, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  StreamBuffer<unsigned long long> device_out_of_range(1, stream);
  measure_cuda_async(labels, nullptr, num_objects, intensities, features, device_out_of_range.get(), stream);
  unsigned long long out_of_range = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&out_of_range, device_out_of_range.get(), sizeof out_of_range,
                                    cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return MeasureResult{static_cast<int64_t>(out_of_range)};
}

LabelMeasureResult label_measure_cuda(const uint8_t* mask, const TensorView& labels, int32_t connectivity,
                                      int64_t min_area, int64_t capacity, const TensorView* intensities,
                                      double* features, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  // The count, and the out-of-range counter for the measure step (none:
  // label numbers 1..count), side by side so that one copy brings them back.
  struct Counters {
    unsigned long long out_of_range;
    int32_t count;
  };
  StreamBuffer<Counters> counters(1, stream);
  Counters* device = counters.get();
  label_cuda_async(mask, static_cast<int32_t*>(labels.data), static_cast<int32_t>(labels.shape[0]),
                   static_cast<int32_t>(labels.shape[1]), connectivity, min_area, &device->count, stream);
  measure_cuda_async(labels, &device->count, capacity, intensities, features, &device->out_of_range, stream);
  Counters host{};
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&host, device, sizeof host, cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  check_labels_within_count(host.out_of_range);
  LabelMeasureResult result;
  result.num_objects = host.count;
  result.measured = host.count < capacity ? host.count : capacity;
  return result;
}

}  // namespace cellrt::detail
