// DriftMonitor: the arithmetic of cellrt.drift.DriftMonitor (monitor.py) in
// C++. Per field one kernel row of the new vector against the reference and
// the window (rbf_kernel_cpu), then the statistic from stored sums, exactly.
#include "cellrt/drift.h"

#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/validate.h"
#include "mmd/mmd_ops.h"

namespace cellrt {

struct DriftMonitor::State {
  int64_t n = 0, dims = 0;
  int32_t window = 0;
  double inv_two_sigma2 = 0.0, threshold = 0.0, xx = 0.0;
  std::vector<float> points;   // reference rows, then the window's ring slots
  std::vector<double> row, cross, pairs;
  int64_t count = 0;
};

DriftMonitor::DriftMonitor(const TensorView& reference, double sigma, int32_t window, double threshold)
    : state_(std::make_unique<State>()) {
  detail::check_view("DriftMonitor", "reference", reference, 2, "(N, D)", true);
  CELLRT_CHECK(reference.device == Device::kCPU && reference.dtype == DType::kFloat32,
               "DriftMonitor: reference should be host float32, got ", dtype_name(reference.dtype));
  CELLRT_CHECK(reference.shape[0] >= 2 && reference.shape[1] >= 1, "DriftMonitor: reference should hold at least "
               "2 embeddings of at least 1 value, got ", detail::shape_string(reference));
  CELLRT_CHECK(std::isfinite(sigma) && sigma > 0.0, "DriftMonitor: sigma should be a positive number, got ", sigma);
  CELLRT_CHECK(window >= 2, "DriftMonitor: window should be >= 2 fields, got ", window);
  CELLRT_CHECK(std::isfinite(threshold), "DriftMonitor: threshold should be finite, got ", threshold);
  State& s = *state_;
  s.n = reference.shape[0];
  s.dims = reference.shape[1];
  s.window = window;
  s.threshold = threshold;
  s.inv_two_sigma2 = 1.0 / (2.0 * sigma * sigma);
  const auto* ref = static_cast<const float*>(reference.data);
  for (int64_t i = 0; i < s.n * s.dims; ++i)
    CELLRT_CHECK(std::isfinite(ref[i]), "DriftMonitor: reference embedding ", i / s.dims, " holds NaN or inf");
  s.points.assign(ref, ref + s.n * s.dims);
  s.points.resize((s.n + window) * s.dims, 0.0f);
  std::vector<double> sums(s.n);
  detail::rbf_kernel_cpu(ref, ref, s.n, s.n, static_cast<int32_t>(s.dims), s.inv_two_sigma2, true, sums.data(), 0);
  double total = 0.0;
  for (double v : sums) total += v;
  s.xx = (total - static_cast<double>(s.n)) / (static_cast<double>(s.n) * static_cast<double>(s.n - 1));
  s.row.resize(s.n + window);
  s.cross.assign(window, 0.0);
  reset();
}

DriftMonitor::~DriftMonitor() = default;
DriftMonitor::DriftMonitor(DriftMonitor&&) noexcept = default;
DriftMonitor& DriftMonitor::operator=(DriftMonitor&&) noexcept = default;

int64_t DriftMonitor::dims() const { return state_->dims; }

void DriftMonitor::reset() {
  State& s = *state_;
  s.pairs.assign(static_cast<size_t>(s.window) * s.window, 0.0);
  for (int32_t i = 0; i < s.window; ++i) s.pairs[static_cast<size_t>(i) * s.window + i] = 1.0;
  s.cross.assign(s.window, 0.0);
  s.count = 0;
}

DriftStep DriftMonitor::update(const float* embedding, int64_t dims) {
  State& s = *state_;
  CELLRT_CHECK(embedding != nullptr, "DriftMonitor.update: embedding is null");
  CELLRT_CHECK(dims == s.dims, "DriftMonitor.update: an embedding should have ", s.dims, " values, got ", dims);
  for (int64_t k = 0; k < dims; ++k)
    CELLRT_CHECK(std::isfinite(embedding[k]), "DriftMonitor.update: the embedding holds NaN or inf (value ", k, ")");
  const int32_t w = s.window;
  const int32_t slot = static_cast<int32_t>(s.count % w);
  const int32_t m = static_cast<int32_t>(s.count + 1 < w ? s.count + 1 : w);  // occupied slots after this field
  std::copy(embedding, embedding + dims, s.points.begin() + (s.n + slot) * s.dims);
  detail::rbf_kernel_cpu(embedding, s.points.data(), 1, s.n + m, static_cast<int32_t>(dims), s.inv_two_sigma2, false,
                         s.row.data(), 1);
  double cross = 0.0;
  for (int64_t j = 0; j < s.n; ++j) cross += s.row[j];
  s.cross[slot] = cross;
  for (int32_t j = 0; j < m; ++j) {
    s.pairs[static_cast<size_t>(slot) * w + j] = s.row[s.n + j];
    s.pairs[static_cast<size_t>(j) * w + slot] = s.row[s.n + j];
  }
  s.pairs[static_cast<size_t>(slot) * w + slot] = 1.0;
  ++s.count;
  double cross_sum = 0.0, within = 0.0;
  for (int32_t j = 0; j < m; ++j) cross_sum += s.cross[j];
  for (int32_t a = 0; a < m; ++a)
    for (int32_t b = 0; b < m; ++b) within += s.pairs[static_cast<size_t>(a) * w + b];
  const double within_mean = m >= 2 ? (within - m) / (static_cast<double>(m) * (m - 1)) : 1.0;
  DriftStep step;
  step.index = s.count - 1;
  step.statistic = s.xx + within_mean - 2.0 * cross_sum / (static_cast<double>(s.n) * m);
  step.threshold = s.threshold;
  step.window_full = s.count >= w;
  step.alarm = step.window_full && step.statistic > s.threshold;
  return step;
}

}  // namespace cellrt
