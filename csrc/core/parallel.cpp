// The worker pool behind parallel_for (see parallel.h for the contract).
#include "core/parallel.h"

#include <condition_variable>
#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace cellrt::detail {

namespace {

class Pool {
 public:
  // Runs the job on workers 1..workers-1 of the pool (growing it as needed)
  // and on the calling thread as worker 0. Returns false, having run
  // nothing, when the pool is busy.
  bool try_run(int workers, const std::function<void(int)>& job, std::vector<std::exception_ptr>& errors) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (static_cast<int>(threads_.size()) < workers - 1) {
        const int index = static_cast<int>(threads_.size()) + 1;
        threads_.emplace_back([this, index] { worker_loop(index); });
      }
      job_ = &job;
      errors_ = &errors;
      active_ = workers;
      pending_ = workers - 1;
      ++generation_;
    }
    wake_.notify_all();
    try {
      job(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void worker_loop(int index) {
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = generation_;  // a thread started for a job joins that job below
      --seen;
    }
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      std::vector<std::exception_ptr>* errors = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= active_) continue;  // this job needs fewer workers
        job = job_;
        errors = errors_;
      }
      try {
        (*job)(index);
      } catch (...) {
        (*errors)[index] = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_;  // held for the duration of one loop
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* job_ = nullptr;
  std::vector<std::exception_ptr>* errors_ = nullptr;
  uint64_t generation_ = 0;
  int active_ = 0;
  int pending_ = 0;
};

// Leaked on purpose: worker threads block forever on wake_, and destroying
// the pool at exit would race with them.
Pool* g_pool = nullptr;
std::once_flag g_pool_once;

void forget_pool_in_child() {
  // The child has only the forking thread; the parent's pool (and its
  // possibly locked mutexes) must not be touched. Start over.
  g_pool = new Pool();
}

Pool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new Pool();
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  return *g_pool;
}

}  // namespace

void run_workers(int workers, const std::function<void(int)>& job) {
  std::vector<std::exception_ptr> errors(workers);
  if (!pool().try_run(workers, job, errors)) {
    // Busy: a concurrent or nested loop. Plain threads for this one.
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (int w = 1; w < workers; ++w)
      threads.emplace_back([&, w] {
        try {
          job(w);
        } catch (...) {
          errors[w] = std::current_exception();
        }
      });
    try {
      job(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (auto& t : threads) t.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace cellrt::detail
