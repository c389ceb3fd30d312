// CPU connected-component labelling: union-find over pixel indices.
//
// Work partition: threads label disjoint strips of rows independently,
// linking each foreground pixel to its already-visited neighbours (a
// decision tree: with 8-connectivity a foreground pixel above makes the
// other upper neighbours redundant). The strip seams are then united
// serially (one row per seam), and the final numbering runs in parallel
// again: count roots per strip, number them from a prefix sum, then give
// every pixel its root's number. Roots are the smallest index of their set
// (segment_kernel.h), so numbering roots in raster order numbers components
// by their first pixel, as OpenCV and scikit-image do, with any thread count.
#include <algorithm>
#include <memory>
#include <vector>

#include "core/parallel.h"
#include "segment/segment_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

// Rows per strip below which splitting costs more than it saves.
constexpr int32_t kMinStripRows = 32;

void label_strip(const uint8_t* mask, int32_t* parent, int32_t y0, int32_t y1, int32_t width, bool eight) {
  for (int32_t y = y0; y < y1; ++y) {
    const bool has_up = y > y0;
    const int64_t row = int64_t{y} * width;
    for (int32_t x = 0; x < width; ++x) {
      const int32_t p = static_cast<int32_t>(row + x);
      if (!mask[p]) continue;
      const int32_t up = p - width;
      const bool n = has_up && mask[up];
      const bool w = x > 0 && mask[p - 1];
      int32_t root = p;
      if (eight) {
        const bool nw = has_up && x > 0 && mask[up - 1];
        const bool ne = has_up && x + 1 < width && mask[up + 1];
        if (n) {
          root = find_root_halving(parent, up);  // W, NW, NE all touch N
        } else if (w) {
          root = ne ? unite(parent, p - 1, up + 1) : find_root_halving(parent, p - 1);
        } else if (nw) {
          root = ne ? unite(parent, up - 1, up + 1) : find_root_halving(parent, up - 1);
        } else if (ne) {
          root = find_root_halving(parent, up + 1);
        }
      } else {
        if (n && w) {
          root = unite(parent, up, p - 1);
        } else if (n) {
          root = find_root_halving(parent, up);
        } else if (w) {
          root = find_root_halving(parent, p - 1);
        }
      }
      parent[p] = root;
    }
  }
}

void unite_seam(const uint8_t* mask, int32_t* parent, int32_t y, int32_t width, bool eight) {
  const int64_t row = int64_t{y} * width;
  for (int32_t x = 0; x < width; ++x) {
    const int32_t p = static_cast<int32_t>(row + x);
    if (!mask[p]) continue;
    const int32_t up = p - width;
    if (mask[up]) unite(parent, p, up);
    if (eight && x > 0 && mask[up - 1]) unite(parent, p, up - 1);
    if (eight && x + 1 < width && mask[up + 1]) unite(parent, p, up + 1);
  }
}

}  // namespace

int64_t label_cpu(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                  int32_t num_threads) {
  const bool eight = connectivity == 8;
  const int64_t pixels = int64_t{height} * width;
  // Default-initialised: only foreground entries are ever written or read.
  std::unique_ptr<int32_t[]> parent_buffer(new int32_t[pixels]);
  int32_t* parent = parent_buffer.get();
  const int strips = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), height / kMinStripRows)));
  auto strip_begin = [&](int64_t s) { return static_cast<int32_t>(height * s / strips); };

  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) label_strip(mask, parent, strip_begin(s), strip_begin(s + 1), width, eight);
  });
  for (int s = 1; s < strips; ++s) unite_seam(mask, parent, strip_begin(s), width, eight);

  std::vector<int64_t> roots(strips + 1, 0);
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      int64_t count = 0;
      for (int64_t p = int64_t{strip_begin(s)} * width; p < int64_t{strip_begin(s + 1)} * width; ++p)
        count += mask[p] && parent[p] == p;
      roots[s + 1] = count;
    }
  });
  for (int s = 0; s < strips; ++s) roots[s + 1] += roots[s];

  // Roots first (all strips), then everything else: a pixel's root may lie
  // in an earlier strip, so its number must exist before anyone reads it.
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      int32_t next = static_cast<int32_t>(roots[s]);
      for (int64_t p = int64_t{strip_begin(s)} * width; p < int64_t{strip_begin(s + 1)} * width; ++p)
        if (mask[p] && parent[p] == p) labels[p] = ++next;
    }
  });
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      for (int64_t p = int64_t{strip_begin(s)} * width; p < int64_t{strip_begin(s + 1)} * width; ++p) {
        if (!mask[p]) {
          labels[p] = 0;
        } else if (parent[p] != p) {
          labels[p] = labels[find_root(parent, static_cast<int32_t>(p))];
        }
      }
    }
  });
  return roots[strips];
}

}  // namespace cellrt::detail
