// SPDX-License-Identifier: Apache-2.0
// Layout index math: within a row, every code gets its own bit field, inside row_bytes, and the
// striped layout puts each 32-code chunk in one plane of one 32-byte stripe.
#include "testing.hpp"

#include <set>

using namespace aplq;

template <int Bits, class L>
void check_bijective(index_t cols) {
  std::set<std::pair<index_t, int>> slots;
  for (index_t j = 0; j < cols; ++j) {
    const index_t byte = L::template byte_of<Bits>(j);
    const int shift = L::template shift_of<Bits>(j);
    INFO("bits=", Bits, " layout=", L::name, " cols=", cols, " j=", j);
    REQUIRE(byte >= 0);
    REQUIRE(byte < L::template row_bytes<Bits>(cols));
    REQUIRE(shift % Bits == 0);
    REQUIRE(shift + Bits <= 8);
    REQUIRE(slots.insert({byte, shift}).second);
  }
}

TEST_CASE_TEMPLATE("layout: every code has its own field inside the row", L, layout::sequential,
                   layout::striped<16>, layout::striped<32>, layout::striped<64>) {
  for (index_t cols : {1, 7, 31, 32, 33, 255, 256, 257, 1000}) {
    check_bijective<1, L>(cols);
    check_bijective<2, L>(cols);
    check_bijective<4, L>(cols);
    check_bijective<8, L>(cols);
  }
}

TEST_CASE("layout: sequential is the packed interchange order") {
  using L = layout::sequential;
  CHECK(L::row_bytes<4>(5) == 3);
  CHECK(L::byte_of<4>(5) == 2);
  CHECK(L::shift_of<4>(5) == 4);
  CHECK(L::byte_of<1>(13) == 1);
  CHECK(L::shift_of<1>(13) == 5);
  CHECK(L::shift_of<2>(7) == 6);
}

TEST_CASE("layout: striped<32> keeps each 32-code chunk in one plane of one stripe") {
  using L = layout::cpu_striped;
  for (index_t j = 0; j < 1024; ++j) {
    CHECK(L::byte_of<4>(j) == j / 64 * 32 + j % 32);
    CHECK(L::shift_of<4>(j) == (j % 64) / 32 * 4);
    CHECK(L::shift_of<1>(j) == (j % 256) / 32);
  }
  CHECK(L::row_bytes<2>(1) == 32);
  CHECK(L::row_bytes<2>(129) == 64);
}
