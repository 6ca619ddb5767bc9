// SPDX-License-Identifier: Apache-2.0
// The table-lookup kernels (cpu/lut.hpp) in a translation unit built with -mavx2 alone, no FMA and
// no F16C, as a user's may be: xsimd's default arch there is plain avx2, and the exact policy's
// tables must be laid out for the tile that runs there (the scalar one: the AVX2 tile needs FMA
// and F16C). A table layout chosen by AVX2 alone once gave wrong sums in such a build. Both
// policies against aplq::ref, with the bounds of cpu/lut.cpp. Its own executable, for its own
// flags; it exits 77 (skipped) on a CPU without AVX2.
#define DOCTEST_CONFIG_IMPLEMENT
#include "../testing.hpp"
#include "bounds.hpp"

#include <aplq/cpu/lut.hpp>

#include <cstdio>
#include <type_traits>

namespace {

using namespace aplq;
using namespace aplq_test;

static_assert(std::is_same<xsimd::default_arch, xsimd::avx2>::value,
              "this file is built with -mavx2 alone (tests/meson.build)");

TEST_CASE_TEMPLATE("cpu/lut built with -mavx2 alone: both policies against the oracle", F, q1_g32,
                   format<1, 128, true, half>, format<2, 64, true>, format<2, whole_row>,
                   format<2, 128, true, half>) {
  INFO(seed_note());
  struct shape {
    index_t m, k, n;
  };
  for (const shape sh : {shape{1, 1, 1}, shape{45, 333, 2}, shape{77, 1000, 3}, shape{33, 4097, 1}}) {
    INFO("M=", sh.m, " K=", sh.k, " N=", sh.n);
    rng r(static_cast<std::uint64_t>(sh.m * 7919 + sh.k * 31 + sh.n));
    const auto w = r.normal(sh.m * sh.k);
    const auto x = r.normal(sh.n * sh.k);
    qmatrix<F> q;
    REQUIRE(quantize<F>(w.data(), sh.m, sh.k, q) == status::ok);
    cpu::lut_matrix<F> lut;
    REQUIRE(lut.pack(q.view()) == status::ok);
    std::vector<double> expect(static_cast<std::size_t>(sh.n * sh.m));
    REQUIRE(ref::gemm(q.view(), x.data(), sh.n, expect.data()) == status::ok);

    std::vector<float> y(expect.size());
    REQUIRE(cpu::gemm<xsimd::avx2>(lut.view(), x.data(), sh.n, y.data(), {1, compute::exact}) ==
            status::ok);
    const auto exact = worst_outside(y, expect, lut_exact_bound(q.view(), x, sh.n));
    INFO("exact: worst output ", exact.first, " exceeds its bound by ", exact.second);
    CHECK(exact.first == -1);

    REQUIRE(cpu::gemm<xsimd::avx2>(lut.view(), x.data(), sh.n, y.data(), {1, compute::int8}) ==
            status::ok);
    const auto int8 = worst_outside(y, expect, int8_bound(q.view(), x, sh.n));
    INFO("int8: worst output ", int8.first, " exceeds its bound by ", int8.second);
    CHECK(int8.first == -1);
  }
}

} // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx2")) {
    std::puts("cpu/lut_avx2_only: this CPU has no AVX2, skipped");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
