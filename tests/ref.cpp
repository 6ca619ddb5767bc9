// SPDX-License-Identifier: Apache-2.0
// The oracle's own guarantees: pack -> unpack is bit-exact, repack between layouts is bit-exact
// (codes, scales, zero points, and so the dequantized matrix), and out-of-range codes are refused
// without touching the output.
#include "testing.hpp"

#include <cstring>

using namespace aplq;
using namespace aplq_test;

namespace {

constexpr index_t shapes[][2] = {{1, 1}, {2, 31}, {3, 33}, {4, 100}, {2, 257}, {1, 4099}};

template <class F>
void check_roundtrip(index_t rows, index_t cols, std::uint64_t salt) {
  using S = typename F::layout_type;
  const std::string where = std::string(name_of<F>().c_str()) + " rows=" + std::to_string(rows) +
                            " cols=" + std::to_string(cols) + " " + seed_note();
  INFO(where);
  rng r(salt);
  const auto codes = r.codes(rows * cols, F::code_max);
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(rows * F::row_bytes(cols)), 0xa5);
  REQUIRE(ref::pack<F>(codes.data(), rows, cols, packed.data()) == status::ok);
  std::vector<std::uint8_t> back(codes.size(), 0xff);
  REQUIRE(ref::unpack<F>(packed.data(), rows, cols, back.data()) == status::ok);
  CHECK(back == codes);
  // Padding bits are zero: repacking the same codes must give the same bytes.
  std::vector<std::uint8_t> again(packed.size(), 0x5a);
  REQUIRE(ref::pack<F>(back.data(), rows, cols, again.data()) == status::ok);
  CHECK(again == packed);
  (void)sizeof(S);
}

template <class From, class To>
void check_repack(index_t rows, index_t cols, std::uint64_t salt) {
  const std::string where = std::string(name_of<From>().c_str()) + " -> " + name_of<To>().c_str() +
                            " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                            " " + seed_note();
  INFO(where);
  rng r(salt);
  const auto w = r.normal(rows * cols, 0.3f, 1.0f);
  qmatrix<From> a;
  REQUIRE(quantize<From>(w.data(), rows, cols, a) == status::ok);
  qmatrix<To> b;
  REQUIRE(repack<To>(a.view(), b) == status::ok);
  qmatrix<From> c;
  REQUIRE(repack<From>(b.view(), c) == status::ok);
  CHECK(c.codes() == a.codes());
  std::vector<float> da(static_cast<std::size_t>(rows * cols)), db(da.size());
  REQUIRE(ref::dequantize(a.view(), da.data()) == status::ok);
  REQUIRE(ref::dequantize(b.view(), db.data()) == status::ok);
  CHECK(std::memcmp(da.data(), db.data(), da.size() * sizeof(float)) == 0);
  // Quantizing straight into the other layout gives the same matrix as repacking.
  qmatrix<To> d;
  REQUIRE(quantize<To>(w.data(), rows, cols, d) == status::ok);
  CHECK(d.codes() == b.codes());
}

} // namespace

TEST_CASE("ref: pack -> unpack and repack are bit-exact for every format") {
  std::uint64_t salt = 0;
  for (const auto& d : all_formats()) {
    for (const auto& sh : shapes) {
      ++salt;
      visit_format(d, [&](auto f) {
        using F = decltype(f);
        check_roundtrip<F>(sh[0], sh[1], salt);
        check_roundtrip<typename F::template with_layout<layout::striped<16>>>(sh[0], sh[1], salt);
        if constexpr (std::is_same<typename F::layout_type, layout::sequential>::value)
          check_repack<F, typename F::template with_layout<layout::cpu_striped>>(sh[0], sh[1],
                                                                                 salt);
        return status::ok;
      });
    }
  }
}

TEST_CASE("ref: weight() follows the definition in format.hpp") {
  using F = format<4, 32, true, half>;
  qmatrix<F> q;
  REQUIRE(q.reset(1, 40) == status::ok);
  ref::set_code<F>(q.codes().data(), 3, 11);
  ref::set_code<F>(q.codes().data(), 35, 2);
  q.scales()[0] = float_to_half(0.5f);
  q.scales()[1] = float_to_half(-2.0f);
  q.zeros()[0] = float_to_half(8.0f);
  q.zeros()[1] = float_to_half(3.0f);
  CHECK(ref::weight(q.view(), 0, 3) == 0.5 * (11 - 8));
  CHECK(ref::weight(q.view(), 0, 35) == -2.0 * (2 - 3));
  CHECK(ref::weight(q.view(), 0, 0) == 0.5 * (0 - 8));

  using S = format<1, whole_row>;
  qmatrix<S> s;
  REQUIRE(s.reset(1, 9) == status::ok);
  s.codes()[0] = 0x01; // code 0 is 1 -> +scale, code 1 is 0 -> -scale
  s.scales()[0] = 0.75f;
  CHECK(ref::weight(s.view(), 0, 0) == 0.75);
  CHECK(ref::weight(s.view(), 0, 1) == -0.75);
  CHECK(ref::weight(s.view(), 0, 8) == -0.75);
}

TEST_CASE("ref: bad arguments") {
  using F = q2_g32;
  const std::vector<std::uint8_t> codes = {0, 1, 2, 4}; // 4 does not fit in 2 bits
  std::vector<std::uint8_t> packed(1, 0x77);
  CHECK(ref::pack<F>(codes.data(), 1, 4, packed.data()) == status::out_of_range);
  CHECK(packed[0] == 0x77);
  CHECK(ref::pack<F>(nullptr, 1, 4, packed.data()) == status::null_pointer);
  CHECK(ref::pack<F>(codes.data(), 0, 4, packed.data()) == status::invalid_shape);
  CHECK(ref::unpack<F>(packed.data(), 1, -4, nullptr) == status::invalid_shape);

  qmatrix<F> a, b;
  REQUIRE(a.reset(2, 64) == status::ok);
  REQUIRE(b.reset(2, 65) == status::ok);
  CHECK(ref::repack<F>(a.view(), b.span()) == status::invalid_shape);
  std::vector<double> y(2);
  CHECK(ref::gemv(a.view(), nullptr, y.data()) == status::null_pointer);
  CHECK(ref::gemm(a.view(), nullptr, 0, y.data()) == status::invalid_shape);
}
