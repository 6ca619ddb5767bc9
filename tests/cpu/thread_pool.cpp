// SPDX-License-Identifier: Apache-2.0
// The thread pool runs every task exactly once for any thread count, gives each thread a
// contiguous share of the tasks, reuses its workers (polling or blocked between calls), and
// serves several calling threads at once.
#include "../testing.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

using aplq::cpu::thread_pool;

// How many of `tasks` tasks a run on `threads` threads did not run exactly once.
int not_run_once(thread_pool& pool, int threads, aplq::index_t tasks) {
  std::vector<std::atomic<int>> hits(static_cast<std::size_t>(tasks));
  auto fn = [&](aplq::index_t t) { hits[static_cast<std::size_t>(t)].fetch_add(1); };
  pool.run(threads, tasks, fn);
  int wrong = 0;
  for (auto& h : hits)
    wrong += h.load() != 1;
  return wrong;
}

TEST_CASE("thread_pool: every task runs exactly once") {
  thread_pool pool(3);
  CHECK(pool.max_threads() == 4);
  for (int threads : {-1, 0, 1, 2, 4, 9}) {
    for (aplq::index_t tasks : {0, 1, 3, 100, 1000}) {
      INFO("threads=", threads, " tasks=", tasks);
      CHECK(not_run_once(pool, threads, tasks) == 0);
    }
  }
}

TEST_CASE("thread_pool: each thread runs its own share in order, then what is left of the "
          "others'") {
  thread_pool pool(1);
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<aplq::index_t> mine, helper; // tasks in the order each thread ran them
  std::atomic<int> helped{0};
  bool waited = false;
  // The caller's first task holds it until the helper has run its whole share (32..63) and 8 of
  // the caller's, so both threads' orders are fixed up to there.
  auto fn = [&](aplq::index_t t) {
    if (std::this_thread::get_id() != caller) {
      helper.push_back(t);
      helped.fetch_add(1, std::memory_order_release);
      return;
    }
    if (mine.empty()) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (helped.load(std::memory_order_acquire) < 40 &&
             std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      waited = helped.load(std::memory_order_acquire) >= 40;
    }
    mine.push_back(t);
  };
  pool.run(2, 64, fn);
  REQUIRE(waited);
  REQUIRE(helper.size() >= 40);
  std::vector<aplq::index_t> expected;
  for (aplq::index_t t = 32; t < 64; ++t)
    expected.push_back(t);
  for (aplq::index_t t = 1; t <= 8; ++t)
    expected.push_back(t);
  CHECK(std::vector<aplq::index_t>(helper.begin(), helper.begin() + 40) == expected);
  CHECK(mine.front() == 0);
  // After that both claim from the caller's share, each in increasing order, every task once.
  CHECK(std::is_sorted(mine.begin(), mine.end()));
  CHECK(std::is_sorted(helper.begin() + 32, helper.end()));
  std::vector<aplq::index_t> all = mine;
  all.insert(all.end(), helper.begin(), helper.end());
  std::sort(all.begin(), all.end());
  CHECK(all.size() == 64);
  for (std::size_t i = 0; i < all.size(); ++i)
    CHECK(all[i] == static_cast<aplq::index_t>(i));
}

// Whether a run of `threads` threads had two tasks inside fn at once (each task waits up to 20 ms
// for a second one).
bool overlaps(thread_pool& pool, int threads) {
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  auto fn = [&](aplq::index_t) {
    if (inside.fetch_add(1) > 0)
      overlapped = true;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
    while (std::chrono::steady_clock::now() < until && !overlapped)
      std::this_thread::yield();
    inside.fetch_sub(1);
  };
  pool.run(threads, 2, fn);
  return overlapped.load();
}

TEST_CASE("thread_pool: uses more than one thread when asked") {
  thread_pool pool(1);
  CHECK(overlaps(pool, 2));
  CHECK_FALSE(overlaps(pool, 1));
}

TEST_CASE("thread_pool: workers polling, blocked, or switched between the two") {
  using std::chrono::microseconds;
  thread_pool pool(3, microseconds(0));
  CHECK(pool.spin() == microseconds(0));
  std::mt19937 gen(static_cast<std::uint32_t>(aplq_test::base_seed()));
  // Spin times below, at and above the gaps between calls, so that workers are found polling,
  // just gone to sleep, or long asleep; thread counts change between calls, so workers that are
  // not helpers of a call skip it.
  for (int spin : {0, 200, 5000, 1000}) {
    pool.set_spin(microseconds(spin));
    CHECK(pool.spin() == microseconds(spin));
    for (int rep = 0; rep < 60; ++rep) {
      const int threads = 1 + static_cast<int>(gen() % 4);
      const aplq::index_t tasks = static_cast<aplq::index_t>(gen() % 300);
      INFO("spin=", spin, "us threads=", threads, " tasks=", tasks, " ", aplq_test::seed_note());
      CHECK(not_run_once(pool, threads, tasks) == 0);
      if (gen() % 3 == 0)
        std::this_thread::sleep_for(microseconds(gen() % 2000));
    }
    CHECK(overlaps(pool, 4));
  }
  pool.set_spin(microseconds(-5));
  CHECK(pool.spin() == microseconds(0));
  pool.set_spin(microseconds::max());
  CHECK(pool.spin() == thread_pool::max_spin);
}

TEST_CASE("thread_pool: concurrent callers each get all their tasks") {
  thread_pool pool(2);
  std::vector<std::thread> callers;
  std::vector<long> sums(8, 0);
  for (int c = 0; c < 8; ++c) {
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<long> sum{0};
        auto fn = [&](aplq::index_t t) { sum.fetch_add(t + 1); };
        pool.run(3, 64, fn);
        sums[c] += sum.load();
      }
    });
  }
  for (auto& t : callers)
    t.join();
  for (long s : sums)
    CHECK(s == 50L * 64 * 65 / 2);
}
