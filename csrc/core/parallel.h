// Fork-join loops for the CPU kernels.
//
// parallel_for(n, threads, fn) calls fn(begin, end) on disjoint blocks
// covering [0, n), the calling thread taking the first block. Blocks run on
// a process-wide pool of worker threads that is started once and reused:
// starting threads for every call costs ~0.1 ms here, as much as a kernel
// on a small field. The pool serves one loop at a time; a loop that finds
// it busy (a concurrent caller, or a loop nested in a block) starts its own
// threads instead, so nothing ever waits on itself. After fork() the child
// gets a fresh pool (the parent's threads do not exist there).
//
// Plain threads rather than OpenMP keep the static library free of an
// OpenMP runtime that C++ consumers would have to match.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace cellrt::detail {

// The most workers one loop may ask for, per hardware thread. The pool keeps
// every thread it ever starts (it never shrinks), so an unchecked request -
// num_threads=100000 on a 3000-row image started 3000 threads that stayed
// for the life of the process - would be paid for by every later loop; and
// past a few per core, threads only add switching.
constexpr int kMaxThreadsPerHardwareThread = 4;

inline int hardware_threads() {
  static const int hw = [] {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(std::min<unsigned>(n, 1u << 16));
  }();
  return hw;
}

// Workers for a loop asked to use `requested` threads: 0 (or less, from C
// callers) means all hardware threads; anything else is capped at
// kMaxThreadsPerHardwareThread x the hardware threads. parallel_for further
// caps it at the number of work items.
inline int resolve_threads(int requested) {
  const int hw = hardware_threads();
  if (requested <= 0) return hw;
  return std::min(requested, kMaxThreadsPerHardwareThread * hw);
}

// Runs job(w) for w in [0, workers) and returns when all are done; job(0)
// runs on the calling thread. Exceptions from any worker are rethrown here.
void run_workers(int workers, const std::function<void(int)>& job);

// At most min(resolve_threads(threads), n) workers: never more than the
// work items, whatever the caller computed.
template <typename Fn>
void parallel_for(int64_t n, int threads, Fn&& fn) {
  if (n <= 0) return;
  const int workers = static_cast<int>(std::min<int64_t>(resolve_threads(threads), n));
  if (workers <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  run_workers(workers, [&](int w) { fn(n * w / workers, n * (w + 1) / workers); });
}

}  // namespace cellrt::detail
