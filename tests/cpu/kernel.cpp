// SPDX-License-Identifier: Apache-2.0
// The CPU kernels against aplq::ref: every format x layout x compute policy x ISA this CPU runs,
// on odd shapes (1x1, K off the chunk and group sizes, M off the row block, large K), GEMV and
// batched GEMM (the exact policy's tile and panel paths), results independent of the thread
// count (and, for the exact policy's tiles, of the batch), and bad arguments rejected.
#include "../testing.hpp"
#include "bounds.hpp"

#include <cstring>

namespace {

using namespace aplq;
using namespace aplq_test;

struct shape {
  index_t m, k;
};
// 33 x 2100: the exact panels' tasks (12 rows here) take their row groups (two of 6 rows with
// AVX2, one of 12 with AVX-512) through two column spans (1280 columns at panel_batch with
// either), each with a summation block's end inside it, the last one partial.
constexpr shape shapes[] = {{1, 1}, {3, 31}, {5, 33}, {17, 100}, {9, 257}, {33, 2100}, {4, 4099}};
constexpr index_t batch = 6; // one tile of four activation rows plus a remainder of two
// The panel paths: the exact policy's (batch >= 12) gets two whole panels of 16 activation rows
// (four of 8 on 128-bit ISAs) and a partial one; the int8 policy's (AVX2 and AVX-512 from batch
// 8, AVX512-VNNI from batch 3) blocks of 4 or 8 activation rows and the remainders.
constexpr index_t panel_batch = 37;
constexpr index_t guard = 16; // outputs past the end that must stay untouched

const char* policy_name(compute p) { return p == compute::exact ? "exact" : "int8"; }

template <class F>
void check_format(const shape& sh, std::uint64_t salt, const std::vector<dispatch::isa>& isas) {
  rng r(salt);
  // Zero-point formats see skewed weights, as real ones are; activations have a mean too, which
  // is what makes cancellation in the zero-point correction show.
  const std::vector<float> w = r.normal(sh.m * sh.k, F::zero_point ? 0.4f : 0.0f, 1.0f);
  const std::vector<float> x = r.normal(batch * sh.k, 0.2f, 1.0f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), sh.m, sh.k, q) == status::ok);
  const auto view = q.view();
  std::vector<double> expect(static_cast<std::size_t>(batch * sh.m));
  REQUIRE(ref::gemm(view, x.data(), batch, expect.data()) == status::ok);
  const std::vector<double> int8_bound_ = int8_bound(view, x, batch);
  const std::vector<double> exact_bound_ = exact_bound(view, x, batch);
  const any_qmatrix_view erased = dispatch::erase(view);
  const std::vector<float> xp = r.normal(panel_batch * sh.k, 0.2f, 1.0f);
  std::vector<double> expect_panel(static_cast<std::size_t>(panel_batch * sh.m));
  REQUIRE(ref::gemm(view, xp.data(), panel_batch, expect_panel.data()) == status::ok);
  const std::vector<double> panel_bound = exact_bound(view, xp, panel_batch, true);
  const std::vector<double> int8_panel_bound = int8_bound(view, xp, panel_batch);

  for (auto isa : isas) {
    for (auto policy : {compute::exact, compute::int8}) {
      const std::string where = std::string("gemm/") + name_of<F>().c_str() + "/" +
                                policy_name(policy) + "/" + dispatch::isa_name(isa) +
                                " M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) +
                                " N=" + std::to_string(batch) + " " + seed_note();
      INFO(where);
      auto y = poisoned(batch * sh.m);
      REQUIRE(dispatch::gemm(erased, x.data(), batch, y.data(), {1, policy}, isa) == status::ok);
      const auto& bound = policy == compute::exact ? exact_bound_ : int8_bound_;
      const auto worst = worst_outside(y, expect, bound);
      INFO("worst output ", worst.first, " exceeds its bound by ", worst.second);
      CHECK(worst.first == -1);
      // The design's contract for the exact policy, rel-L2 <= 1e-6, is a statement about many
      // outputs; over a handful one ill-conditioned sum dominates it (the bound above holds).
      if (policy == compute::exact && y.size() >= 30)
        CHECK(rel_l2(y, expect) <= 1e-6);

      // GEMV is the batch-1 path of the same kernels.
      auto y1 = poisoned(sh.m);
      REQUIRE(dispatch::gemv(erased, x.data(), y1.data(), {1, policy}, isa) == status::ok);
      CHECK(worst_outside(y1, expect, bound).first == -1);

      // The exact policy's arithmetic for an output is the same whatever tile it falls in: each
      // activation row of the batch gives, bit for bit, what its GEMV gives.
      if (policy == compute::exact)
        for (index_t j = 0; j < batch; ++j) {
          INFO("activation row ", j);
          auto yj = poisoned(sh.m);
          REQUIRE(dispatch::gemv(erased, x.data() + j * sh.k, yj.data(), {1, policy}, isa) ==
                  status::ok);
          CHECK(std::memcmp(yj.data(), y.data() + j * sh.m,
                            static_cast<std::size_t>(sh.m) * sizeof(float)) == 0);
        }

      // Bit-identical for any thread count.
      check_thread_counts(y, [&](int threads, float* out) {
        return dispatch::gemm(erased, x.data(), batch, out, {threads, policy}, isa);
      });
    }

    // The panel paths (and the int8 tiles on ISAs without int8 panels).
    for (auto policy : {compute::exact, compute::int8}) {
      const std::string where = std::string("gemm/") + name_of<F>().c_str() + "/" +
                                policy_name(policy) + "/" + dispatch::isa_name(isa) +
                                " M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) +
                                " N=" + std::to_string(panel_batch) + " " + seed_note();
      INFO(where);
      auto y = poisoned(panel_batch * sh.m + guard);
      REQUIRE(dispatch::gemm(erased, xp.data(), panel_batch, y.data(), {1, policy}, isa) ==
              status::ok);
      std::size_t touched = 0;
      for (std::size_t i = static_cast<std::size_t>(panel_batch * sh.m); i < y.size(); ++i)
        touched += !std::isnan(y[i]);
      CHECK(touched == 0);
      y.resize(static_cast<std::size_t>(panel_batch * sh.m));
      const auto worst =
          worst_outside(y, expect_panel, policy == compute::exact ? panel_bound : int8_panel_bound);
      INFO("worst output ", worst.first, " exceeds its bound by ", worst.second);
      CHECK(worst.first == -1);
      if (policy == compute::exact)
        CHECK(rel_l2(y, expect_panel) <= 1e-6);
      check_thread_counts(y, [&](int threads, float* out) {
        return dispatch::gemm(erased, xp.data(), panel_batch, out, {threads, policy}, isa);
      });
    }
  }
}

} // namespace

