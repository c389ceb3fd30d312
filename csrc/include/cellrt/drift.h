// DriftMonitor: the streaming MMD drift monitor of cellrt.drift for C++
// acquisition software - one field embedding in, the windowed statistic
// and the alarm out, O((N + W) D) per field.
//
// The reference (embeddings, kernel width, window and calibrated threshold)
// is made in Python (cellrt.drift.DriftReference, `cellrt drift-reference`)
// and handed over as arrays: DriftReference.save_raw() writes them as raw
// little-endian float32 plus a JSON header.
#pragma once

#include <cstdint>
#include <memory>

#include "cellrt/types.h"

namespace cellrt {

struct DriftStep {
  int64_t index = -1;       // fields seen before this one
  double statistic = 0.0;   // MMD^2 estimate over the current window
  double threshold = 0.0;
  bool window_full = false;
  bool alarm = false;       // window full and statistic > threshold
};

// Not thread-safe: update() and reset() change the monitor's running state
// without a lock, so one monitor serves one thread at a time (or its caller
// locks). Separate monitors are independent.
class DriftMonitor {
 public:
  // reference: (N, D) float32 host, N >= 2; sigma > 0; window >= 2; threshold finite.
  DriftMonitor(const TensorView& reference, double sigma, int32_t window, double threshold);
  ~DriftMonitor();
  DriftMonitor(DriftMonitor&&) noexcept;
  DriftMonitor& operator=(DriftMonitor&&) noexcept;
  DriftMonitor(const DriftMonitor&) = delete;
  DriftMonitor& operator=(const DriftMonitor&) = delete;

  // One field's embedding (dims values, finite), in acquisition order.
  DriftStep update(const float* embedding, int64_t dims);
  void reset();
  int64_t dims() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cellrt
