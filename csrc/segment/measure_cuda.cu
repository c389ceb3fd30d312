// CUDA measurements: one kernel accumulates every pixel into per-object
// sums with atomics (integer moments exact, intensity sums in double), a
// second turns each object's sums into its feature row with the shared
// shape_features / intensity_features (segment_kernel.h) and traces its
// perimeter (contour_kernel.h, one thread per object), so the table is
// built on the device and matches the CPU backend's arithmetic. Integer
// sums are order-independent, so those columns are deterministic; double
// intensity sums may differ from the CPU in the last bits.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/half.h"
#include "segment/contour_kernel.h"
#include "segment/segment_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

struct DeviceSums {
  unsigned long long* moments;  // [6][N + 1]: area, sum_x, sum_y, sum_xx, sum_yy, sum_xy
  int32_t* bounds;              // [4][N + 1]: min_x, min_y, max_x, max_y
  double* intensity;            // [K][2][N + 1]: sum, sum_sq
  float* extremes;              // [K][2][N + 1]: min, max
  unsigned long long* out_of_range;
};

__device__ void atomic_min_float(float* address, float v) {
  auto* bits = reinterpret_cast<unsigned int*>(address);
  unsigned int old = *bits;
  while (v < __uint_as_float(old)) {
    const unsigned int assumed = old;
    old = atomicCAS(bits, assumed, __float_as_uint(v));
    if (old == assumed) break;
  }
}

__device__ void atomic_max_float(float* address, float v) {
  auto* bits = reinterpret_cast<unsigned int*>(address);
  unsigned int old = *bits;
  while (v > __uint_as_float(old)) {
    const unsigned int assumed = old;
    old = atomicCAS(bits, assumed, __float_as_uint(v));
    if (old == assumed) break;
  }
}

__global__ void init_kernel(DeviceSums s, int64_t n1, int64_t channels) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= n1) return;
  for (int f = 0; f < 6; ++f) s.moments[f * n1 + i] = 0;
  s.bounds[i] = s.bounds[n1 + i] = INT32_MAX;
  s.bounds[2 * n1 + i] = s.bounds[3 * n1 + i] = -1;
  for (int64_t k = 0; k < channels; ++k) {
    s.intensity[(2 * k) * n1 + i] = s.intensity[(2 * k + 1) * n1 + i] = 0.0;
    s.extremes[(2 * k) * n1 + i] = INFINITY;
    s.extremes[(2 * k + 1) * n1 + i] = -INFINITY;
  }
}

template <typename In>
__global__ void accumulate_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width,
                                  int64_t num_objects, const In* __restrict__ image, int64_t channels, int64_t sc,
                                  int64_t sy, int64_t sx, DeviceSums s) {
  const int32_t x = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= width || y >= height) return;
  const int32_t l = labels[int64_t{y} * width + x];
  if (l == 0) return;
  if (l < 0 || l > num_objects) {
    atomicAdd(s.out_of_range, 1ull);
    return;
  }
  const int64_t n1 = num_objects + 1;
  const unsigned long long xx = x, yy = y;
  atomicAdd(&s.moments[l], 1ull);
  atomicAdd(&s.moments[n1 + l], xx);
  atomicAdd(&s.moments[2 * n1 + l], yy);
  atomicAdd(&s.moments[3 * n1 + l], xx * xx);
  atomicAdd(&s.moments[4 * n1 + l], yy * yy);
  atomicAdd(&s.moments[5 * n1 + l], xx * yy);
  atomicMin(&s.bounds[l], x);
  atomicMin(&s.bounds[n1 + l], y);
  atomicMax(&s.bounds[2 * n1 + l], x);
  atomicMax(&s.bounds[3 * n1 + l], y);
  for (int64_t k = 0; k < channels; ++k) {
    const float v = to_float(image[k * sc + y * sy + x * sx]);
    const double d = v;
    atomicAdd(&s.intensity[(2 * k) * n1 + l], d);
    atomicAdd(&s.intensity[(2 * k + 1) * n1 + l], d * d);
    atomic_min_float(&s.extremes[(2 * k) * n1 + l], v);
    atomic_max_float(&s.extremes[(2 * k + 1) * n1 + l], v);
  }
}

