// Distance transform, h-maxima seeds and seeded watershed (cellrt/watershed.h).
#include "cellrt/watershed.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/validate.h"

namespace cellrt {

namespace {

constexpr int64_t kFar = std::numeric_limits<int64_t>::max() / 4;  // "no background in reach"

// Squared distances along one line: f[i] = min_q (i - q)^2 + g[q], over the
// lower envelope of the parabolas rooted at the q with finite g.
void envelope_line(const int64_t* g, int64_t n, int64_t* f, int64_t* roots, double* bounds) {
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (g[q] >= kFar) continue;
    double s = 0.0;
    while (k >= 0) {
      const int64_t r = roots[k];
      // where the parabola of q overtakes that of r
      s = (static_cast<double>(g[q] + q * q) - static_cast<double>(g[r] + r * r)) / (2.0 * static_cast<double>(q - r));
      if (s > bounds[k]) break;
      --k;
    }
    ++k;
    roots[k] = q;
    bounds[k] = k == 0 ? -std::numeric_limits<double>::infinity() : s;
  }
  if (k < 0) {
    for (int64_t i = 0; i < n; ++i) f[i] = kFar;
    return;
  }
  int64_t j = 0;
  for (int64_t i = 0; i < n; ++i) {
    while (j < k && bounds[j + 1] <= static_cast<double>(i)) ++j;
    const int64_t d = i - roots[j];
    f[i] = d * d + g[roots[j]];
  }
}

// Flat index of the k-th (0..7, raster order) neighbour of pixel (y, x) of an h x w image, or -1
// (outside the image, or a diagonal one under 4-connectivity).
inline int64_t neighbour(int64_t y, int64_t x, int k, int64_t h, int64_t w, int32_t connectivity) {
  const int cell = k < 4 ? k : k + 1;  // the 3 x 3 square without its centre
  const int dy = cell / 3 - 1, dx = cell % 3 - 1;
  if (connectivity == 4 && dy != 0 && dx != 0) return -1;
  y += dy;
  x += dx;
  return y < 0 || y >= h || x < 0 || x >= w ? -1 : y * w + x;
}

// Each side below 2^31 before multiplying them, so the product cannot wrap (shapes come from C callers).
void check_pixels(const char* op, int64_t h, int64_t w, int64_t limit) {
  CELLRT_CHECK(h < (int64_t{1} << 31) && w < (int64_t{1} << 31) && h * w < limit, op,
               ": images should have fewer than ", limit, " pixels, got ", h, " x ", w);
}

int64_t count_nan(const float* v, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += std::isnan(v[i]) ? 1 : 0;
  return bad;
}

}  // namespace

void distance_transform(const TensorView& mask, const TensorView& out, int32_t num_threads) {
  detail::check_view("distance_transform", "mask", mask, 2, "(H, W)", true);
  detail::check_view("distance_transform", "out", out, 2, "(H, W)", true);
  CELLRT_CHECK(mask.dtype == DType::kUInt8, "distance_transform: mask should be uint8, got ", dtype_name(mask.dtype));
  CELLRT_CHECK(out.dtype == DType::kFloat32, "distance_transform: out should be float32, got ", dtype_name(out.dtype));
  detail::check_same_shape_2d("distance_transform", "mask", mask, "out", out);
  CELLRT_CHECK(mask.device == Device::kCPU && out.device == Device::kCPU,
               "distance_transform: only host arrays are supported");
  const int64_t h = mask.shape[0], w = mask.shape[1];
  check_pixels("distance_transform", h, w, int64_t{1} << 40);
  if (h == 0 || w == 0) return;
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* result = static_cast<float*>(out.data);
  std::vector<int64_t> column_sq(static_cast<size_t>(h * w));
  const int workers = detail::resolve_threads(num_threads);
  // Columns: squared distance to the nearest zero pixel of the same column.
  detail::parallel_for(w, workers, [&](int64_t x0, int64_t x1) {
    for (int64_t x = x0; x < x1; ++x) {
      int64_t run = kFar;
      for (int64_t y = 0; y < h; ++y) {
        run = m[y * w + x] ? (run >= kFar ? kFar : run + 1) : 0;
        column_sq[y * w + x] = run;
      }
      run = kFar;
      for (int64_t y = h - 1; y >= 0; --y) {
        run = m[y * w + x] ? (run >= kFar ? kFar : run + 1) : 0;
        const int64_t best = std::min(column_sq[y * w + x], run);
        column_sq[y * w + x] = best >= kFar ? kFar : best * best;
      }
    }
  });
  // Rows: the lower envelope of the columns' parabolas.
  detail::parallel_for(h, workers, [&](int64_t y0, int64_t y1) {
    std::vector<int64_t> f(w), roots(w);
    std::vector<double> bounds(w);
    for (int64_t y = y0; y < y1; ++y) {
      envelope_line(column_sq.data() + y * w, w, f.data(), roots.data(), bounds.data());
      for (int64_t x = 0; x < w; ++x)
        result[y * w + x] = f[x] >= kFar ? std::numeric_limits<float>::infinity()
                                         : static_cast<float>(std::sqrt(static_cast<double>(f[x])));
    }
  });
}

