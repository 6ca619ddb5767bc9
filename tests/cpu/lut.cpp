// SPDX-License-Identifier: Apache-2.0
// The table-lookup kernels (cpu/lut.hpp) against aplq::ref: every 1- and 2-bit format on shapes
// off the 32-row tile and the 32-column chunk, every ISA this CPU runs, GEMV and GEMM, both
// policies (zero points off the code grid too); the repack read back code by code and
// unpacked exactly; the plain int8 kernels agree up to f32 rounding; results independent of the
// thread count; the output written exactly where it belongs; bad arguments rejected.
#include "../testing.hpp"
#include "bounds.hpp"

#include <algorithm>
#include <cstring>

namespace {

using namespace aplq;
using namespace aplq_test;

struct shape {
  index_t m, k;
};
// M = 1, 31, 33, 65 and 40: one tile mostly padding, one short, one over, several; K off the
// chunk (31, 100, 257, 4099) and a whole 1000.
constexpr shape shapes[] = {{1, 1}, {31, 100}, {33, 257}, {65, 1000}, {40, 4099}};
constexpr index_t batch = 3;
// A batch where panels take over from the tables: the int8 ones (lut_panel_task: 2-bit formats
// on AVX2 and AVX-512, 1-bit ones too on AVX512-VNNI; blocks of 8 or 4 activation rows and a
// remainder) and the exact policy's f32 ones (lut_exact_panel_task, every ISA).
constexpr index_t panel_batch = 37;
constexpr index_t guard = 16; // outputs past the end that must stay untouched

// quantize puts zero points on codes; the exact policy's table lookup rounds them to the nearest
// code and adds the rest per group (cpu/lut.hpp), so three groups in eight get one between two
// codes, one halfway (a tie) or one past the last code.
template <class F>
void set_off_grid_zeros(qmatrix<F>& q) {
  if constexpr (F::zero_point) {
    auto& z = q.zeros();
    for (std::size_t i = 0; i < z.size(); ++i) {
      float v = to_float(z[i]);
      if (i % 8 == 1)
        v += 0.375f;
      else if (i % 8 == 3)
        v -= 0.5f;
      else if (i % 8 == 5)
        v = static_cast<float>(F::code_max) + 0.75f;
      z[i] = from_float<typename F::scale_type>(v);
    }
  }
}

template <class F>
void check_format(const shape& sh, std::uint64_t salt, const std::vector<dispatch::isa>& isas) {
  using Seq = typename F::template with_layout<layout::sequential>;
  using Str = typename F::template with_layout<layout::cpu_striped>;
  rng r(salt);
  const std::vector<float> w = r.normal(sh.m * sh.k, F::zero_point ? 0.4f : 0.0f, 1.0f);
  const std::vector<float> x = r.normal(batch * sh.k, 0.2f, 1.0f);
  qmatrix<Seq> q;
  REQUIRE(quantize<Seq>(w.data(), sh.m, sh.k, q) == status::ok);
  set_off_grid_zeros(q);
  qmatrix<Str> qs;
  REQUIRE(repack<Str>(q.view(), qs) == status::ok);
  const std::string where = std::string(name_of<F>().c_str()) + " M=" + std::to_string(sh.m) +
                            " K=" + std::to_string(sh.k) + " " + seed_note();
  INFO(where);

  // Packing from either layout gives the same matrix, and every code reads back.
  cpu::lut_matrix<Seq> lut;
  REQUIRE(lut.pack(q.view()) == status::ok);
  cpu::lut_matrix<Seq> lut2;
  REQUIRE(lut2.pack(qs.view()) == status::ok);
  const auto v = lut.view(), v2 = lut2.view();
  REQUIRE(v.tiles() == v2.tiles());
  CHECK(std::memcmp(v.codes, v2.codes, static_cast<std::size_t>(v.code_bytes())) == 0);
  const std::size_t scale_count = static_cast<std::size_t>(v.scale_count());
  CHECK(std::memcmp(v.scales, v2.scales, scale_count * sizeof(*v.scales)) == 0);
  if (F::zero_point)
    CHECK(std::memcmp(v.zeros, v2.zeros, scale_count * sizeof(*v.zeros)) == 0);
  index_t wrong = 0;
  for (index_t i = 0; i < sh.m; ++i)
    for (index_t j = 0; j < sh.k; ++j)
      wrong += lut.code(i, j) != ref::get_code<Seq>(q.view().row(i), j);
  CHECK(wrong == 0);

  // unpack inverts pack exactly, into either layout, padding bits cleared.
  qmatrix<Seq> back;
  REQUIRE(back.reset(sh.m, sh.k) == status::ok);
  std::fill(back.codes().begin(), back.codes().end(), std::uint8_t{0xa5});
  REQUIRE(cpu::unpack(v, back.span()) == status::ok);
  auto same = [](const auto& a, const auto& b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
  };
  CHECK(same(back.codes(), q.codes()));
  CHECK(same(back.scales(), q.scales()));
  CHECK(same(back.zeros(), q.zeros()));
  qmatrix<Str> back_striped;
  REQUIRE(back_striped.reset(sh.m, sh.k) == status::ok);
  std::fill(back_striped.codes().begin(), back_striped.codes().end(), std::uint8_t{0xa5});
  REQUIRE(cpu::unpack(v, back_striped.span()) == status::ok);
  CHECK(same(back_striped.codes(), qs.codes()));
  CHECK(same(back_striped.scales(), qs.scales()));
  qmatrix<Seq> wrong_shape;
  REQUIRE(wrong_shape.reset(sh.m + 1, sh.k) == status::ok);
  CHECK(cpu::unpack(v, wrong_shape.span()) == status::invalid_shape);

  // The small batch takes the tables (its first row must equal the GEMV's); the panel batch the
  // int8 panels where the ISA has them, and the exact policy's panels.
  const std::vector<float> xp = r.normal(panel_batch * sh.k, 0.2f, 1.0f);
  const auto erased = cpu::erase(v);
  for (const auto& [n, xn] : {std::make_pair(batch, &x), std::make_pair(panel_batch, &xp)}) {
    std::vector<double> expect(static_cast<std::size_t>(n * sh.m));
    REQUIRE(ref::gemm(q.view(), xn->data(), n, expect.data()) == status::ok);
    const auto bound = int8_bound(q.view(), *xn, n);
    const auto rounding = int8_bound(q.view(), *xn, n, true);
    for (auto isa : isas) {
      const std::string on = std::string(dispatch::isa_name(isa)) + " N=" + std::to_string(n);
      INFO(on);
      auto y = poisoned(n * sh.m + guard);
      REQUIRE(dispatch::gemm(erased, xn->data(), n, y.data(), {1, compute::int8}, isa) ==
              status::ok);
      for (index_t i = 0; i < guard; ++i)
        CHECK(std::isnan(y[static_cast<std::size_t>(n * sh.m + i)]));
      y.resize(static_cast<std::size_t>(n * sh.m));
      const auto worst = worst_outside(y, expect, bound);
      INFO("worst output ", worst.first, " exceeds its bound by ", worst.second);
      CHECK(worst.first == -1);

      // The plain int8 kernels compute the same integer dots: only f32 rounding may differ.
      std::vector<float> plain(y.size());
      REQUIRE(dispatch::gemm(dispatch::erase(q.view()), xn->data(), n, plain.data(),
                             {1, compute::int8}, isa) == status::ok);
      std::vector<double> plain_d(plain.begin(), plain.end());
      CHECK(worst_outside(y, plain_d, rounding).first == -1);

      if (n == batch) {
        auto y1 = poisoned(sh.m + guard);
        REQUIRE(dispatch::gemv(erased, xn->data(), y1.data(), {1, compute::int8}, isa) ==
                status::ok);
        CHECK(std::memcmp(y1.data(), y.data(), static_cast<std::size_t>(sh.m) * sizeof(float)) ==
              0);
        CHECK(std::isnan(y1[static_cast<std::size_t>(sh.m)]));
      }

      check_thread_counts(y, [&](int threads, float* out) {
        return dispatch::gemm(erased, xn->data(), n, out, {threads, compute::int8}, isa);
      });

      // The exact policy: f32 tables of the activations themselves.
      auto ye = poisoned(n * sh.m + guard);
      REQUIRE(dispatch::gemm(erased, xn->data(), n, ye.data(), {1, compute::exact}, isa) ==
              status::ok);
      for (index_t i = 0; i < guard; ++i)
        CHECK(std::isnan(ye[static_cast<std::size_t>(n * sh.m + i)]));
      ye.resize(static_cast<std::size_t>(n * sh.m));
      const bool exact_panels = n >= cpu::detail::lut_exact_panel_min_batch<F::bits>;
      CHECK(exact_panels == (n == panel_batch));
      const auto exact_worst = worst_outside(ye, expect,
                                             exact_panels ? exact_bound(q.view(), *xn, n, true)
                                                          : lut_exact_bound(q.view(), *xn, n));
      INFO("exact: worst output ", exact_worst.first, " exceeds its bound by ", exact_worst.second);
      CHECK(exact_worst.first == -1);
      if (exact_panels) {
        // The panels hold the plain kernels' dequantized weights, columns in the same order as
        // the striped layout's (the sequential one's 2-bit chunks take theirs in another order,
        // which rounds differently): its results, bit for bit.
        std::vector<float> plain_exact(ye.size());
        REQUIRE(dispatch::gemm(dispatch::erase(qs.view()), xn->data(), n, plain_exact.data(),
                               {1, compute::exact}, isa) == status::ok);
        CHECK(std::memcmp(plain_exact.data(), ye.data(), ye.size() * sizeof(float)) == 0);
      }
      if (n == batch) {
        auto y1 = poisoned(sh.m + guard);
        REQUIRE(dispatch::gemv(erased, xn->data(), y1.data(), {1, compute::exact}, isa) ==
                status::ok);
        CHECK(std::memcmp(y1.data(), ye.data(), static_cast<std::size_t>(sh.m) * sizeof(float)) ==
              0);
        CHECK(std::isnan(y1[static_cast<std::size_t>(sh.m)]));
      }
      check_thread_counts(ye, [&](int threads, float* out) {
        return dispatch::gemm(erased, xn->data(), n, out, {threads, compute::exact}, isa);
      });
    }
  }
}

} // namespace

