// SPDX-License-Identifier: Apache-2.0
// Quantization: each code is the nearest one under the stored scale and zero point, the scale
// rules are the documented ones, a custom quantizer plugs in, and bad input (NaN/Inf, sizes,
// scale overflow) is a status with nothing lost.
#include "testing.hpp"

#include <limits>

using namespace aplq;
using namespace aplq_test;

namespace {

// Checks every weight of q against w: no other code of the same group is closer.
template <class F>
void check_nearest(const std::vector<float>& w, const qmatrix<F>& q) {
  const auto v = q.view();
  bool nearest = true;
  index_t bad = -1;
  for (index_t r = 0; r < v.rows && nearest; ++r) {
    for (index_t j = 0; j < v.cols && nearest; ++j) {
      const index_t g = r * v.groups() + j / F::group_size(v.cols);
      const double s = to_float(v.scales[g]);
      const double z = F::zero_point ? to_float(v.zeros[g]) : 0.0;
      const double target = w[r * v.cols + j];
      const double err = std::fabs(ref::weight(v, r, j) - target);
      for (unsigned u = 0; u <= F::code_max; ++u) {
        const double alt = F::zero_point ? s * (u - z) : s * F::symmetric_value(u);
        if (std::fabs(alt - target) < err * (1 - 1e-6) - 1e-30) {
          nearest = false;
          bad = r * v.cols + j;
        }
      }
    }
  }
  INFO("first weight with a closer code: ", bad);
  CHECK(nearest);
}

} // namespace

TEST_CASE("quantize: every weight gets its nearest code, for every format") {
  std::uint64_t salt = 500;
  for (const auto& d : all_formats()) {
    ++salt;
    visit_format(d, [&](auto f) {
      using F = decltype(f);
      if constexpr (F::bits == 1 && !F::zero_point) {
        return status::ok; // sign codes: checked separately below
      } else {
        rng r(salt);
        const auto w = r.normal(3 * 300, 0.5f, 2.0f);
        qmatrix<F> q;
        const std::string where = std::string(name_of<F>().c_str()) + " " + seed_note();
        INFO(where);
        REQUIRE(quantize<F>(w.data(), 3, 300, q) == status::ok);
        check_nearest(w, q);
        return status::ok;
      }
    });
  }
}

TEST_CASE("quantize: the documented scale rules") {
  // Symmetric: the largest magnitude maps to the most negative code.
  {
    const std::vector<float> w = {0.5f, -3.0f, 1.0f, 2.9f};
    qmatrix<format<4, whole_row>> q;
    REQUIRE(quantize(w.data(), 1, 4, q) == status::ok);
    CHECK(q.scales()[0] == -3.0f / -8.0f);
    CHECK(ref::weight(q.view(), 0, 1) == -3.0);
    CHECK(ref::get_code<format<4, whole_row>>(q.codes().data(), 3) == 15); // 2.9/0.375 clamps at 7
  }
  // 1-bit: signs and the mean magnitude.
  {
    const std::vector<float> w = {0.5f, -1.5f, 2.0f, 0.0f};
    qmatrix<q1_row> q;
    REQUIRE(quantize(w.data(), 1, 4, q) == status::ok);
    CHECK(q.scales()[0] == 1.0f);
    CHECK(ref::weight(q.view(), 0, 0) == 1.0);
    CHECK(ref::weight(q.view(), 0, 1) == -1.0);
    CHECK(ref::weight(q.view(), 0, 3) == 1.0);
  }
  // Zero point: zero is exactly representable, and the range is covered.
  {
    const std::vector<float> w = {0.25f, 1.0f, 3.0f, 0.0f};
    qmatrix<format<2, whole_row, true>> q;
    REQUIRE(quantize(w.data(), 1, 4, q) == status::ok);
    CHECK(q.scales()[0] == 1.0f);
    CHECK(q.zeros()[0] == 0.0f);
    CHECK(ref::weight(q.view(), 0, 3) == 0.0);
    CHECK(ref::weight(q.view(), 0, 2) == 3.0);
  }
  // An all-zero group quantizes to zeros.
  {
    const std::vector<float> w(40, 0.0f);
    qmatrix<q4_g32> q;
    REQUIRE(quantize(w.data(), 1, 40, q) == status::ok);
    for (index_t j = 0; j < 40; ++j)
      CHECK(ref::weight(q.view(), 0, j) == 0.0);
  }
}

namespace {
// A quantizer that always picks scale 1: the customization point in its simplest form.
struct unit_scale {
  template <class F>
  group_params operator()(F, const float*, index_t) const noexcept {
    return {1.0f, 0.0f};
  }
};
} // namespace

TEST_CASE("quantize: a custom quantizer chooses the scales") {
  const std::vector<float> w = {0.4f, -2.6f, 3.0f, 9.0f};
  qmatrix<q4_g32> q;
  REQUIRE(quantize(w.data(), 1, 4, q, unit_scale{}) == status::ok);
  CHECK(q.scales()[0] == 1.0f);
  CHECK(ref::weight(q.view(), 0, 0) == 0.0);
  CHECK(ref::weight(q.view(), 0, 1) == -3.0);
  CHECK(ref::weight(q.view(), 0, 3) == 7.0); // clamped
}

TEST_CASE("quantize: bad input is a status and the output is left alone") {
  using F = format<4, 32, false, half>;
  std::vector<float> w(64, 1.0f);
  qmatrix<F> q;
  REQUIRE(q.reset(2, 32) == status::ok);
  std::fill(q.codes().begin(), q.codes().end(), std::uint8_t{0x3c});
  const auto before = q.codes();

  w[17] = std::numeric_limits<float>::quiet_NaN();
  CHECK(quantize<F>(w.data(), 2, 32, q.span()) == status::non_finite);
  w[17] = std::numeric_limits<float>::infinity();
  CHECK(quantize<F>(w.data(), 2, 32, q.span()) == status::non_finite);
  CHECK(q.codes() == before);
  w[17] = 1.0f;
  CHECK(quantize<F>(nullptr, 2, 32, q.span()) == status::null_pointer);
  CHECK(quantize<F>(w.data(), 2, 33, q.span()) == status::invalid_shape); // shape mismatch
  CHECK(quantize<F>(w.data(), 0, 32, q.span()) == status::invalid_shape);
  auto no_scales = q.span();
  no_scales.scales = nullptr;
  CHECK(quantize<F>(w.data(), 2, 32, no_scales) == status::null_pointer);
  CHECK(q.codes() == before);
  // A scale beyond f16's range.
  w[3] = 1e9f;
  CHECK(quantize<F>(w.data(), 2, 32, q.span()) == status::out_of_range);
  qmatrix<F> fresh;
  CHECK(quantize<F>(w.data(), -1, 32, fresh) == status::invalid_shape);
}
