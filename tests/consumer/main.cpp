// Uses the installed C++ API: tile a synthetic 16-bit field, stitch it back
// with gaussian blending, and check the round trip. Exit 0 and "ok" on success.
#include <cellrt/c_api.h>
#include <cellrt/cellrt.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

int main() {
  const int64_t h = 300, w = 220, t = 64, overlap = 16;
  std::vector<uint16_t> image(h * w);
  for (int64_t i = 0; i < h * w; ++i) image[i] = static_cast<uint16_t>((i * 2654435761u) >> 20);

  // The grid: count first, then fill.
  const int64_t n = cellrt::tile_origins(h, w, t, t, overlap, overlap);
  std::vector<int64_t> origins(2 * n);
  cellrt::tile_origins(h, w, t, t, overlap, overlap, origins.data(), static_cast<int64_t>(origins.size()));
  if (n != 6 * 5 || origins[2 * n - 2] != h - t || origins[2 * n - 1] != w - t) return 1;

  cellrt::TensorView in;
  in.data = image.data();
  in.dtype = cellrt::DType::kUInt16;
  in.ndim = 3;
  in.shape[0] = 1, in.shape[1] = h, in.shape[2] = w;
  in.strides[0] = h * w, in.strides[1] = w, in.strides[2] = 1;

  std::vector<float> tiles(n * t * t);
  cellrt::TensorView tv;
  tv.data = tiles.data();
  tv.ndim = 4;
  tv.shape[0] = n, tv.shape[1] = 1, tv.shape[2] = t, tv.shape[3] = t;
  tv.strides[0] = t * t, tv.strides[1] = t * t, tv.strides[2] = t, tv.strides[3] = 1;
  cellrt::tile(in, origins.data(), tv);

  std::vector<float> field(h * w);
  cellrt::TensorView out;
  out.data = field.data();
  out.ndim = 3;
  out.shape[0] = 1, out.shape[1] = h, out.shape[2] = w;
  out.strides[0] = h * w, out.strides[1] = w, out.strides[2] = 1;
  cellrt::StitchOptions options;
  options.overlap_y = options.overlap_x = static_cast<int32_t>(overlap);
  const cellrt::StitchResult r = cellrt::stitch(tv, origins.data(), out, options);

  double worst = 0;
  for (int64_t i = 0; i < h * w; ++i) worst = std::fmax(worst, std::fabs(field[i] - image[i]));
  bool threw = false;
  try {
    options.overlap_x = static_cast<int32_t>(t);
    cellrt::stitch(tv, origins.data(), out, options);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  std::printf("cellrt %s (C ABI %s): %lld tiles, uncovered %lld, worst error %g\n", cellrt::version(),
              cellrt_version(), static_cast<long long>(n), static_cast<long long>(r.uncovered), worst);
  // float32 weighted means of equal values: a few ulp of the 16-bit range.
  if (r.uncovered != 0 || worst > 65535 * 1e-6 || !threw) return 1;

  // The drift monitor as acquisition software runs it: a reference of 20 fields of 3 values, window 3; a
  // stream that moves away from the reference raises the alarm once the window holds the moved fields.
  std::vector<float> reference(20 * 3);
  for (int64_t i = 0; i < 20 * 3; ++i) reference[i] = static_cast<float>((i * 37) % 11) * 0.1f;
  cellrt::TensorView ref;
  ref.data = reference.data();
  ref.ndim = 2;
  ref.shape[0] = 20, ref.shape[1] = 3;
  ref.strides[0] = 3, ref.strides[1] = 1;
  cellrt::DriftMonitor monitor(ref, 0.5, 3, 0.8);
  bool quiet = true, alarmed = false;
  const float far_field[3] = {9.0f, 9.0f, 9.0f};
  for (int field = 0; field < 6; ++field) {
    // Three fields like the reference's (its rows 5, 11, 17), then three far away.
    const cellrt::DriftStep step = monitor.update(field < 3 ? &reference[3 * (5 + 6 * field)] : far_field, 3);
    if (field < 3) quiet = quiet && !step.alarm;
    if (field == 5) alarmed = step.alarm;
  }
  std::printf("drift: quiet %d, alarmed %d\n", quiet, alarmed);
  if (!quiet || !alarmed) return 1;

  // Device views in a build without CUDA: the documented cellrt::NotCompiledError, which the installed headers
  // declare so that it can be caught by name. With CUDA, a host pointer labelled as device memory fails in CUDA.
  if (!cellrt::built_with_cuda()) {
    bool not_compiled = false;
    cellrt::TensorView device_tiles = tv, device_out = out;
    options.overlap_x = static_cast<int32_t>(overlap);
    device_tiles.device = device_out.device = cellrt::Device::kCUDA;
    try {
      cellrt::stitch(device_tiles, origins.data(), device_out, options);
    } catch (const cellrt::NotCompiledError& e) {
      not_compiled = true;
      std::printf("CUDA views in a CPU-only build: %s\n", e.what());
    } catch (const std::exception&) {
    }
    if (!not_compiled) return 1;
  }
  std::printf("ok\n");
  return 0;
}