TEST_CASE("cpu/gemm and gemv: every format, layout, policy and ISA against the oracle") {
  const auto isas = available_isas();
  REQUIRE_FALSE(isas.empty());
  std::uint64_t salt = 0;
  for (const auto& desc : all_formats()) {
    for (const auto& sh : shapes) {
      ++salt;
      const status s = visit_format(desc, [&](auto f) {
        check_format<decltype(f)>(sh, salt, isas);
        return status::ok;
      });
      REQUIRE(s == status::ok);
    }
  }
}

TEST_CASE("cpu/gemv and gemm: a large K with whole-row scales keeps the exact policy's accuracy") {
  // 8-bit rows of 65536 weights and one scale each: the longest f32 accumulation there is.
  using F = format<8, whole_row, false, float, layout::cpu_striped>;
  rng r(1001);
  const index_t m = 40, k = 65536;
  const auto w = r.normal(m * k), x = r.normal(k, 0.2f, 1.0f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  std::vector<double> expect(m);
  REQUIRE(ref::gemv(q.view(), x.data(), expect.data()) == status::ok);
  const auto bound = exact_bound(q.view(), x, 1);
  for (auto isa : available_isas()) {
    const std::string where = std::string(dispatch::isa_name(isa)) + " " + seed_note();
    INFO(where);
    auto y = poisoned(m);
    REQUIRE(dispatch::gemv(dispatch::erase(q.view()), x.data(), y.data(), {2}, isa) == status::ok);
    CHECK(worst_outside(y, expect, bound).first == -1);
    CHECK(rel_l2(y, expect) <= 1e-6);
  }

  // The same through the panel paths (16 activation rows).
  const index_t n = 16;
  const auto xn = r.normal(n * k, 0.2f, 1.0f);
  std::vector<double> expect_n(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), xn.data(), n, expect_n.data()) == status::ok);
  const auto bound_n = exact_bound(q.view(), xn, n, true);
  const auto int8_bound_n = int8_bound(q.view(), xn, n);
  for (auto isa : available_isas()) {
    const std::string where = std::string(dispatch::isa_name(isa)) + " N=16 " + seed_note();
    INFO(where);
    auto y = poisoned(n * m);
    REQUIRE(dispatch::gemm(dispatch::erase(q.view()), xn.data(), n, y.data(), {2}, isa) ==
            status::ok);
    CHECK(worst_outside(y, expect_n, bound_n).first == -1);
    CHECK(rel_l2(y, expect_n) <= 1e-6);
    // And the int8 policy's panels (its tiles where the ISA has none).
    REQUIRE(dispatch::gemm(dispatch::erase(q.view()), xn.data(), n, y.data(), {2, compute::int8},
                           isa) == status::ok);
    CHECK(worst_outside(y, expect_n, int8_bound_n).first == -1);
  }
}

