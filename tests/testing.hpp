// SPDX-License-Identifier: Apache-2.0
// Shared test helpers: seeded random data (fresh seed each run, APLQ_TEST_SEED=<n> to replay;
// the seed is printed with every failure), error measures in double, and the lists of formats
// and instruction sets the tests sweep.
#pragma once

#include <aplq/dispatch.hpp>
#include <aplq/matmul.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace aplq_test {

using aplq::index_t;

// The run's base seed: APLQ_TEST_SEED if set, else fresh from the OS.
inline std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    if (const char* s = std::getenv("APLQ_TEST_SEED"))
      return static_cast<std::uint64_t>(std::strtoull(s, nullptr, 10));
    return (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }();
  return seed;
}

struct rng {
  std::mt19937_64 gen;
  explicit rng(std::uint64_t salt) : gen(base_seed() ^ (salt * 0x9e3779b97f4a7c15ull)) {}
  std::vector<float> normal(index_t n, float mean = 0.0f, float stddev = 1.0f) {
    std::normal_distribution<float> d(mean, stddev);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v)
      e = d(gen);
    return v;
  }
  std::vector<std::uint8_t> codes(index_t n, unsigned max) {
    std::uniform_int_distribution<unsigned> d(0, max);
    std::vector<std::uint8_t> v(static_cast<std::size_t>(n));
    for (auto& e : v)
      e = static_cast<std::uint8_t>(d(gen));
    return v;
  }
};

inline std::string seed_note() { return "APLQ_TEST_SEED=" + std::to_string(base_seed()); }

// ||a - b|| / ||b|| in double (0 when both are zero).
template <class A, class B>
double rel_l2(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Every format visit_format knows: bits x group x zero point x scale type x layout.
inline std::vector<aplq::format_desc> all_formats() {
  std::vector<aplq::format_desc> out;
  for (int bits : {1, 2, 4, 8})
    for (int group : {32, 64, 128, 256, aplq::whole_row})
      for (bool zp : {false, true})
        for (auto sc : {aplq::scale_kind::f32, aplq::scale_kind::f16})
          for (auto lay : {aplq::layout_kind::sequential, aplq::layout_kind::cpu_striped})
            out.push_back({bits, group, zp, sc, lay});
  return out;
}

// The ISAs compiled into aplq_dispatch that this CPU runs.
inline std::vector<aplq::dispatch::isa> available_isas() {
  std::vector<aplq::dispatch::isa> out;
  for (int i = 0; i < aplq::dispatch::isa_count; ++i)
    if (aplq::dispatch::available(static_cast<aplq::dispatch::isa>(i)))
      out.push_back(static_cast<aplq::dispatch::isa>(i));
  return out;
}

} // namespace aplq_test