int64_t h_maxima_seeds(const TensorView& values, float h, const TensorView& seeds, int32_t connectivity) {
  detail::check_view("h_maxima_seeds", "values", values, 2, "(H, W)", true);
  detail::check_view("h_maxima_seeds", "seeds", seeds, 2, "(H, W)", true);
  CELLRT_CHECK(values.dtype == DType::kFloat32, "h_maxima_seeds: values should be float32, got ",
               dtype_name(values.dtype));
  CELLRT_CHECK(seeds.dtype == DType::kInt32, "h_maxima_seeds: seeds should be int32, got ", dtype_name(seeds.dtype));
  detail::check_same_shape_2d("h_maxima_seeds", "values", values, "seeds", seeds);
  CELLRT_CHECK(connectivity == 4 || connectivity == 8, "h_maxima_seeds: connectivity should be 4 or 8, got ",
               connectivity);
  CELLRT_CHECK(h >= 0.0f, "h_maxima_seeds: h should be >= 0, got ", h);
  CELLRT_CHECK(values.device == Device::kCPU && seeds.device == Device::kCPU,
               "h_maxima_seeds: only host arrays are supported");
  const int64_t hgt = values.shape[0], w = values.shape[1];
  check_pixels("h_maxima_seeds", hgt, w, int64_t{1} << 31);
  const auto* v = static_cast<const float*>(values.data);
  auto* out = static_cast<int32_t*>(seeds.data);
  const int64_t nan = count_nan(v, hgt * w);  // NaN has no order: the sort and the merges would be arbitrary
  CELLRT_CHECK(nan == 0, "h_maxima_seeds: values hold ", nan, " NaN");
  std::fill(out, out + hgt * w, 0);
  // Pixels from the highest value down (ties in raster order), each joining the components of its
  // neighbours already seen: the merge tree of the upper level sets. When two components meet at
  // level `at`, the one with the lower peak is a dome of its own if that peak stands h or more above
  // `at`; otherwise it is a bump on the other's slope.
  std::vector<int32_t> order;
  for (int64_t p = 0; p < hgt * w; ++p)
    if (v[p] > 0.0f) order.push_back(static_cast<int32_t>(p));
  std::stable_sort(order.begin(), order.end(), [v](int32_t a, int32_t b) { return v[a] > v[b]; });
  std::vector<int32_t> parent(static_cast<size_t>(hgt * w), -1), peak(static_cast<size_t>(hgt * w), -1);
  auto find = [&parent](int32_t p) {
    while (parent[p] != p) {
      parent[p] = parent[parent[p]];
      p = parent[p];
    }
    return p;
  };
  std::vector<int32_t> domes;
  for (const int32_t p : order) {
    parent[p] = p;
    peak[p] = p;
    const int64_t y = p / w, x = p % w;
    for (int k = 0; k < 8; ++k) {
      const int64_t q = neighbour(y, x, k, hgt, w, connectivity);
      if (q < 0 || parent[q] < 0) continue;  // outside, lower, or background: not seen yet
      int32_t a = find(p), b = find(static_cast<int32_t>(q));
      if (a == b) continue;
      // a keeps the higher peak (the earlier one in the order on ties)
      const bool b_higher = v[peak[b]] > v[peak[a]] || (v[peak[b]] == v[peak[a]] && peak[b] < peak[a]);
      if (b_higher) std::swap(a, b);
      if (v[peak[b]] > v[p] && v[peak[b]] - v[p] >= h) domes.push_back(peak[b]);
      parent[b] = a;
    }
  }
  for (const int32_t p : order)
    if (find(p) == p) domes.push_back(peak[p]);  // every component's highest peak
  std::sort(domes.begin(), domes.end());
  for (size_t i = 0; i < domes.size(); ++i) out[domes[i]] = static_cast<int32_t>(i + 1);
  return static_cast<int64_t>(domes.size());
}

