// CUDA stitcher: one thread per output pixel gathers from the tiles that
// cover it, found through the plan's cell tables (stitch_plan.h). A gather
// needs no atomics on the output and sums each pixel's tiles in ascending
// order, so results are deterministic and match the CPU backend; the only
// atomics count rare events (uncovered or non-finite pixels).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/cuda_check.h"
#include "stitch/stitch_kernel.h"
#include "stitch/stitch_plan.h"

namespace cellrt::detail {

namespace {

struct DevicePlan {
  int32_t channels, tile_h, tile_w, height, width, cell_columns;
  const int32_t* origin_y;
  const int32_t* origin_x;
  const int32_t* row_cell;
  const int32_t* col_cell;
  const int32_t* cell_start;
  const int32_t* cell_tiles;
  const float* window_y;
  const float* window_x;
};

struct Fused {
  int32_t blend, activation;
  bool argmax;
  float fill_value;
};

enum Counter { kUncovered = 0, kNonfinite = 1 };

template <typename T>
__device__ inline float tile_value(const T* tiles, const DevicePlan& p, int64_t k, int32_t c, int32_t y,
                                   int32_t x) {
  const int64_t ty = y - p.origin_y[k], tx = x - p.origin_x[k];
  return to_float(tiles[((k * p.channels + c) * p.tile_h + ty) * p.tile_w + tx]);
}

template <typename T>
__global__ void stitch_kernel(const T* __restrict__ tiles, DevicePlan p, Fused f, float* out_values,
                              int32_t* out_labels, unsigned long long* counters) {
  const int32_t x = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= p.width || y >= p.height) return;
  const int64_t plane = int64_t{p.height} * p.width, pixel = int64_t{y} * p.width + x;
  const int64_t cell = int64_t{p.row_cell[y]} * p.cell_columns + p.col_cell[x];
  const int32_t first = p.cell_start[cell], last = p.cell_start[cell + 1];

  if (first == last) {
    atomicAdd(&counters[kUncovered], 1ull);
    if (f.argmax) {
      out_labels[pixel] = -1;
    } else {
      for (int32_t c = 0; c < p.channels; ++c) out_values[c * plane + pixel] = f.fill_value;
    }
    return;
  }

  // Crop mode, and any pixel with a single covering tile, keeps one tile
  // with weight 1; otherwise the list is blended.
  int32_t owner = -1;
  float den = 0.0f;
  if (f.blend == kBlendCrop) {
    int64_t best = 0;
    for (int32_t i = first; i < last; ++i) {
      const int32_t k = p.cell_tiles[i];
      const int64_t d = centre_distance2(y, p.origin_y[k], p.tile_h) + centre_distance2(x, p.origin_x[k], p.tile_w);
      if (i == first || d < best) {
        best = d;
        owner = k;
      }
    }
    accumulate(den, 1.0f, 1.0f);
  } else if (last - first == 1) {
    owner = p.cell_tiles[first];
    accumulate(den, 1.0f, kSingleTileWeight);
  } else {
    for (int32_t i = first; i < last; ++i) {
      const int32_t k = p.cell_tiles[i];
      accumulate(den, 1.0f,
                 tile_weight(p.window_y[int64_t{k} * p.tile_h + (y - p.origin_y[k])],
                             p.window_x[int64_t{k} * p.tile_w + (x - p.origin_x[k])]));
    }
  }

  const bool keep_all = f.argmax || f.activation == kActivationSoftmax;
  float values[kMaxFusedChannels];
  unsigned long long nonfinite = 0;
  for (int32_t c = 0; c < p.channels; ++c) {
    float num = 0.0f;
    if (owner >= 0) {
      accumulate(num, tile_value(tiles, p, owner, c, y, x), kSingleTileWeight);
    } else {
      for (int32_t i = first; i < last; ++i) {
        const int32_t k = p.cell_tiles[i];
        const float w = tile_weight(p.window_y[int64_t{k} * p.tile_h + (y - p.origin_y[k])],
                                    p.window_x[int64_t{k} * p.tile_w + (x - p.origin_x[k])]);
        accumulate(num, tile_value(tiles, p, k, c, y, x), w);
      }
    }
    float v = finalize(num, den, f.fill_value);
    nonfinite += is_finite_value(v) ? 0 : 1;
    if (keep_all) {
      values[c] = v;
    } else {
      out_values[c * plane + pixel] = f.activation == kActivationSigmoid ? sigmoid(v) : v;
    }
  }
  if (nonfinite) atomicAdd(&counters[kNonfinite], nonfinite);
  if (f.argmax) {
    out_labels[pixel] = argmax(values, p.channels);
  } else if (keep_all) {
    softmax_inplace(values, p.channels);
    for (int32_t c = 0; c < p.channels; ++c) out_values[c * plane + pixel] = values[c];
  }
}

template <typename V>
size_t aligned_bytes(const std::vector<V>& v) {
  return (v.size() * sizeof(V) + 255) / 256 * 256;
}

}  // namespace

