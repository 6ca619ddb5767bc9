// SPDX-License-Identifier: Apache-2.0
// A small persistent thread pool: workers are created once and reused, so a kernel call costs a
// wake-up, not a thread creation. Work is a range of task indices claimed through one atomic
// counter; the caller thread takes part. Which thread runs a task never changes what the task
// computes, so kernel results do not depend on the thread count. Calls from several user threads
// are serialized (each runs to completion).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "../config.hpp"

namespace aplq {
namespace cpu {

class thread_pool {
public:
  explicit thread_pool(int workers) noexcept {
    try {
      for (int i = 0; i < workers; ++i)
        threads_.emplace_back([this, i] { worker_loop(i); });
    } catch (...) {
      // Fewer workers than asked (thread creation failed): the pool still works, with the
      // threads it has, down to the caller alone.
    }
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  // Threads a call may use: the workers plus the caller.
  int max_threads() const noexcept { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(t) for every t in [0, tasks) on up to `threads` threads and returns when all are
  // done. threads <= 0 means all of them. fn must not throw.
  template <class Fn>
  void run(int threads, index_t tasks, Fn& fn) noexcept {
    if (threads <= 0 || threads > max_threads())
      threads = max_threads();
    if (static_cast<index_t>(threads) > tasks)
      threads = static_cast<int>(tasks);
    if (threads <= 1) {
      for (index_t t = 0; t < tasks; ++t)
        fn(t);
      return;
    }
    std::lock_guard<std::mutex> serial(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      call_ = [](void* ctx, index_t t) { (*static_cast<Fn*>(ctx))(t); };
      ctx_ = &fn;
      tasks_ = tasks;
      next_.store(0, std::memory_order_relaxed);
      helpers_ = threads - 1;
      pending_ = threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

  // The process-wide pool: one worker per hardware thread beyond the caller.
  static thread_pool& global() noexcept {
    static thread_pool pool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) -
                            1);
    return pool;
  }

private:
  void work() noexcept {
    for (index_t t = next_.fetch_add(1); t < tasks_; t = next_.fetch_add(1))
      call_(ctx_, t);
  }

  void worker_loop(int id) noexcept {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
      if (id >= helpers_)
        continue;
      lock.unlock();
      work();
      lock.lock();
      if (--pending_ == 0)
        done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex run_mutex_; // one run at a time
  std::mutex mutex_;     // guards the job description below and the counters
  std::condition_variable wake_;
  std::condition_variable done_;
  void (*call_)(void*, index_t) = nullptr;
  void* ctx_ = nullptr;
  index_t tasks_ = 0;
  std::atomic<index_t> next_{0};
  int helpers_ = 0;
  int pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

} // namespace cpu
} // namespace aplq
