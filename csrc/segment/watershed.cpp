// Distance transform, h-maxima seeds and seeded watershed (cellrt/watershed.h).
#include "cellrt/watershed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <queue>
#include <vector>

#include "core/check.h"
#include "core/float_order.h"
#include "core/parallel.h"
#include "core/validate.h"
#include "segment/segment_ops.h"

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

// Sorts keys by their upper 32 bits, stably (LSD radix, 11 bits a pass): keys whose lower halves
// ascend (pixels pushed in raster order) end up in the order of a plain sort of the whole keys.
void sort_by_upper_word(std::vector<uint64_t>& keys) {
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  std::vector<uint64_t> moved(keys.size());
  std::vector<size_t> start(kBuckets + 1);
  for (int shift = 32; shift < 64; shift += kBits) {
    std::fill(start.begin(), start.end(), 0);
    for (const uint64_t k : keys) ++start[((k >> shift) & (kBuckets - 1)) + 1];
    for (size_t b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
    for (const uint64_t k : keys) moved[start[(k >> shift) & (kBuckets - 1)]++] = k;
    keys.swap(moved);
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
  detail::check_no_overlap("distance_transform", "mask", mask, "out", out, false);
  CELLRT_CHECK(mask.device == Device::kCPU && out.device == Device::kCPU,
               "distance_transform: only host arrays are supported");
  const int64_t h = mask.shape[0], w = mask.shape[1];
  check_pixels("distance_transform", h, w, int64_t{1} << 40);
  if (h == 0 || w == 0) return;
  const auto* m = static_cast<const uint8_t*>(mask.data);
  auto* result = static_cast<float*>(out.data);
  const int workers = detail::resolve_threads(num_threads);
  // Columns: distance to the nearest zero pixel of the same column, kept as int32 in the output's
  // own memory (no image-sized scratch: a fresh one costs page faults on the order of the whole
  // transform). A block of adjacent columns is walked row by row (down, then up), so each step
  // reads and writes one contiguous stretch of a row instead of one value a row apart. Blocks of up
  // to 256 columns, narrower on narrow images so that every worker gets some.
  const int64_t block = std::max<int64_t>(16, std::min<int64_t>(256, (w + workers - 1) / workers));
  constexpr int32_t kNoZero = std::numeric_limits<int32_t>::max();
  auto load = [result](int64_t i) {
    int32_t v;
    std::memcpy(&v, result + i, sizeof v);
    return v;
  };
  auto store = [result](int64_t i, int32_t v) { std::memcpy(result + i, &v, sizeof v); };
  detail::parallel_for((w + block - 1) / block, workers, [&](int64_t b0, int64_t b1) {
    std::vector<int32_t> run(static_cast<size_t>(block));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t x0 = b * block, n = std::min(block, w - x0);
      std::fill(run.begin(), run.begin() + n, kNoZero);
      for (int64_t y = 0; y < h; ++y) {
        const uint8_t* mrow = m + y * w + x0;
        for (int64_t i = 0; i < n; ++i) {
          run[i] = mrow[i] ? (run[i] == kNoZero ? kNoZero : run[i] + 1) : 0;
          store(y * w + x0 + i, run[i]);
        }
      }
      std::fill(run.begin(), run.begin() + n, kNoZero);
      for (int64_t y = h - 1; y >= 0; --y) {
        const uint8_t* mrow = m + y * w + x0;
        for (int64_t i = 0; i < n; ++i) {
          run[i] = mrow[i] ? (run[i] == kNoZero ? kNoZero : run[i] + 1) : 0;
          store(y * w + x0 + i, std::min(load(y * w + x0 + i), run[i]));
        }
      }
    }
  });
  // Rows: the lower envelope of the parabolas rooted at the columns' squared distances. A zero
  // pixel of the row (g = 0) is nearer to every pixel up to it than any parabola rooted beyond
  // it, so the row splits at its zero pixels into stretches solved on their own (each with the
  // zero pixels that bound it): the work follows the foreground, not the image.
  detail::parallel_for(h, workers, [&](int64_t y0, int64_t y1) {
    std::vector<int64_t> g(w), f(w), roots(w);
    std::vector<double> bounds(w);
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t d = load(y * w + x);
        g[x] = d == kNoZero ? kFar : d * d;
      }
      float* out_row = result + y * w;
      for (int64_t x = 0; x < w;) {
        if (g[x] == 0) {
          out_row[x++] = 0.0f;
          continue;
        }
        int64_t end = x + 1;
        while (end < w && g[end] != 0) ++end;
        const int64_t first = x > 0 ? x - 1 : x, last = end < w ? end + 1 : end;  // with the bounding zeros
        envelope_line(g.data() + first, last - first, f.data(), roots.data(), bounds.data());
        for (int64_t i = x; i < end; ++i) {
          const int64_t d = f[i - first];
          out_row[i] = d >= kFar ? std::numeric_limits<float>::infinity()
                                 : static_cast<float>(std::sqrt(static_cast<double>(d)));
        }
        x = end;
      }
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
  detail::check_no_overlap("h_maxima_seeds", "values", values, "seeds", seeds, false);
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
  // Pixels from the highest value down (ties in raster order), each joining the components of its
  // neighbours already seen: the merge tree of the upper level sets. When two components meet at
  // level `at`, the one with the lower peak is a dome of its own if that peak stands h or more above
  // `at`; otherwise it is a bump on the other's slope.
  //
  // The order is one radix sort of 64-bit keys (the value's ordered bits inverted, then the pixel),
  // and the union-find runs on ranks in that order: its tables hold the foreground pixels only, and
  // "a higher peak, the earlier pixel on ties" is "a lower rank".
  std::vector<uint64_t> keys;
  for (int64_t p = 0; p < hgt * w; ++p)
    if (v[p] > 0.0f) keys.push_back((uint64_t{~detail::ordered_bits(v[p])} << 32) | static_cast<uint32_t>(p));
  sort_by_upper_word(keys);
  const int32_t n = static_cast<int32_t>(keys.size());
  std::vector<int32_t> pixel(n), parent(n), peak(n);
  std::vector<float> value(n);
  std::fill(out, out + hgt * w, 0);
  int32_t* rank_plus_one = out;  // the seeds' memory holds each pixel's rank + 1 (0: background) meanwhile
  for (int32_t i = 0; i < n; ++i) {
    pixel[i] = static_cast<int32_t>(keys[i] & 0xffffffffu);
    value[i] = v[pixel[i]];
    rank_plus_one[pixel[i]] = i + 1;
  }
  keys = std::vector<uint64_t>();
  auto find = [&parent](int32_t r) {
    while (parent[r] != r) {
      parent[r] = parent[parent[r]];
      r = parent[r];
    }
    return r;
  };
  std::vector<int32_t> domes;
  for (int32_t i = 0; i < n; ++i) {
    parent[i] = i;
    peak[i] = i;
    const int64_t y = pixel[i] / w, x = pixel[i] % w;
    for (int k = 0; k < 8; ++k) {
      const int64_t q = neighbour(y, x, k, hgt, w, connectivity);
      if (q < 0) continue;
      const int32_t rq = rank_plus_one[q] - 1;
      if (rq < 0 || rq > i) continue;  // background, or lower: not seen yet
      int32_t a = find(i), b = find(rq);
      if (a == b) continue;
      if (peak[b] < peak[a]) std::swap(a, b);  // a keeps the higher peak (the earlier pixel on ties)
      if (value[peak[b]] > value[i] && value[peak[b]] - value[i] >= h) domes.push_back(pixel[peak[b]]);
      parent[b] = a;
    }
  }
  for (int32_t i = 0; i < n; ++i)
    if (find(i) == i) domes.push_back(pixel[peak[i]]);  // every component's highest peak
  std::sort(domes.begin(), domes.end());
  std::fill(out, out + hgt * w, 0);
  for (size_t i = 0; i < domes.size(); ++i) out[domes[i]] = static_cast<int32_t>(i + 1);
  return static_cast<int64_t>(domes.size());
}

int64_t watershed(const TensorView& surface, const TensorView& labels, const TensorView& mask,
                  int32_t connectivity, int32_t num_threads) {
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
  detail::check_no_overlap("watershed", "surface", surface, "labels", labels, false);
  detail::check_no_overlap("watershed", "mask", mask, "labels", labels, false);
  CELLRT_CHECK(surface.device == Device::kCPU && labels.device == Device::kCPU && mask.device == Device::kCPU,
               "watershed: only host arrays are supported");
  const int64_t h = surface.shape[0], w = surface.shape[1];
  check_pixels("watershed", h, w, int64_t{1} << 31);
  const auto* s = static_cast<const float*>(surface.data);
  auto* lab = static_cast<int32_t*>(labels.data);
  const auto* m = static_cast<const uint8_t*>(mask.data);
  const int64_t nan = count_nan(s, h * w);  // NaN has no order: the flood would be arbitrary
  CELLRT_CHECK(nan == 0, "watershed: surface holds ", nan, " NaN");

  std::vector<int32_t> seeds;  // raster order
  for (int64_t p = 0; p < h * w; ++p) {
    if (lab[p] != 0 && !m[p]) lab[p] = 0;  // seeds outside the mask are cleared
    if (lab[p] > 0) seeds.push_back(static_cast<int32_t>(p));
  }
  // Components of the mask flood independently (their pixels never meet), so each is flooded on its
  // own from its seeds, in raster order: the same labels as one flood of the whole image, with one
  // object's pixels in cache at a time instead of the rims of all objects at each level, and the
  // components shared out among threads.
  std::vector<int32_t> component(static_cast<size_t>(h * w));
  const int64_t components = detail::label_cpu(m, component.data(), static_cast<int32_t>(h), static_cast<int32_t>(w),
                                               connectivity, num_threads);
  std::vector<int64_t> seed_start(static_cast<size_t>(components) + 2, 0);
  for (const int32_t p : seeds) ++seed_start[component[p] + 1];
  for (int64_t c = 0; c <= components; ++c) seed_start[c + 1] += seed_start[c];
  std::vector<int32_t> grouped(seeds.size());
  {
    std::vector<int64_t> fill(seed_start.begin(), seed_start.end() - 1);
    for (const int32_t p : seeds) grouped[fill[component[p]]++] = p;  // raster order within a component
  }
  component = std::vector<int32_t>();
  // Components with seeds, the work items.
  std::vector<int32_t> seeded;
  for (int64_t c = 1; c <= components; ++c)
    if (seed_start[c + 1] > seed_start[c]) seeded.push_back(static_cast<int32_t>(c));

  // The flood order - surface value, then first come first served - as one 64-bit key per entry:
  // the value's ordered bits (-0 taken as +0), then the push count; the pixel of each push is kept
  // in a table by push count.
  const int workers = static_cast<int>(
      std::min<int64_t>(detail::resolve_threads(num_threads), static_cast<int64_t>(seeded.size())));
  std::vector<int64_t> labelled_by(std::max(workers, 1), 0);
  detail::parallel_for(workers, workers, [&](int64_t w0, int64_t w1) {
    std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> heap;
    std::vector<int32_t> pushed;  // pixel of the k-th push of the component's flood
    auto push = [&](int64_t p) {
      heap.push((uint64_t{detail::ordered_bits(s[p])} << 32) | static_cast<uint32_t>(pushed.size()));
      pushed.push_back(static_cast<int32_t>(p));
    };
    for (int64_t wi = w0; wi < w1; ++wi) {
      int64_t labelled = 0;
      // Interleaved items (worker wi takes every workers-th component) spread large and small ones.
      for (size_t item = static_cast<size_t>(wi); item < seeded.size(); item += static_cast<size_t>(workers)) {
        const int32_t c = seeded[item];
        pushed.clear();
        for (int64_t i = seed_start[c]; i < seed_start[c + 1]; ++i) push(grouped[i]);
        while (!heap.empty()) {
          const int32_t p = pushed[heap.top() & 0xffffffffu];
          heap.pop();
          const int64_t y = p / w, x = p % w;
          for (int k = 0; k < 8; ++k) {
            const int64_t q = neighbour(y, x, k, h, w, connectivity);
            // Only pixels of this component pass the mask test: no other worker's.
            if (q < 0 || !m[q] || lab[q] != 0) continue;
            lab[q] = lab[p];
            ++labelled;
            push(q);
          }
        }
      }
      labelled_by[wi] = labelled;
    }
  });
  int64_t labelled = 0;
  for (const int64_t n : labelled_by) labelled += n;
  return labelled;
}

}  // namespace cellrt
