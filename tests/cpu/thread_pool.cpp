// SPDX-License-Identifier: Apache-2.0
// The thread pool runs every task exactly once for any thread count, reuses its workers, and
// serves several calling threads at once.
#include "../testing.hpp"

#include <atomic>
#include <thread>

using aplq::cpu::thread_pool;

TEST_CASE("thread_pool: every task runs exactly once") {
  thread_pool pool(3);
  CHECK(pool.max_threads() == 4);
  for (int threads : {-1, 0, 1, 2, 4, 9}) {
    for (aplq::index_t tasks : {0, 1, 3, 100, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(tasks));
      auto fn = [&](aplq::index_t t) { hits[static_cast<std::size_t>(t)].fetch_add(1); };
      pool.run(threads, tasks, fn);
      int wrong = 0;
      for (auto& h : hits)
        wrong += h.load() != 1;
      INFO("threads=", threads, " tasks=", tasks);
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("thread_pool: uses more than one thread when asked") {
  thread_pool pool(1);
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
  pool.run(2, 2, fn);
  CHECK(overlapped.load());
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