// The header-only path: aplq::gemv / aplq::gemm on the architecture this file is compiled for.
TEST_CASE_TEMPLATE("cpu/gemm, static dispatch: header-only entry points against the oracle", F,
                   q1_g32, q2_g128, q4_g32, format<4, 64, true, half, layout::cpu_striped>,
                   format<8, whole_row, true, float, layout::cpu_striped>) {
  rng r(2002);
  const index_t m = 37, k = 301, n = 5;
  const auto w = r.normal(m * k), x = r.normal(n * k);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  std::vector<double> expect(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
  const std::string where = std::string(name_of<F>().c_str()) + " " + seed_note();
  INFO(where);
  auto y = poisoned(n * m);
  REQUIRE(gemm(q.view(), x.data(), n, y.data(), {2, compute::exact}) == status::ok);
  CHECK(rel_l2(y, expect) <= 1e-6);
  auto y1 = poisoned(m);
  REQUIRE(gemv(q.view(), x.data(), y1.data()) == status::ok);
  CHECK(rel_l2(y1, std::vector<double>(expect.begin(), expect.begin() + m)) <= 1e-6);
  REQUIRE(gemm(q.view(), x.data(), n, y.data(), {0, compute::int8}) == status::ok);
  CHECK(rel_l2(y, expect) <= 0.05); // int8 activations: bounded per element in the test above
}

TEST_CASE("cpu/gemm: the output may alias the activations") {
  // The activations are copied into the kernels' own buffers before any output is written.
  using F = format<4, 32, false, float, layout::cpu_striped>;
  rng r(4004);
  const index_t m = 50, k = 70, n = 3;
  const auto w = r.normal(m * k), x = r.normal(n * k);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  for (auto policy : {compute::exact, compute::int8}) {
    std::vector<float> separate(static_cast<std::size_t>(n * m));
    REQUIRE(gemm(q.view(), x.data(), n, separate.data(), {2, policy}) == status::ok);
    std::vector<float> inplace = x; // n * k >= n * m
    REQUIRE(gemm(q.view(), inplace.data(), n, inplace.data(), {2, policy}) == status::ok);
    CHECK(std::memcmp(inplace.data(), separate.data(), separate.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("cpu/gemm: bad arguments return a status and leave the output alone") {
  using F = format<4, 32, true>;
  rng r(3003);
  const auto w = r.normal(8 * 64), x = r.normal(64);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), 8, 64, q) == status::ok);
  const auto good = q.view();
  std::vector<float> y(8, 42.0f);
  auto untouched = [&] {
    for (float v : y)
      if (v != 42.0f)
        return false;
    return true;
  };

  auto v = good;
  v.codes = nullptr;
  CHECK(gemv(v, x.data(), y.data()) == status::null_pointer);
  v = good;
  v.scales = nullptr;
  CHECK(gemv(v, x.data(), y.data()) == status::null_pointer);
  v = good;
  v.zeros = nullptr; // a zero-point format without zero points
  CHECK(gemv(v, x.data(), y.data()) == status::null_pointer);
  CHECK(gemv(good, nullptr, y.data()) == status::null_pointer);
  CHECK(gemv(good, x.data(), nullptr) == status::null_pointer);
  v = good;
  v.rows = 0;
  CHECK(gemv(v, x.data(), y.data()) == status::invalid_shape);
  v = good;
  v.cols = -3;
  CHECK(gemv(v, x.data(), y.data()) == status::invalid_shape);
  CHECK(gemm(good, x.data(), 0, y.data()) == status::invalid_shape);
  CHECK(gemm(good, x.data(), -1, y.data()) == status::invalid_shape);
  CHECK(gemv(good, x.data(), y.data(), {1, static_cast<compute>(7)}) == status::invalid_argument);
  CHECK(untouched());

  // The same through the run-time dispatch, plus formats that do not exist.
  auto e = dispatch::erase(good);
  CHECK(dispatch::gemv(e, nullptr, y.data()) == status::null_pointer);
  for (auto bad : {format_desc{3, 32}, format_desc{4, 48},
                   format_desc{4, 32, false, static_cast<scale_kind>(5)},
                   format_desc{4, 32, false, scale_kind::f32, static_cast<layout_kind>(9)}}) {
    auto eb = e;
    eb.format = bad;
    CHECK(dispatch::gemv(eb, x.data(), y.data()) == status::unsupported_format);
  }
  CHECK(untouched());
}
