// A minimal fork-join loop over [0, n) on std::thread. The CPU kernels split
// their work into contiguous blocks (rows of the output), so a static
// partition is enough, and plain threads keep the static library free of an
// OpenMP runtime that C++ consumers would have to match.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace cellrt::detail {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Calls fn(begin, end) on disjoint blocks covering [0, n). Exceptions thrown
// by a worker are rethrown on the calling thread.
template <typename Fn>
void parallel_for(int64_t n, int threads, Fn&& fn) {
  if (n <= 0) return;
  int workers = static_cast<int>(std::min<int64_t>(resolve_threads(threads), n));
  if (workers <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(workers);
  pool.reserve(workers - 1);
  auto block = [&](int w) {
    int64_t begin = n * w / workers;
    int64_t end = n * (w + 1) / workers;
    try {
      fn(begin, end);
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  for (int w = 1; w < workers; ++w) pool.emplace_back(block, w);
  block(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace cellrt::detail
