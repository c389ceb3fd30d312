// CUDA tiler: one thread per tile element, x fastest, so a warp writes 32
// consecutive tile values and reads 32 consecutive image pixels (the image
// row is shared by neighbouring threads; mirrored pixels are the exception).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/cuda_check.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

namespace cellrt::detail {

namespace {

struct DeviceTileArgs {
  int64_t total;
  int32_t channels, height, width, tile_h, tile_w;
  int64_t stride_c, stride_y, stride_x;
  const int32_t* origin_y;
  const int32_t* origin_x;
  const float* scale;
  const float* offset;
};

template <typename In, typename Out>
__global__ void tile_kernel(const In* __restrict__ image, DeviceTileArgs a, Out* __restrict__ tiles,
                            unsigned long long* nonfinite) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= a.total) return;
  const int32_t tx = static_cast<int32_t>(i % a.tile_w);
  const int32_t ty = static_cast<int32_t>((i / a.tile_w) % a.tile_h);
  const int32_t c = static_cast<int32_t>((i / (int64_t{a.tile_w} * a.tile_h)) % a.channels);
  const int64_t k = i / (int64_t{a.tile_w} * a.tile_h * a.channels);
  const int64_t y = reflect_index(int64_t{a.origin_y[k]} + ty, a.height);
  const int64_t x = reflect_index(int64_t{a.origin_x[k]} + tx, a.width);
  const Out v = normalise_pixel<Out>(to_float(image[c * a.stride_c + y * a.stride_y + x * a.stride_x]),
                                     a.scale[c], a.offset[c]);
  tiles[i] = v;
  if (!is_finite_value(to_float(v))) atomicAdd(nonfinite, 1ull);
}

template <typename In, typename Out>
void launch(const TensorView& image, const DeviceTileArgs& a, const TensorView& tiles,
            unsigned long long* nonfinite, cudaStream_t stream) {
  const int threads = 256;
  const int64_t blocks = (a.total + threads - 1) / threads;
  tile_kernel<In, Out><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<const In*>(image.data), a, static_cast<Out*>(tiles.data), nonfinite);
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
  char* scratch = nullptr;
  CELLRT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), bytes, stream));
  struct Release {
    char* p;
    cudaStream_t s;
    ~Release() { cudaFreeAsync(p, s); }
  } release{scratch, stream};

  auto* counter = reinterpret_cast<unsigned long long*>(scratch);
  auto* origin_y = reinterpret_cast<int32_t*>(scratch + 256);
  auto* origin_x = origin_y + n;
  auto* scale = reinterpret_cast<float*>(origin_x + n);
  auto* offset = scale + c;
  CELLRT_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned long long), stream));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(origin_y, args.origin_y.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(origin_x, args.origin_x.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(scale, args.scale.data(), c * sizeof(float), cudaMemcpyHostToDevice, stream));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(offset, args.offset.data(), c * sizeof(float), cudaMemcpyHostToDevice, stream));

  DeviceTileArgs a{n * c * args.tile_h * args.tile_w, args.channels, args.height, args.width, args.tile_h,
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