TEST_CASE("cpu/lut: every 1- and 2-bit format and ISA against the oracle") {
  const auto isas = available_isas();
  REQUIRE_FALSE(isas.empty());
  std::uint64_t salt = 5000;
  for (auto desc : all_formats()) {
    if (desc.bits > 2 || desc.layout != layout_kind::sequential)
      continue;
    for (const auto& sh : shapes) {
      ++salt;
      REQUIRE(visit_format(desc, [&](auto f) {
                if constexpr (decltype(f)::bits <= 2)
                  check_format<decltype(f)>(sh, salt, isas);
                return status::ok;
              }) == status::ok);
    }
  }
}

// The header-only entry points, on the architecture this file is compiled for.
TEST_CASE_TEMPLATE("cpu/lut, static dispatch: header-only entry points against the oracle", F,
                   q1_g32, format<2, 64, true, half>, format<1, whole_row, true, float>,
                   format<2, 128, false, half>) {
  rng r(6006);
  const index_t m = 45, k = 333, n = 2;
  const auto w = r.normal(m * k), x = r.normal(n * k);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  set_off_grid_zeros(q);
  cpu::lut_matrix<F> lut;
  REQUIRE(lut.pack(q.view()) == status::ok);
  std::vector<double> expect(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
  const auto bound = int8_bound(q.view(), x, n);
  const std::string where = std::string(name_of<F>().c_str()) + " " + seed_note();
  INFO(where);
  auto y = poisoned(n * m);
  REQUIRE(gemm(lut.view(), x.data(), n, y.data(), {2, compute::int8}) == status::ok);
  CHECK(worst_outside(y, expect, bound).first == -1);
  auto y1 = poisoned(m);
  REQUIRE(gemv(lut.view(), x.data(), y1.data()) == status::ok);
  CHECK(std::memcmp(y1.data(), y.data(), static_cast<std::size_t>(m) * sizeof(float)) == 0);
  auto ye = poisoned(n * m);
  REQUIRE(gemm(lut.view(), x.data(), n, ye.data(), {2, compute::exact}) == status::ok);
  CHECK(worst_outside(ye, expect, lut_exact_bound(q.view(), x, n)).first == -1);
}

// The fallback tests' setup: 37 x 1100 weights (zero points off the grid) packed for table
// lookup, 3 activation rows prepared for `policy` on the architecture this file is compiled for,
// and a poisoned output with a guard behind it.
template <class F>
struct unbuffered_case {
  using S = typename F::scale_type;
  using K = cpu::detail::lut_format<F::bits, F::zero_point, S>;
  using A = xsimd::default_arch;
  static constexpr index_t m = 37, k = 1100, n = 3;

  std::vector<float> x;
  qmatrix<F> q;
  cpu::lut_matrix<F> lut;
  cpu::detail::lut_weights<S> lw;
  cpu::detail::activations act;
  std::vector<float> y = poisoned(n * m + guard);

  unbuffered_case(std::uint64_t seed, compute policy) {
    rng r(seed);
    const auto w = r.normal(m * k);
    x = r.normal(n * k);
    REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
    set_off_grid_zeros(q);
    REQUIRE(lut.pack(q.view()) == status::ok);
    const auto v = lut.view();
    lw = cpu::detail::lut_weights_of<S>(v.scales, v.zeros, v.codes, F::bits, F::group, m, k);
    REQUIRE(cpu::detail::prepare<K, A>(x.data(), n, k, lw.groups, lw.chunks_per_group, policy,
                                       act) == status::ok);
  }

  // After the kernels ran: the guard untouched, y cut to the output, and the oracle's results.
  std::vector<double> finish() {
    for (index_t i = 0; i < guard; ++i)
      CHECK(std::isnan(y[static_cast<std::size_t>(n * m + i)]));
    y.resize(static_cast<std::size_t>(n * m));
    std::vector<double> expect(static_cast<std::size_t>(n * m));
    REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
    return expect;
  }
};

// Without memory for its buffers, exact_panels (kernel.hpp) takes exact_rows_unbuffered with the
// same fill, a row and a chunk at a time, so that a call that has begun writing its output can
// finish. A failed allocation cannot be staged here: the fallback is called directly, with the
// table-lookup layout's fill, on the architecture this file is compiled for.
TEST_CASE_TEMPLATE("cpu/lut: the exact panels' fallback without buffers against the oracle", F,
                   q2_g32, format<1, 128, false, half>, format<2, 64, true>) {
  unbuffered_case<F> c(8118, compute::exact);
  using K = typename unbuffered_case<F>::K;
  using A = typename unbuffered_case<F>::A;
  auto fill = cpu::detail::lut_exact_fill<K, A>(c.lw);
  cpu::detail::exact_rows_unbuffered<A>(0, c.m, c.m, c.act, c.y.data(), fill);
  const auto expect = c.finish();
  INFO(name_of<F>().c_str(), " ", seed_note());
  CHECK(worst_outside(c.y, expect, exact_bound(c.q.view(), c.x, c.n, true)).first == -1);
}

// The same for the int8 policy: tasks whose int8 panels find no memory fall back to the tables,
// and without memory for those either to lut_tile_unbuffered, called directly here on every tile.
TEST_CASE_TEMPLATE("cpu/lut: the int8 fallback without buffers against the oracle", F, q2_g32,
                   q1_g32, format<1, 128, true, half>, format<2, whole_row, true>) {
  unbuffered_case<F> c(9229, compute::int8);
  using K = typename unbuffered_case<F>::K;
  using A = typename unbuffered_case<F>::A;
  for (index_t t = 0; t < c.lw.tiles; ++t)
    cpu::detail::lut_tile_unbuffered<K, A>(c.lw, t, c.act, c.y.data());
  const auto expect = c.finish();
  INFO(name_of<F>().c_str(), " ", seed_note());
  CHECK(worst_outside(c.y, expect, int8_bound(c.q.view(), c.x, c.n)).first == -1);
  // The plain int8 kernels compute the same integer dots: only f32 rounding may differ.
  std::vector<float> plain(c.y.size());
  REQUIRE(dispatch::gemm(dispatch::erase(c.q.view()), c.x.data(), c.n, plain.data(),
                         {1, compute::int8}) == status::ok);
  CHECK(worst_outside(c.y, std::vector<double>(plain.begin(), plain.end()),
                      int8_bound(c.q.view(), c.x, c.n, true))
            .first == -1);
}

// The int8 tables at their extremes: activations of one magnitude, so every one quantizes to
// +-127, against rows whose codes are all the largest (every lookup reads entry 15, the sum of 4
// activations) and rows of random codes. Where the 4 are +127, the entry is +508, biased 1020,
// whose high digit is the largest, 31: the table digits' byte sums reach their bound (8 * 31 =
// 248) in the rows of all +1 and of +3. A digit sum that overflowed or saturated would be off
// by far more than the bounds below.
TEST_CASE_TEMPLATE("cpu/lut: int8 tables at their extremes against the oracle", F, q1_g32, q2_g32,
                   format<2, 128, true, float>) {
  const auto isas = available_isas();
  REQUIRE_FALSE(isas.empty());
  constexpr index_t m = 40, k = 1000, n = 5;
  rng r(6100 + F::bits);
  qmatrix<F> q;
  REQUIRE(q.reset(m, k) == status::ok);
  const index_t row_bytes = static_cast<index_t>(q.codes().size()) / m;
  for (index_t i = 0; i < m; ++i)
    for (index_t b = 0; b < row_bytes; ++b)
      q.codes()[static_cast<std::size_t>(i * row_bytes + b)] =
          i % 2 == 0 ? std::uint8_t{0xff} : static_cast<std::uint8_t>(r.gen() & 0xffu);
  for (auto& s : q.scales())
    s = 0.5f + static_cast<float>(r.gen() % 8) / 8.0f;
  if constexpr (F::zero_point)
    for (auto& z : q.zeros())
      z = static_cast<float>(r.gen() % 4);
  // Rows of activations: all +1, all -1, steps of 4 alternating in sign, then random signs; the
  // last row's values scaled by 3, the quantized activations the same.
  std::vector<float> x(static_cast<std::size_t>(n * k));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < k; ++j) {
      const float v = i == 0   ? 1.0f
                      : i == 1 ? -1.0f
                      : i == 2 ? (j / 4 % 2 == 0 ? 1.0f : -1.0f)
                               : (r.gen() & 1u ? 1.0f : -1.0f);
      x[static_cast<std::size_t>(i * k + j)] = i == 4 ? 3.0f * v : v;
    }
  std::vector<double> expect(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
  const auto bound = int8_bound(q.view(), x, n);
  const auto rounding = int8_bound(q.view(), x, n, true);
  cpu::lut_matrix<F> lut;
  REQUIRE(lut.pack(q.view()) == status::ok);
  for (auto isa : isas) {
    INFO(name_of<F>().c_str(), " ", dispatch::isa_name(isa));
    std::vector<float> y(static_cast<std::size_t>(n * m)), plain(y.size());
    REQUIRE(dispatch::gemm(cpu::erase(lut.view()), x.data(), n, y.data(), {1, compute::int8},
                           isa) == status::ok);
    CHECK(worst_outside(y, expect, bound).first == -1);
    REQUIRE(dispatch::gemm(dispatch::erase(q.view()), x.data(), n, plain.data(), {1, compute::int8},
                           isa) == status::ok);
    CHECK(worst_outside(y, std::vector<double>(plain.begin(), plain.end()), rounding).first == -1);
  }
}

TEST_CASE("cpu/lut: bad arguments return a status and leave the output alone") {
  using F = format<2, 32, true>;
  rng r(7007);
  const auto w = r.normal(8 * 64), x = r.normal(64);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), 8, 64, q) == status::ok);
  cpu::lut_matrix<F> lut;
  REQUIRE(lut.pack(q.view()) == status::ok);
  const auto good = lut.view();
  std::vector<float> y(8, 42.0f);
  auto untouched = [&] {
    for (float e : y)
      if (e != 42.0f)
        return false;
    return true;
  };

  CHECK(gemv(good, x.data(), y.data(), {1, static_cast<compute>(7)}) == status::invalid_argument);
  auto v = good;
  v.codes = nullptr;
  CHECK(gemv(v, x.data(), y.data()) == status::null_pointer);
  v = good;
  v.zeros = nullptr;
  CHECK(gemv(v, x.data(), y.data()) == status::null_pointer);
  CHECK(gemv(good, nullptr, y.data()) == status::null_pointer);
  CHECK(gemv(good, x.data(), nullptr) == status::null_pointer);
  v = good;
  v.rows = 0;
  CHECK(gemv(v, x.data(), y.data()) == status::invalid_shape);
  CHECK(gemm(good, x.data(), 0, y.data()) == status::invalid_shape);

  // Through the run-time dispatch: formats the table lookup does not serve, and an ISA this
  // build or CPU lacks.
  const auto e = cpu::erase(good);
  for (auto bad : {format_desc{4, 32, true}, format_desc{8, 32}, format_desc{2, 48, true},
                   format_desc{1, 32, false, static_cast<scale_kind>(5)}}) {
    auto eb = e;
    eb.format = bad;
    CHECK(dispatch::gemv(eb, x.data(), y.data()) == status::unsupported_format);
  }
  CHECK(dispatch::gemv(e, x.data(), y.data(), {1, static_cast<compute>(7)}) ==
        status::invalid_argument);
  for (int i = 0; i < dispatch::isa_count; ++i)
    if (!dispatch::available(static_cast<dispatch::isa>(i)))
      CHECK(dispatch::gemv(e, x.data(), y.data(), {1, compute::int8},
                           static_cast<dispatch::isa>(i)) == status::unsupported_arch);
  CHECK(untouched());

  // Packing checks its source like every entry point.
  qmatrix_view<F> bad = q.view();
  bad.scales = nullptr;
  cpu::lut_matrix<F> other;
  CHECK(other.pack(bad) == status::null_pointer);
}
