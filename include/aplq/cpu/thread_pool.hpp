// SPDX-License-Identifier: Apache-2.0
// A small persistent thread pool: workers are created once and reused. Work is a range of task
// indices; the caller thread takes part. Each thread of a call owns a contiguous share of the
// range and claims its tasks in order through a counter of its own; a thread whose share is done
// claims what is left of the others'. Which thread runs a task never changes what the task
// computes, so kernel results do not depend on the thread count. Calls from several user threads
// are serialized (each runs to completion).
//
// Contiguous shares, rather than tasks dealt out in turn from one counter, let each thread stream
// its part of the weights from one address onward: with tasks dealt in turn, every task began
// with a jump the prefetchers had to learn anew, and 2-thread out-of-cache GEMVs lost 10-20%
// (2-vCPU KVM guest, 4096x4096 q4_g32: 474-479 -> 402-419 us; q1 table lookup: 197-199 ->
// 161-171 us).
//
// Idle workers, and a caller waiting for its helpers, poll for a while (the spin time, 1 ms by
// default) before they block on a condition variable: waking a blocked thread took 60-100 us on a
// 2-vCPU KVM guest, as long as a whole 4096x4096 GEMV, and with blocking workers a 2-thread GEMV
// lost most of its second thread. Workers left out of a call (it asked for fewer threads) block
// at once, so a thread count also bounds the cores that spin. set_spin(0), or APLQ_SPIN_US=0 in
// the environment for the global pool, makes them block at once (for programs that need the
// cores for other work between calls).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "../config.hpp"

namespace aplq {
namespace cpu {

class thread_pool {
public:
  static constexpr std::chrono::microseconds default_spin{1000};
  static constexpr std::chrono::microseconds max_spin{1000000};

  explicit thread_pool(int workers, std::chrono::microseconds spin = default_spin) noexcept {
    set_spin(spin);
    try {
      shares_ = std::vector<share>(static_cast<std::size_t>(std::max(workers, 0)) + 1);
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
      stop_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  // Threads a call may use: the workers plus the caller.
  int max_threads() const noexcept { return static_cast<int>(threads_.size()) + 1; }

  // How long idle threads poll before blocking (0: block at once; at most max_spin). Takes
  // effect from the next wait; safe to call at any time.
  void set_spin(std::chrono::microseconds spin) noexcept {
    const auto us = std::clamp<std::int64_t>(static_cast<std::int64_t>(spin.count()), 0,
                                             static_cast<std::int64_t>(max_spin.count()));
    spin_us_.store(us, std::memory_order_relaxed);
  }
  std::chrono::microseconds spin() const noexcept {
    return std::chrono::microseconds(spin_us_.load(std::memory_order_relaxed));
  }

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
    // The job description is stable until every helper of this job has counted itself out of
    // pending_: no other run starts before then, and workers that are not helpers never read it.
    call_ = [](void* ctx, index_t t) { (*static_cast<Fn*>(ctx))(t); };
    ctx_ = &fn;
    threads_in_call_ = threads;
    for (int i = 0; i < threads; ++i) {
      shares_[i].next.store(tasks * i / threads, std::memory_order_relaxed);
      shares_[i].end = tasks * (i + 1) / threads;
    }
    pending_.store(threads - 1, std::memory_order_relaxed);
    {
      // Published under the mutex, so a worker about to block sees it or gets the notification.
      std::lock_guard<std::mutex> lock(mutex_);
      const std::uint64_t generation = (job_.load(std::memory_order_relaxed) >> 32) + 1;
      job_.store(generation << 32 | static_cast<std::uint32_t>(threads - 1),
                 std::memory_order_release);
      if (sleepers_ > 0)
        wake_.notify_all();
    }
    work(0);
    auto finished = [this] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!poll(finished)) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, finished);
    }
  }

  // The process-wide pool: one worker per hardware thread beyond the caller; its spin time is
  // APLQ_SPIN_US (microseconds) when that is set to a number, else default_spin.
  static thread_pool& global() noexcept {
    static thread_pool pool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) - 1,
                            spin_from_environment());
    return pool;
  }

private:
  static std::chrono::microseconds spin_from_environment() noexcept {
    const char* s = std::getenv("APLQ_SPIN_US");
    if (s == nullptr || *s == '\0')
      return default_spin;
    char* end = nullptr;
    const long long us = std::strtoll(s, &end, 10);
    return *end == '\0' ? std::chrono::microseconds(us) : default_spin;
  }

  static void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Polls pred until it holds (true) or the spin time has passed (false).
  template <class Pred>
  bool poll(Pred& pred) const noexcept {
    if (pred())
      return true;
    const std::int64_t spin = spin_us_.load(std::memory_order_relaxed);
    if (spin == 0)
      return false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin);
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (pred())
          return true;
        relax();
      }
      if (std::chrono::steady_clock::now() >= until)
        return pred();
    }
  }

  // Thread `self` of the call (0 is the caller, worker i is i + 1): its own share, then what is
  // left of the others'.
  void work(int self) noexcept {
    for (int i = 0; i < threads_in_call_; ++i) {
      share& s = shares_[(self + i) % threads_in_call_];
      for (index_t t = s.next.fetch_add(1); t < s.end; t = s.next.fetch_add(1))
        call_(ctx_, t);
    }
  }

  void worker_loop(int id) noexcept {
    std::uint64_t seen = 0;
    bool left_out = false; // of the last job: block at once
    for (;;) {
      auto changed = [&] {
        return stop_.load(std::memory_order_acquire) ||
               job_.load(std::memory_order_acquire) != seen;
      };
      if (left_out || !poll(changed)) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleepers_;
        wake_.wait(lock, changed);
        --sleepers_;
      }
      if (stop_.load(std::memory_order_acquire))
        return;
      seen = job_.load(std::memory_order_acquire);
      left_out = id >= static_cast<int>(seen & 0xffffffffu);
      if (left_out)
        continue;
      work(id + 1);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Under the mutex, so a caller that found pending_ non-zero is already waiting.
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex run_mutex_; // one run at a time
  std::mutex mutex_;     // for blocking: sleepers_, and publishing job_ and stop_
  std::condition_variable wake_;
  std::condition_variable done_;
  // The current job: its generation (high 32 bits; it wraps after 2^32 calls, harmless unless a
  // worker slept through exactly that many) and how many workers help (low 32 bits). Polled by
  // idle workers: on a cache line of its own, away from the counters a running job updates.
  alignas(64) std::atomic<std::uint64_t> job_{0};
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> spin_us_{0};
  int sleepers_ = 0;
  void (*call_)(void*, index_t) = nullptr;
  void* ctx_ = nullptr;
  // Each thread's share of the current call: tasks [next, end) not yet claimed. One cache line
  // each, so a thread claiming its own tasks does not take the line from the others.
  struct alignas(64) share {
    std::atomic<index_t> next{0};
    index_t end = 0;
  };
  std::vector<share> shares_; // workers + 1
  int threads_in_call_ = 0;
  alignas(64) std::atomic<int> pending_{0};
};

} // namespace cpu
} // namespace aplq
