// SPDX-License-Identifier: Apache-2.0
// format and visit_format: derived constants, the affine form against the definition, and the
// run-time -> type mapping (every descriptor reaches the type that describes it back).
#include "testing.hpp"

using namespace aplq;

static_assert(q4_g128::per_byte == 2 && q4_g128::code_max == 15 && q4_g128::group == 128);
static_assert(q1_row::groups(1000) == 1 && q1_row::group_size(1000) == 1000);
static_assert(q4_g32::groups(33) == 2 && q4_g32::row_bytes(33) == 17);
static_assert(format<2, 64, false, float, layout::cpu_striped>::row_bytes(129) == 64);
static_assert(format<8, 32>::symmetric_value(0) == -128 &&
              format<8, 32>::symmetric_value(255) == 127);
static_assert(q1_g32::symmetric_value(0) == -1 && q1_g32::symmetric_value(1) == 1);

TEST_CASE_TEMPLATE("format: the affine form a * (u - c) equals the definition", F, q1_g32, q2_g128,
                   q4_g64, q8_row, format<4, 32, true, half>, format<1, 32, true>) {
  for (float s : {0.5f, -1.25f, 3.0f}) {
    for (float z : {0.0f, 1.0f, 7.0f}) {
      for (unsigned u = 0; u <= F::code_max; ++u) {
        const double def = F::zero_point ? s * (double(u) - z) : s * double(F::symmetric_value(u));
        const double affine = double(F::affine_a(s)) * (double(u) - F::affine_c(z));
        CHECK(affine == def);
      }
    }
  }
}

TEST_CASE("format: visit_format reaches every format and only those") {
  int visited = 0;
  for (const auto& d : aplq_test::all_formats()) {
    const status s = visit_format(d, [&](auto f) {
      const format_desc back = describe<decltype(f)>();
      CHECK(back.bits == d.bits);
      CHECK(back.group == d.group);
      CHECK(back.zero_point == d.zero_point);
      CHECK(back.scale == d.scale);
      CHECK(back.layout == d.layout);
      ++visited;
      return status::ok;
    });
    CHECK(s == status::ok);
  }
  CHECK(visited == 160);
  auto never = [](auto) { return status::internal_error; };
  CHECK(visit_format({0, 32}, never) == status::unsupported_format);
  CHECK(visit_format({3, 32}, never) == status::unsupported_format);
  CHECK(visit_format({16, 32}, never) == status::unsupported_format);
  CHECK(visit_format({4, 16}, never) == status::unsupported_format);
  CHECK(visit_format({4, 512}, never) == status::unsupported_format);
  CHECK(visit_format({4, -1}, never) == status::unsupported_format);
  CHECK(visit_format({4, 32, false, static_cast<scale_kind>(2)}, never) ==
        status::unsupported_format);
  CHECK(visit_format({4, 32, false, scale_kind::f32, static_cast<layout_kind>(2)}, never) ==
        status::unsupported_format);
}

TEST_CASE("format: names carry the configuration") {
  CHECK(std::string(name_of<q4_g128>().c_str()) == "q4_g128_seq");
  CHECK(std::string(name_of<format<2, whole_row, true, half, layout::cpu_striped>>().c_str()) ==
        "q2_row_z_f16_s32");
  CHECK(std::string(name_of(format_desc{8, 256, false, scale_kind::f16}).c_str()) ==
        "q8_g256_f16_seq");
}

TEST_CASE("status: every code has its own message") {
  for (int c = 0; c >= -10; --c)
    for (int d = c - 1; d >= -10; --d)
      CHECK(std::string(status_string(static_cast<status>(c))) !=
            status_string(static_cast<status>(d)));
  CHECK(std::string(status_string(static_cast<status>(-99))) == "unknown status");
}
