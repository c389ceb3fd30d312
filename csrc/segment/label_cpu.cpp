// CPU connected-component labelling: union-find over pixel indices, kept in
// the output array itself (no scratch allocation: a fresh 16 MB buffer costs
// thousands of page faults, more than the labelling).
//
// Work partition: threads label disjoint strips of rows independently,
// linking each foreground pixel to its already-visited neighbours (a
// decision tree: with 8-connectivity a foreground pixel above makes the
// other upper neighbours redundant). The strip seams are then united
// serially, one row per seam. Numbering runs in parallel again: count the
// roots per strip, give each root its number from a prefix sum, then give
// every other pixel its root's number. Roots are the smallest index of their
// set (segment_kernel.h), so numbering roots in raster order numbers
// components by their first pixel, as OpenCV and scikit-image do, whatever
// the thread count.
//
// During numbering an entry is either a parent index (>= 0) or a final
// number, stored negated; a pixel resolves by following parents until it
// meets a negative entry. Entries only ever change from "parent" to "final
// number of the same component", so a thread reading an entry that another
// thread is rewriting gets a correct answer either way; the accesses are
// relaxed atomics to make that well-defined.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "segment/segment_kernel.h"
#include "segment/segment_ops.h"

namespace cellrt::detail {

namespace {

// Rows per strip below which splitting costs more than it saves.
constexpr int32_t kMinStripRows = 32;

inline int32_t load_relaxed(const int32_t* p) {
#if defined(__GNUC__)
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#else
  return *static_cast<const volatile int32_t*>(p);
#endif
}

inline void store_relaxed(int32_t* p, int32_t v) {
#if defined(__GNUC__)
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
#else
  *static_cast<volatile int32_t*>(p) = v;
#endif
}

// Index of the first foreground pixel in [p, end), or end. Masks are mostly
// background; testing eight mask bytes at a time skips it quickly.
inline int32_t next_foreground(const uint8_t* mask, int32_t p, int32_t end) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; p + 8 <= end; p += 8) {
    uint64_t word;
    std::memcpy(&word, mask + p, sizeof word);
    if (word) return p + (__builtin_ctzll(word) >> 3);
  }
#endif
  while (p < end && !mask[p]) ++p;
  return p;
}

// Background entries get their final value 0; foreground entries their parent.
void label_strip(const uint8_t* mask, int32_t* parent, int32_t y0, int32_t y1, int32_t width, bool eight) {
  std::memset(parent + int64_t{y0} * width, 0, sizeof(int32_t) * (int64_t{y1} - y0) * width);
  for (int32_t y = y0; y < y1; ++y) {
    const bool has_up = y > y0;
    const int32_t row = y * width, row_end = row + width;
    for (int32_t p = next_foreground(mask, row, row_end); p < row_end; p = next_foreground(mask, p + 1, row_end)) {
      const int32_t x = p - row;
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
  const int32_t row = y * width;
  for (int32_t x = 0; x < width; ++x) {
    const int32_t p = row + x;
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
  int32_t* parent = labels;
  const int strips = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), height / kMinStripRows)));
  std::vector<int32_t> first_row(strips + 1);
  for (int s = 0; s <= strips; ++s) first_row[s] = static_cast<int32_t>(int64_t{height} * s / strips);

  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) label_strip(mask, parent, first_row[s], first_row[s + 1], width, eight);
  });
  for (int s = 1; s < strips; ++s) unite_seam(mask, parent, first_row[s], width, eight);

  // Roots per strip, then a prefix sum: strip s numbers its roots from
  // roots[s] + 1 on.
  std::vector<int64_t> roots(strips + 1, 0);
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int32_t begin = first_row[s] * width, end = first_row[s + 1] * width;
      int64_t count = 0;
      for (int32_t p = next_foreground(mask, begin, end); p < end; p = next_foreground(mask, p + 1, end))
        count += parent[p] == p;
      roots[s + 1] = count;
    }
  });
  for (int s = 0; s < strips; ++s) roots[s + 1] += roots[s];

  // Every root gets its (negated) number before any other pixel looks for it.
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int32_t begin = first_row[s] * width, end = first_row[s + 1] * width;
      int32_t next = static_cast<int32_t>(roots[s]);
      for (int32_t p = next_foreground(mask, begin, end); p < end; p = next_foreground(mask, p + 1, end))
        if (parent[p] == p) store_relaxed(&labels[p], -(++next));
    }
  });
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int32_t begin = first_row[s] * width, end = first_row[s + 1] * width;
      for (int32_t p = next_foreground(mask, begin, end); p < end; p = next_foreground(mask, p + 1, end)) {
        int32_t v = load_relaxed(&labels[p]);
        while (v >= 0) v = load_relaxed(&labels[v]);
        store_relaxed(&labels[p], v);
      }
    }
  });
  // Final numbers are positive; background stays 0 (-0 == 0).
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int32_t begin = first_row[s] * width, end = first_row[s + 1] * width;
      for (int32_t p = begin; p < end; ++p) labels[p] = -labels[p];
    }
  });
  return roots[strips];
}

}  // namespace cellrt::detail