int64_t watershed(const TensorView& surface, const TensorView& labels, const TensorView& mask,
                  int32_t connectivity) {
  detail::check_view("watershed", "surface", surface, 2, "(H, W)", true);
  detail::check_view("watershed", "labels", labels, 2, "(H, W)", true);
  detail::check_view("watershed", "mask", mask, 2, "(H, W)", true);
  CELLRT_CHECK(surface.dtype == DType::kFloat32, "watershed: surface should be float32, got ",
               dtype_name(surface.dtype));
  CELLRT_CHECK(labels.dtype == DType::kInt32, "watershed: labels should be int32, got ", dtype_name(labels.dtype));
  CELLRT_CHECK(mask.dtype == DType::kUInt8, "watershed: mask should be uint8, got ", dtype_name(mask.dtype));
  for (const TensorView* other : {&labels, &mask})
    CELLRT_CHECK(other->shape[0] == surface.shape[0] && other->shape[1] == surface.shape[1],
                 "watershed: surface, labels and mask should have one shape, got ", detail::shape_string(surface),
                 ", ", detail::shape_string(labels), ", ", detail::shape_string(mask));
  CELLRT_CHECK(connectivity == 4 || connectivity == 8, "watershed: connectivity should be 4 or 8, got ",
               connectivity);
  CELLRT_CHECK(surface.device == Device::kCPU && labels.device == Device::kCPU && mask.device == Device::kCPU,
               "watershed: only host arrays are supported");
  const int64_t h = surface.shape[0], w = surface.shape[1];
  check_pixels("watershed", h, w, int64_t{1} << 31);
  const auto* s = static_cast<const float*>(surface.data);
  auto* lab = static_cast<int32_t*>(labels.data);
  const auto* m = static_cast<const uint8_t*>(mask.data);
  const int64_t nan = count_nan(s, h * w);  // NaN has no order: the flood would be arbitrary
  CELLRT_CHECK(nan == 0, "watershed: surface holds ", nan, " NaN");

  struct Entry {
    float value;
    int64_t age;
    int32_t index;
    bool operator>(const Entry& o) const { return value != o.value ? value > o.value : age > o.age; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  int64_t age = 0;
  for (int64_t p = 0; p < h * w; ++p) {
    if (lab[p] != 0 && !m[p]) lab[p] = 0;
    if (lab[p] > 0) heap.push({s[p], age++, static_cast<int32_t>(p)});
  }
  int64_t labelled = 0;
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    const int64_t y = e.index / w, x = e.index % w;
    for (int k = 0; k < 8; ++k) {
      const int64_t q = neighbour(y, x, k, h, w, connectivity);
      if (q < 0 || !m[q] || lab[q] != 0) continue;
      lab[q] = lab[e.index];
      ++labelled;
      heap.push({s[q], age++, static_cast<int32_t>(q)});
    }
  }
  return labelled;
}

}  // namespace cellrt
