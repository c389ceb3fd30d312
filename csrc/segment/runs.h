// Host-only helpers for run-based algorithms on binary masks (label_cpu,
// fill_holes): finding runs eight mask bytes at a time, and uniting the
// runs of two consecutive rows.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "segment/segment_kernel.h"

namespace cellrt::detail {

struct Run {
  int32_t begin, end;  // pixel indices, [begin, end), within one row
};

// First index in [p, end) whose mask byte is (non-zero == want), or end.
// Masks come in long runs; eight bytes are tested at a time.
template <bool kForeground>
inline int32_t next_pixel(const uint8_t* mask, int32_t p, int32_t end) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; p + 8 <= end; p += 8) {
    uint64_t word;
    std::memcpy(&word, mask + p, sizeof word);
    if (!kForeground) {
      // A byte is background iff it is zero: find the first zero byte.
      const uint64_t zero = (word - 0x0101010101010101ull) & ~word & 0x8080808080808080ull;
      if (zero) return p + (__builtin_ctzll(zero) >> 3);
    } else if (word) {
      return p + (__builtin_ctzll(word) >> 3);
    }
  }
#endif
  while (p < end && (mask[p] != 0) != kForeground) ++p;
  return p;
}

// Appends the runs of row y to runs.
inline void find_runs(const uint8_t* mask, int32_t y, int32_t width, std::vector<Run>& runs) {
  const int32_t row = y * width, row_end = row + width;
  for (int32_t p = next_pixel<true>(mask, row, row_end); p < row_end; p = next_pixel<true>(mask, p, row_end)) {
    const int32_t end = next_pixel<false>(mask, p, row_end);
    runs.push_back(Run{p, end});
    p = end;
  }
}

// Unites each run of `lower` with the runs of `upper` (the row above) that
// touch it: overlapping columns for 4-connectivity, or diagonally adjacent
// for 8. Both lists are sorted, so one merge-like sweep suffices.
template <typename NodeOf>
void unite_rows(int32_t* parent, const Run* upper, const Run* upper_end, const Run* lower, const Run* lower_end,
                int32_t width, bool eight, NodeOf&& node_of) {
  const int32_t slack = eight ? 1 : 0;
  const Run* u = upper;
  for (const Run* r = lower; r != lower_end; ++r) {
    const int32_t lo = r->begin - width - slack, hi = r->end - width + slack;  // touching window in the row above
    while (u != upper_end && u->end <= lo) ++u;
    for (const Run* v = u; v != upper_end && v->begin < hi; ++v) unite(parent, node_of(r), node_of(v));
  }
}

}  // namespace cellrt::detail
