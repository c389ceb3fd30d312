// CPU connected-component labelling on runs: union-find over the horizontal
// runs of foreground, kept in the output array itself (no scratch the size
// of the image: a fresh 16 MB buffer costs thousands of page faults, more
// than the labelling).
//
// Work partition: threads take disjoint strips of rows. A strip finds its
// runs (background skipped eight mask bytes at a time), links each run to
// the overlapping runs of the row above, then the strip seams are united
// serially from the stored runs. Numbering runs in parallel again: count
// the roots per strip, number them from a prefix sum, give every run its
// root's number, and fill the runs. A run is represented by its first
// pixel, and a set by its smallest index (segment_kernel.h): the first pixel
// of the component in raster order. Numbering roots in raster order thus
// numbers components as OpenCV and scikit-image do, whatever the thread
// count.
//
// While numbering, a representative's entry is either a parent index
// (>= 0) or its final number, negated. Entries only change from "parent" to
// "final number of the same component", so a thread reading an entry that
// another thread is rewriting gets a correct answer either way; the
// accesses are relaxed atomics to make that well-defined.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "segment/runs.h"
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

// A run is represented by its first pixel.
inline int32_t run_start(const Run* r) { return r->begin; }

}  // namespace

int64_t label_cpu(const uint8_t* mask, int32_t* labels, int32_t height, int32_t width, int32_t connectivity,
                  int32_t num_threads) {
  const bool eight = connectivity == 8;
  int32_t* parent = labels;  // entries at run starts only
  const int strips = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), height / kMinStripRows)));
  std::vector<int32_t> first_row(strips + 1);
  for (int s = 0; s <= strips; ++s) first_row[s] = static_cast<int32_t>(int64_t{height} * s / strips);
  // Runs of each strip in raster order, and where each of its rows starts.
  std::vector<std::vector<Run>> runs(strips);
  std::vector<std::vector<int32_t>> row_start(strips);

  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int32_t y0 = first_row[s], y1 = first_row[s + 1];
      std::memset(labels + int64_t{y0} * width, 0, sizeof(int32_t) * (int64_t{y1} - y0) * width);
      std::vector<Run>& r = runs[s];
      std::vector<int32_t>& starts = row_start[s];
      starts.assign(y1 - y0 + 1, 0);
      for (int32_t y = y0; y < y1; ++y) {
        starts[y - y0] = static_cast<int32_t>(r.size());
        find_runs(mask, y, width, r);
        for (size_t i = starts[y - y0]; i < r.size(); ++i) parent[r[i].begin] = r[i].begin;
        if (y > y0)
          unite_rows(parent, r.data() + starts[y - y0 - 1], r.data() + starts[y - y0], r.data() + starts[y - y0],
                     r.data() + r.size(), width, eight, run_start);
      }
      starts[y1 - y0] = static_cast<int32_t>(r.size());
    }
  });
  for (int s = 1; s < strips; ++s) {
    const std::vector<Run>& above = runs[s - 1];
    const std::vector<int32_t>& above_starts = row_start[s - 1];
    const int32_t last = first_row[s] - first_row[s - 1] - 1;  // last row of strip s - 1
    unite_rows(parent, above.data() + above_starts[last], above.data() + above_starts[last + 1], runs[s].data(),
               runs[s].data() + row_start[s][1], width, eight, run_start);
  }

  // Roots per strip, then a prefix sum: strip s numbers its roots from
  // roots[s] + 1 on.
  std::vector<int64_t> roots(strips + 1, 0);
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      int64_t count = 0;
      for (const Run& r : runs[s]) count += parent[r.begin] == r.begin;
      roots[s + 1] = count;
    }
  });
  for (int s = 0; s < strips; ++s) roots[s + 1] += roots[s];

  // Every root gets its (negated) number before any other run looks for it.
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      int32_t next = static_cast<int32_t>(roots[s]);
      for (const Run& r : runs[s])
        if (parent[r.begin] == r.begin) store_relaxed(&labels[r.begin], -(++next));
    }
  });
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      for (const Run& r : runs[s]) {
        int32_t v = load_relaxed(&labels[r.begin]);
        while (v >= 0) v = load_relaxed(&labels[v]);
        store_relaxed(&labels[r.begin], v);
      }
    }
  });
  // Every run reads only its own representative now: fill the runs.
  parallel_for(strips, strips, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      for (const Run& r : runs[s]) {
        const int32_t number = -labels[r.begin];
        std::fill(labels + r.begin, labels + r.end, number);
      }
    }
  });
  return roots[strips];
}

}  // namespace cellrt::detail
