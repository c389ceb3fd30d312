// CUDA tiler: one thread per tile element, x fastest, so a warp writes 32
// consecutive tile values and reads 32 consecutive image pixels (the image
// row is shared by neighbouring threads; mirrored pixels are the exception).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/cuda_check.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

namespace cellrt::detail {

namespace {

struct DeviceTileArgs {
  int32_t planes;  // tiles x channels
  int32_t channels, height, width, tile_h, tile_w;
  int64_t stride_c, stride_y, stride_x;
  const int32_t* origin_y;
  const int32_t* origin_x;
  const float* scale;
  const float* offset;
};

// Blocks of 32 x 8 tile elements; grid z walks the (tile, channel) planes.
// Index arithmetic stays in 32 bits per plane (64-bit division per element
// made the kernel compute-bound at a tenth of the memory bandwidth).
template <typename In, typename Out>
__global__ void tile_kernel(const In* __restrict__ image, DeviceTileArgs a, Out* __restrict__ tiles,
                            unsigned long long* nonfinite) {
  const int32_t tx = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  const int32_t ty = static_cast<int32_t>(blockIdx.y * blockDim.y + threadIdx.y);
  if (tx >= a.tile_w || ty >= a.tile_h) return;
  for (int32_t plane = static_cast<int32_t>(blockIdx.z); plane < a.planes; plane += static_cast<int32_t>(gridDim.z)) {
    const int32_t k = plane / a.channels, c = plane - k * a.channels;
    const int64_t y = reflect_index(int64_t{a.origin_y[k]} + ty, a.height);
    const int64_t x = reflect_index(int64_t{a.origin_x[k]} + tx, a.width);
    const Out v = normalise_pixel<Out>(to_float(image[c * a.stride_c + y * a.stride_y + x * a.stride_x]),
                                       a.scale[c], a.offset[c]);
    tiles[(int64_t{plane} * a.tile_h + ty) * a.tile_w + tx] = v;
    if (!is_finite_value(to_float(v))) atomicAdd(nonfinite, 1ull);
  }
}

template <typename In, typename Out>
void launch(const TensorView& image, const DeviceTileArgs& a, const TensorView& tiles,
            unsigned long long* nonfinite, cudaStream_t stream) {
  constexpr unsigned kMaxGridZ = 65535;
  const dim3 block(32, 8);
  const dim3 grid((a.tile_w + block.x - 1) / block.x, (a.tile_h + block.y - 1) / block.y,
                  std::min<unsigned>(static_cast<unsigned>(a.planes), kMaxGridZ));
  tile_kernel<In, Out><<<grid, block, 0, stream>>>(static_cast<const In*>(image.data), a,
                                                   static_cast<Out*>(tiles.data), nonfinite);
  CELLRT_CUDA_CHECK_LAUNCH();
}

template <typename In>
void launch_in(const TensorView& image, const DeviceTileArgs& a, const TensorView& tiles,
               unsigned long long* nonfinite, cudaStream_t stream) {
  if (tiles.dtype == DType::kFloat16) {
    launch<In, Half>(image, a, tiles, nonfinite, stream);
  } else {
    launch<In, float>(image, a, tiles, nonfinite, stream);
  }
}

}  // namespace

TileResult tile_cuda(const TensorView& image, const TileArgs& args, const TensorView& tiles, void* stream_handle) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t n = args.num_tiles, c = args.channels;
  // Layout of the one scratch allocation: counter | origins y | origins x | scale | offset.
  const size_t bytes = 256 + 2 * n * sizeof(int32_t) + 2 * c * sizeof(float) + 64;
  StreamBuffer<char> scratch_buffer(bytes, stream);
  char* scratch = scratch_buffer.get();

  auto* counter = reinterpret_cast<unsigned long long*>(scratch);
  auto* origin_y = reinterpret_cast<int32_t*>(scratch + 256);
  auto* origin_x = origin_y + n;
  auto* scale = reinterpret_cast<float*>(origin_x + n);
  auto* offset = scale + c;
  // One copy up from one host block, laid out as the scratch (counter zeroed).
  std::vector<char> staging(bytes, 0);
  auto host = [&](const void* device_ptr) { return staging.data() + (static_cast<const char*>(device_ptr) - scratch); };
  std::memcpy(host(origin_y), args.origin_y.data(), n * sizeof(int32_t));
  std::memcpy(host(origin_x), args.origin_x.data(), n * sizeof(int32_t));
  std::memcpy(host(scale), args.scale.data(), c * sizeof(float));
  std::memcpy(host(offset), args.offset.data(), c * sizeof(float));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(scratch, staging.data(), bytes, cudaMemcpyHostToDevice, stream));

  CELLRT_CHECK(n * c < std::numeric_limits<int32_t>::max(), "tile: ", n, " tiles x ", c,
               " channels is more planes than one call takes; tile in batches");
  CELLRT_CHECK(args.tile_h <= 8 * 65535, "tile: tiles of ", args.tile_h, " rows are taller than the CUDA tiler "
               "takes (", 8 * 65535, ")");
  DeviceTileArgs a{static_cast<int32_t>(n * c), args.channels, args.height, args.width, args.tile_h,
                   args.tile_w, image.strides[0], image.strides[1], image.strides[2], origin_y, origin_x,
                   scale, offset};
  switch (image.dtype) {
    case DType::kUInt8: launch_in<uint8_t>(image, a, tiles, counter, stream); break;
    case DType::kUInt16: launch_in<uint16_t>(image, a, tiles, counter, stream); break;
    default: launch_in<float>(image, a, tiles, counter, stream); break;
  }
  unsigned long long host_counter = 0;
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(&host_counter, counter, sizeof host_counter, cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return TileResult{static_cast<int64_t>(host_counter)};
}

}  // namespace cellrt::detail