__global__ void finalize_kernel(DeviceSums s, const int32_t* __restrict__ labels, int32_t height, int32_t width,
                                int64_t num_objects, int64_t channels, double* features) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects) return;
  const int64_t n1 = num_objects + 1;
  ObjectSums o;
  o.area = static_cast<int64_t>(s.moments[l]);
  o.sum_x = static_cast<int64_t>(s.moments[n1 + l]);
  o.sum_y = static_cast<int64_t>(s.moments[2 * n1 + l]);
  o.sum_xx = static_cast<int64_t>(s.moments[3 * n1 + l]);
  o.sum_yy = static_cast<int64_t>(s.moments[4 * n1 + l]);
  o.sum_xy = static_cast<int64_t>(s.moments[5 * n1 + l]);
  o.min_x = s.bounds[l];
  o.min_y = s.bounds[n1 + l];
  o.max_x = s.bounds[2 * n1 + l];
  o.max_y = s.bounds[3 * n1 + l];
  const int64_t columns = kShapeColumns + kIntensityColumns * channels;
  double* row = features + (l - 1) * columns;
  shape_features(o, row);
  row[kPerimeter] = o.area ? outer_perimeter(labels, height, width, static_cast<int32_t>(l), o.min_x, o.min_y) : 0.0;
  for (int64_t k = 0; k < channels; ++k) {
    IntensitySums is;
    is.sum = s.intensity[(2 * k) * n1 + l];
    is.sum_sq = s.intensity[(2 * k + 1) * n1 + l];
    is.min = s.extremes[(2 * k) * n1 + l];
    is.max = s.extremes[(2 * k + 1) * n1 + l];
    intensity_features(is, o.area, row + kShapeColumns + kIntensityColumns * k);
  }
}

template <typename In>
void launch_accumulate(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                       const DeviceSums& sums, cudaStream_t stream) {
  const int32_t height = static_cast<int32_t>(labels.shape[0]), width = static_cast<int32_t>(labels.shape[1]);
  const dim3 block(32, 8);
  const dim3 grid((width + block.x - 1) / block.x, (height + block.y - 1) / block.y);
  const In* image = intensities ? static_cast<const In*>(intensities->data) : nullptr;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  accumulate_kernel<In><<<grid, block, 0, stream>>>(
      static_cast<const int32_t*>(labels.data), height, width, num_objects, image, channels,
      intensities ? intensities->strides[0] : 0, intensities ? intensities->strides[1] : 0,
      intensities ? intensities->strides[2] : 0, sums);
  CELLRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

MeasureResult measure_cuda(const TensorView& labels, int64_t num_objects, const TensorView* intensities,
                           double* features, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t n1 = num_objects + 1;
  const int64_t channels = intensities ? intensities->shape[0] : 0;
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t moment_bytes = align(6 * n1 * sizeof(unsigned long long));
  const size_t bound_bytes = align(4 * n1 * sizeof(int32_t));
  const size_t intensity_bytes = align(2 * channels * n1 * sizeof(double));
  const size_t extreme_bytes = align(2 * channels * n1 * sizeof(float));
  StreamBuffer<char> scratch_buffer(256 + moment_bytes + bound_bytes + intensity_bytes + extreme_bytes, stream);
  char* scratch = scratch_buffer.get();
  DeviceSums sums;
  sums.out_of_range = reinterpret_cast<unsigned long long*>(scratch);
  sums.moments = reinterpret_cast<unsigned long long*>(scratch + 256);
  sums.bounds = reinterpret_cast<int32_t*>(scratch + 256 + moment_bytes);
  sums.intensity = reinterpret_cast<double*>(scratch + 256 + moment_bytes + bound_bytes);
  sums.extremes = reinterpret_cast<float*>(scratch + 256 + moment_bytes + bound_bytes + intensity_bytes);
  CELLRT_CUDA_CHECK(cudaMemsetAsync(sums.out_of_range, 0, sizeof(unsigned long long), stream));
  const int threads = 256;
  init_kernel<<<static_cast<unsigned>((n1 + threads - 1) / threads), threads, 0, stream>>>(sums, n1, channels);
  CELLRT_CUDA_CHECK_LAUNCH();
  if (!intensities || intensities->dtype == DType::kFloat32) {
    launch_accumulate<float>(labels, num_objects, intensities, sums, stream);
  } else if (intensities->dtype == DType::kUInt16) {
    launch_accumulate<uint16_t>(labels, num_objects, intensities, sums, stream);
  } else {
    launch_accumulate<uint8_t>(labels, num_objects, intensities, sums, stream);
  }
  if (num_objects > 0) {
    finalize_kernel<<<static_cast<unsigned>((num_objects + threads - 1) / threads), threads, 0, stream>>>(
        sums, static_cast<const int32_t*>(labels.data), static_cast<int32_t>(labels.shape[0]),
        static_cast<int32_t>(labels.shape[1]), num_objects, channels, features);
    CELLRT_CUDA_CHECK_LAUNCH();
  }
  unsigned long long out_of_range = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&out_of_range, sums.out_of_range, sizeof out_of_range, cudaMemcpyDeviceToHost,
                                    stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return MeasureResult{static_cast<int64_t>(out_of_range)};
}

}  // namespace cellrt::detail
