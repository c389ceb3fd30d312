// CUDA contours: the first pixel of every object by atomicMin over pixel
// indices, then one thread per object follows its outer border with the
// shared trace (contour_kernel.h): a counting pass (point counts and
// perimeters), a CUB scan into CSR offsets, and - when asked - a pass that
// writes the points. Only the total point count comes back to the host.
// Hole contours: bounding boxes by atomics, then one thread per object finds
// its holes (flood fills in per-object scratch sized by its box) and traces
// them - a counting pass and a writing pass; the (small) result is returned
// on the host.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <climits>
#include <cstdint>
#include <vector>

#include "core/cuda_check.h"
#include "segment/contour_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

constexpr int kThreads = 256;

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void first_pixel_kernel(const int32_t* __restrict__ labels, int64_t pixels, int64_t num_objects,
                                   int32_t* first) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= pixels) return;
  const int32_t l = labels[p];
  if (l > 0 && l <= num_objects) atomicMin(&first[l], static_cast<int32_t>(p));
}

__global__ void fill_kernel(int32_t* values, int64_t n, int32_t value) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < n) values[i] = value;
}

__global__ void count_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                             const int32_t* __restrict__ first, int64_t* counts, double* perimeter) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects) return;
  if (first[l] == INT_MAX) {
    counts[l - 1] = 0;
    if (perimeter) perimeter[l - 1] = 0.0;
    return;
  }
  const BorderTrace t = trace_outer_border(labels, height, width, static_cast<int32_t>(l), first[l] / width,
                                           first[l] % width, IgnorePoints{});
  counts[l - 1] = t.points;
  if (perimeter) perimeter[l - 1] = t.length;
}

__global__ void points_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                              const int32_t* __restrict__ first, const int64_t* __restrict__ offsets,
                              int32_t* points) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects || first[l] == INT_MAX) return;
  int32_t* out = points + 2 * offsets[l - 1];
  trace_outer_border(labels, height, width, static_cast<int32_t>(l), first[l] / width, first[l] % width,
                     [&out](int32_t x, int32_t y) {
                       *out++ = x;
                       *out++ = y;
                     });
}

__global__ void init_boxes_kernel(int32_t* boxes, int64_t n, int32_t height, int32_t width) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (l >= n) return;
  boxes[4 * l] = height;  // y0
  boxes[4 * l + 1] = -1;  // y1
  boxes[4 * l + 2] = width;
  boxes[4 * l + 3] = -1;
}

__global__ void boxes_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                             int32_t* boxes) {
  const int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (p >= int64_t{height} * width) return;
  const int32_t l = labels[p];
  if (l <= 0 || l > num_objects) return;
  const int32_t y = static_cast<int32_t>(p / width), x = static_cast<int32_t>(p % width);
  atomicMin(&boxes[4 * l], y);
  atomicMax(&boxes[4 * l + 1], y);
  atomicMin(&boxes[4 * l + 2], x);
  atomicMax(&boxes[4 * l + 3], x);
}

// One thread per object. Pass 1 (points == nullptr): holes and points per
// object. Pass 2: each hole's point offset and its points, from the bases.
__global__ void holes_kernel(const int32_t* __restrict__ labels, int32_t height, int32_t width, int64_t num_objects,
                             const int32_t* __restrict__ boxes, const int64_t* __restrict__ scratch_offsets,
                             uint8_t* state, int32_t* stack, int64_t* hole_counts, int64_t* point_counts,
                             const int64_t* __restrict__ hole_base, const int64_t* __restrict__ point_base,
                             int64_t* point_offsets, int32_t* points) {
  const int64_t l = int64_t{blockIdx.x} * blockDim.x + threadIdx.x + 1;
  if (l > num_objects) return;
  const int32_t* b = boxes + 4 * l;
  int64_t holes = 0, count = 0;
  if (b[1] >= 0) {
    uint8_t* my_state = state + scratch_offsets[l - 1];
    int32_t* my_stack = stack + scratch_offsets[l - 1];
    find_holes(labels, width, static_cast<int32_t>(l), b[0], b[1], b[2], b[3], my_state, my_stack,
               [&](int32_t hy, int32_t hx) {
                 if (points == nullptr) {
                   count += trace_hole_border(labels, height, width, static_cast<int32_t>(l), hy, hx, IgnorePoints{})
                                .points;
                 } else {
                   const int64_t start = point_base[l - 1] + count;
                   point_offsets[hole_base[l - 1] + holes] = start;
                   int32_t* out = points + 2 * start;
                   count += trace_hole_border(labels, height, width, static_cast<int32_t>(l), hy, hx,
                                              [&out](int32_t x, int32_t y) {
                                                *out++ = x;
                                                *out++ = y;
                                              })
                                .points;
                 }
                 ++holes;
               });
  }
  if (points == nullptr) {
    hole_counts[l - 1] = holes;
    point_counts[l - 1] = count;
  }
}

}  // namespace

