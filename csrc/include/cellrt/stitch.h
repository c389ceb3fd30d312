// stitch: overlap-blended reconstruction of an image from tiles, with an
// optional fused activation or argmax.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// Blend windows. All are separable, w(y, x) = wy(y) * wx(x), and positive
// wherever a tile covers the image.
enum class Blend : int32_t {
  kConstant = 0,  // w = 1: plain average of the covering tiles
  kLinear = 1,    // linear ramp over the `overlap` pixels next to an inner side
  kCosine = 2,    // raised-cosine ramp over the same pixels
  kGaussian = 3,  // exp(-d^2 / (2 (sigma_scale * tile)^2)) about the tile centre
  kCrop = 4,      // no blending: each pixel from the covering tile whose centre
                  // is nearest (ties: lowest tile index)
};

enum class Activation : int32_t {
  kNone = 0,
  kSigmoid = 1,  // per value
  kSoftmax = 2,  // over channels, per pixel; at most 64 channels (see argmax)
};

struct StitchOptions {
  Blend blend = Blend::kGaussian;
  // Width in pixels of the linear/cosine ramps (the tiler's overlap). A side
  // of a tile tapers only when it lies inside the image; sides on the image
  // border keep full weight. Gaussian windows likewise stay flat (1) on the
  // border half of the tile.
  int32_t overlap_y = 0;
  int32_t overlap_x = 0;
  // Gaussian sigma as a fraction of the tile side (MONAI's sigma_scale).
  float sigma_scale = 0.125f;
  // Applied to the blended values (logits are blended, then activated, as
  // nnU-Net does), so it costs one evaluation per output pixel.
  Activation activation = Activation::kNone;
  // When true, out is [H, W] int32 holding the index of the largest blended
  // channel (first on ties; first NaN if any) instead of the values, and -1
  // where no tile covers a pixel. Softmax and argmax hold one pixel's
  // channels in registers (a stack array on the CPU), so they take at most
  // 64 channels; more is std::invalid_argument.
  bool argmax = false;
  // Written where no tile covers a pixel (see StitchResult::uncovered), in
  // every channel and without the activation. Not used with argmax: -1 there.
  float fill_value = 0.0f;
  // CPU worker threads; 0 (or less) = all hardware threads; at most 4x the
  // hardware threads and one per work item are started. Ignored on CUDA.
  int32_t num_threads = 0;
};

struct StitchResult {
  int64_t uncovered = 0;  // output pixels covered by no tile (set to fill_value, or -1 with argmax)
  int64_t nonfinite = 0;  // non-finite blended values (before activation)
};

// Reconstructs out from tiles by weighted averaging: each output pixel is
// sum_k w_k v_k / sum_k w_k over the tiles k covering it, summed in ascending
// tile order (a gather: deterministic, no atomics). Tile pixels outside the
// image are ignored. Accumulation is float32.
//
// Args:
//   tiles:   [N, C, th, tw] float32 or float16, C-contiguous.
//   origins: [N, 2] int64 (y, x) top-left corners, host memory; tiles may
//            extend past the bottom/right border but origins lie inside.
//   out:     [C, H, W] float32, or [H, W] int32 with options.argmax;
//            C-contiguous, same device as tiles; written entirely.
//   stream:  cudaStream_t for CUDA inputs (nullptr = default stream).
//
// Returns the uncovered and non-finite counts. On CUDA the call waits for
// the stream to finish (the counts are read back).
//
// Throws std::invalid_argument for bad arguments (on CUDA also for images
// over 524280 rows: 65535 blocks of 8 thread rows), cellrt::NotCompiledError
// for CUDA views in a CPU-only build, std::runtime_error for CUDA failures.
//
// Reentrant: calls may run concurrently on distinct outputs (see c_api.h,
// "Threads", for how they share the CPU worker pool).
StitchResult stitch(const TensorView& tiles, const int64_t* origins, const TensorView& out,
                    const StitchOptions& options = StitchOptions{}, void* stream = nullptr);

}  // namespace cellrt
