// SPDX-License-Identifier: Apache-2.0
// binary16 and bfloat16 conversions, exhaustively: every pattern survives -> float -> back, and
// every midpoint between neighbouring values rounds to the even one (round to nearest even).
#include "testing.hpp"

#include <cstring>
#include <limits>

using aplq::half;

namespace {
float as_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
} // namespace

TEST_CASE("half: every bit pattern round-trips through float") {
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const half h{static_cast<std::uint16_t>(b)};
    const float f = aplq::half_to_float(h);
    const bool nan = (b & 0x7c00u) == 0x7c00u && (b & 0x3ffu) != 0;
    INFO("half bits ", b);
    if (nan) {
      CHECK(std::isnan(f));
      CHECK(std::isnan(aplq::half_to_float(aplq::float_to_half(f))));
    } else {
      CHECK(aplq::float_to_half(f).bits == b);
    }
  }
}

TEST_CASE("half: known values") {
  CHECK(aplq::half_to_float(half{0x3c00}) == 1.0f);
  CHECK(aplq::half_to_float(half{0xc000}) == -2.0f);
  CHECK(aplq::half_to_float(half{0x7bff}) == 65504.0f);
  CHECK(aplq::half_to_float(half{0x0001}) == std::ldexp(1.0f, -24));
  CHECK(aplq::float_to_half(65520.0f).bits == 0x7c00u); // rounds up to Inf
  CHECK(aplq::float_to_half(65519.0f).bits == 0x7bffu);
  CHECK(aplq::float_to_half(std::ldexp(1.0f, -26)).bits == 0u); // below half the least subnormal
  CHECK(aplq::float_to_half(-0.0f).bits == 0x8000u);
}

TEST_CASE("half: midpoints round to even, neighbours of midpoints to the nearer half") {
  // Adjacent finite positive halves a < b (b may be the largest finite): their midpoint has a
  // 12-bit significand, so it is exact in float.
  for (std::uint32_t a = 0; a < 0x7bffu; ++a) {
    const float fa = aplq::half_to_float(half{static_cast<std::uint16_t>(a)});
    const float fb = aplq::half_to_float(half{static_cast<std::uint16_t>(a + 1)});
    const float mid = (fa + fb) / 2.0f;
    REQUIRE(static_cast<double>(mid) == (static_cast<double>(fa) + static_cast<double>(fb)) / 2);
    const std::uint32_t next = a + 1;
    INFO("between half bits ", a, " and ", next);
    const std::uint32_t even = (a % 2 == 0) ? a : a + 1;
    CHECK(aplq::float_to_half(mid).bits == even);
    CHECK(aplq::float_to_half(-mid).bits == (even | 0x8000u));
    CHECK(aplq::float_to_half(as_float(bits_of(mid) - 1)).bits == a);
    CHECK(aplq::float_to_half(as_float(bits_of(mid) + 1)).bits == a + 1);
  }
}

TEST_CASE("bfloat16: every bit pattern round-trips; midpoints round to even") {
  using aplq::bfloat16;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = aplq::bfloat16_to_float(bfloat16{static_cast<std::uint16_t>(b)});
    INFO("bfloat16 bits ", b);
    CHECK(bits_of(f) == b << 16); // widening is exact
    if (std::isnan(f)) {
      CHECK(std::isnan(aplq::bfloat16_to_float(aplq::float_to_bfloat16(f))));
      continue;
    }
    CHECK(aplq::float_to_bfloat16(f).bits == b);
    // Between this pattern and the next one of the same sign: the midpoint rounds to the even
    // one, its neighbours to the nearer (no next one past the largest finite magnitude).
    if ((b & 0x7fffu) >= 0x7f7fu)
      continue;
    const std::uint32_t mid = (b << 16) | 0x8000u;
    const std::uint32_t even = (b % 2 == 0) ? b : b + 1;
    CHECK(aplq::float_to_bfloat16(as_float(mid)).bits == even);
    CHECK(aplq::float_to_bfloat16(as_float(mid - 1)).bits == b);
    CHECK(aplq::float_to_bfloat16(as_float(mid + 1)).bits == b + 1);
  }
  CHECK(aplq::float_to_bfloat16(std::numeric_limits<float>::max()).bits == 0x7f80u); // to Inf
  CHECK(aplq::float_to_bfloat16(-std::numeric_limits<float>::infinity()).bits == 0xff80u);
}