HoleContours hole_contours_cuda(const int32_t* labels, int32_t height, int32_t width, int64_t num_objects,
                                void* stream_handle) {
  auto s = static_cast<cudaStream_t>(stream_handle);
  HoleContours result;
  result.object_offsets.assign(num_objects + 1, 0);
  result.point_offsets.assign(1, 0);
  if (num_objects == 0) return result;
  const int64_t pixels = int64_t{height} * width;
  StreamBuffer<int32_t> boxes(4 * (static_cast<size_t>(num_objects) + 1), s);
  init_boxes_kernel<<<blocks(num_objects + 1), kThreads, 0, s>>>(boxes.get(), num_objects + 1, height, width);
  CELLRT_CUDA_CHECK_LAUNCH();
  boxes_kernel<<<blocks(pixels), kThreads, 0, s>>>(labels, height, width, num_objects, boxes.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  // Scratch per object: its box's area (state bytes + stack entries), laid out by a host prefix sum.
  std::vector<int32_t> host_boxes(4 * (static_cast<size_t>(num_objects) + 1));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(host_boxes.data(), boxes.get(), host_boxes.size() * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<int64_t> scratch_offsets(num_objects, 0);
  int64_t scratch_total = 0;
  for (int64_t l = 1; l <= num_objects; ++l) {
    scratch_offsets[l - 1] = scratch_total;
    const int32_t* b = host_boxes.data() + 4 * l;
    if (b[1] >= 0) scratch_total += int64_t{b[1] - b[0] + 1} * (b[3] - b[2] + 1);
  }
  StreamBuffer<int64_t> offsets_device(static_cast<size_t>(num_objects), s);
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(offsets_device.get(), scratch_offsets.data(), num_objects * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, s));
  StreamBuffer<uint8_t> state(static_cast<size_t>(scratch_total), s);
  StreamBuffer<int32_t> stack(static_cast<size_t>(scratch_total), s);
  StreamBuffer<int64_t> counts(2 * static_cast<size_t>(num_objects), s);  // holes, then points, per object
  int64_t* hole_counts = counts.get();
  int64_t* point_counts = counts.get() + num_objects;
  holes_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, boxes.get(),
                                                        offsets_device.get(), state.get(), stack.get(), hole_counts,
                                                        point_counts, nullptr, nullptr, nullptr, nullptr);
  CELLRT_CUDA_CHECK_LAUNCH();
  std::vector<int64_t> host_counts(2 * static_cast<size_t>(num_objects));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(host_counts.data(), counts.get(), host_counts.size() * sizeof(int64_t),
                                    cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<int64_t> bases(2 * static_cast<size_t>(num_objects));  // hole base, then point base, per object
  int64_t holes = 0, total_points = 0;
  for (int64_t l = 1; l <= num_objects; ++l) {
    bases[l - 1] = holes;
    bases[num_objects + l - 1] = total_points;
    holes += host_counts[l - 1];
    total_points += host_counts[num_objects + l - 1];
    result.object_offsets[l] = holes;
  }
  if (holes == 0) return result;
  StreamBuffer<int64_t> bases_device(bases.size(), s);
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(bases_device.get(), bases.data(), bases.size() * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, s));
  StreamBuffer<int64_t> point_offsets(static_cast<size_t>(holes), s);
  StreamBuffer<int32_t> points(2 * static_cast<size_t>(total_points), s);
  holes_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, boxes.get(),
                                                        offsets_device.get(), state.get(), stack.get(), nullptr,
                                                        nullptr, bases_device.get(), bases_device.get() + num_objects,
                                                        point_offsets.get(), points.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  result.point_offsets.resize(static_cast<size_t>(holes) + 1);
  result.points.resize(2 * static_cast<size_t>(total_points));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(result.point_offsets.data(), point_offsets.get(), holes * sizeof(int64_t),
                                    cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(result.points.data(), points.get(), result.points.size() * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(s));
  result.point_offsets[static_cast<size_t>(holes)] = total_points;
  return result;
}

int64_t contours_cuda(const int32_t* labels, int32_t height, int32_t width, int64_t num_objects, int64_t* offsets,
                      int32_t* points, double* perimeter, void* stream_handle) {
  auto s = static_cast<cudaStream_t>(stream_handle);
  const int64_t pixels = int64_t{height} * width;
  CELLRT_CUDA_CHECK(cudaMemsetAsync(offsets, 0, sizeof(int64_t), s));
  if (num_objects == 0) return 0;
  StreamBuffer<int32_t> first(static_cast<size_t>(num_objects) + 1, s);
  fill_kernel<<<blocks(num_objects + 1), kThreads, 0, s>>>(first.get(), num_objects + 1, INT_MAX);
  CELLRT_CUDA_CHECK_LAUNCH();
  first_pixel_kernel<<<blocks(pixels), kThreads, 0, s>>>(labels, pixels, num_objects, first.get());
  CELLRT_CUDA_CHECK_LAUNCH();
  StreamBuffer<int64_t> counts(static_cast<size_t>(num_objects), s);
  count_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, first.get(),
                                                        counts.get(), perimeter);
  CELLRT_CUDA_CHECK_LAUNCH();
  size_t scan_bytes = 0;
  CELLRT_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, counts.get(), offsets + 1,
                                                  static_cast<int>(num_objects), s));
  StreamBuffer<char> scan_space(scan_bytes, s);
  CELLRT_CUDA_CHECK(cub::DeviceScan::InclusiveSum(scan_space.get(), scan_bytes, counts.get(), offsets + 1,
                                                  static_cast<int>(num_objects), s));
  if (points != nullptr) {
    points_kernel<<<blocks(num_objects), kThreads, 0, s>>>(labels, height, width, num_objects, first.get(), offsets,
                                                           points);
    CELLRT_CUDA_CHECK_LAUNCH();
  }
  int64_t total = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&total, offsets + num_objects, sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(s));
  return total;
}

}  // namespace cellrt::detail