StitchResult stitch_cuda(const TensorView& tiles, const StitchPlan& plan, const TensorView& out,
                         const StitchOptions& options, void* stream_handle) {
  // A thread row of 8 per block row, and gridDim.y stops at 65535: refused before anything is allocated
  // (the launch failed with "invalid configuration argument").
  CELLRT_CHECK(plan.height <= 8 * 65535, "stitch: images of ", plan.height, " rows are taller than the CUDA "
               "stitcher takes (", 8 * 65535, "); stitch in bands of rows");
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const std::vector<int32_t>* ints[] = {&plan.origin_y, &plan.origin_x, &plan.row_cell, &plan.col_cell,
                                        &plan.cell_start, &plan.cell_tiles};
  const std::vector<float>* floats[] = {&plan.window_y, &plan.window_x};
  size_t total = 256;  // counters first
  for (auto* v : ints) total += aligned_bytes(*v);
  for (auto* v : floats) total += aligned_bytes(*v);
  StreamBuffer<char> buffer(total, stream);  // the plan tables and the counters

  // The counters and the tables go up in one copy from one host block (a
  // pageable copy returns once staged, so the block may go after the call).
  std::vector<char> staging(total, 0);
  const void* placed[8];
  int slot = 0;
  size_t at = 256;  // counters first
  auto place = [&](const void* data, size_t bytes, size_t padded) {
    if (bytes) std::memcpy(staging.data() + at, data, bytes);
    placed[slot++] = buffer.get() + at;
    at += padded;
  };
  for (auto* v : ints) place(v->data(), v->size() * sizeof(int32_t), aligned_bytes(*v));
  for (auto* v : floats) place(v->data(), v->size() * sizeof(float), aligned_bytes(*v));
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(buffer.get(), staging.data(), total, cudaMemcpyHostToDevice, stream));
  auto* counters = reinterpret_cast<unsigned long long*>(buffer.get());

  DevicePlan dp{plan.channels, plan.tile_h, plan.tile_w, plan.height, plan.width,
                static_cast<int32_t>(plan.cell_columns()),
                static_cast<const int32_t*>(placed[0]), static_cast<const int32_t*>(placed[1]),
                static_cast<const int32_t*>(placed[2]), static_cast<const int32_t*>(placed[3]),
                static_cast<const int32_t*>(placed[4]), static_cast<const int32_t*>(placed[5]),
                static_cast<const float*>(placed[6]), static_cast<const float*>(placed[7])};
  Fused fused{static_cast<int32_t>(options.blend), static_cast<int32_t>(options.activation), options.argmax,
              options.fill_value};
  float* values = options.argmax ? nullptr : static_cast<float*>(out.data);
  int32_t* labels = options.argmax ? static_cast<int32_t*>(out.data) : nullptr;

  // 32 x 8 threads: a warp reads 32 consecutive pixels of a tile row.
  const dim3 block(32, 8);
  const dim3 grid((plan.width + block.x - 1) / block.x, (plan.height + block.y - 1) / block.y);
  if (tiles.dtype == DType::kFloat16) {
    stitch_kernel<Half><<<grid, block, 0, stream>>>(static_cast<const Half*>(tiles.data), dp, fused, values,
                                                     labels, counters);
  } else {
    stitch_kernel<float><<<grid, block, 0, stream>>>(static_cast<const float*>(tiles.data), dp, fused, values,
                                                      labels, counters);
  }
  CELLRT_CUDA_CHECK_LAUNCH();

  unsigned long long host_counters[2] = {0, 0};
  CELLRT_CUDA_CHECK(cudaMemcpyAsync(host_counters, counters, sizeof host_counters, cudaMemcpyDeviceToHost, stream));
  CELLRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return StitchResult{static_cast<int64_t>(host_counters[kUncovered]), static_cast<int64_t>(host_counters[kNonfinite])};
}

}  // namespace cellrt::detail
