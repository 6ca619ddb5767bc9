// SPDX-License-Identifier: Apache-2.0
// aplq::validate: the tolerances are ordered sensibly and the quantization model matches what
// aplq::quantize does to Gaussian weights; the dispatch kernels pass on every ISA; a kernel given
// wrong scales and a quantizer using the wrong code range fail; already-quantized weights
// validate; attention blocks validate; bad arguments give a status; the report counts and prints.
#include "testing.hpp"

#include <aplq/validate.hpp>

#include <limits>
#include <sstream>
#include <stdexcept>

namespace {

using namespace aplq;
using namespace aplq_test;
namespace v = aplq::validate;

v::kernel dispatch_kernel(dispatch::isa which) {
  return {dispatch::isa_name(which),
          [which](const any_qmatrix_view& w, const float* x, index_t n, float* y,
                  const options& opt) { return dispatch::gemm(w, x, n, y, opt, which); }};
}

std::vector<v::kernel> every_isa() {
  std::vector<v::kernel> out;
  for (auto isa : available_isas())
    out.push_back(dispatch_kernel(isa));
  return out;
}

index_t scale_count(const any_qmatrix_view& w) {
  return w.rows *
         (w.format.group == whole_row ? 1 : (w.cols + w.format.group - 1) / w.format.group);
}

// The best dispatch kernel, but scale i is multiplied by factor(i) (f32 scales only).
template <class Factor>
v::kernel wrong_scales(Factor factor) {
  return {"wrong-scales", [factor](const any_qmatrix_view& w, const float* x, index_t n, float* y,
                                   const options& opt) {
            if (w.format.scale != scale_kind::f32)
              return status::invalid_argument;
            const auto* s = static_cast<const float*>(w.scales);
            std::vector<float> bad(s, s + scale_count(w));
            for (std::size_t i = 0; i < bad.size(); ++i)
              bad[i] *= factor(i);
            any_qmatrix_view b = w;
            b.scales = bad.data();
            return dispatch::gemm(b, x, n, y, opt);
          }};
}

// Symmetric round to nearest over the code range of `bits` instead of the format's (a broken
// quantizer: the wrong bit width's range).
struct wrong_range_quantizer {
  int bits;
  template <class Format>
  group_params operator()(Format, const float* w, index_t n) const noexcept {
    float m = 0.0f;
    for (index_t i = 0; i < n; ++i)
      if (std::fabs(w[i]) > std::fabs(m))
        m = w[i];
    return {m / -static_cast<float>(1 << (bits - 1)), 0.0f};
  }
};

struct layer_data {
  index_t rows, cols, n;
  std::vector<float> w, x;
  layer_data(std::uint64_t salt, index_t r, index_t c, index_t batch) : rows(r), cols(c), n(batch) {
    rng g(salt);
    w = g.normal(rows * cols, 0.0f, 0.05f);
    x = g.normal(n * cols);
  }
};

} // namespace

TEST_CASE("validate/tolerances: more bits or smaller groups, smaller tolerances") {
  for (bool zp : {false, true})
    for (int g : {32, 64, 128, 256, whole_row}) {
      INFO("zero point ", zp, " group ", g);
      double prev = std::numeric_limits<double>::infinity();
      for (int bits : {1, 2, 4, 8}) {
        const double t = v::quantization_tolerance({bits, g, zp}, 4096);
        CHECK(t < prev);
        CHECK(t > 0.0);
        prev = t;
      }
    }
  for (bool zp : {false, true})
    for (int bits : {2, 4, 8}) {
      double prev = 0.0;
      for (int g : {32, 64, 128, 256, whole_row}) {
        const double t = v::quantization_tolerance({bits, g, zp}, 4096);
        CHECK(t > prev);
        prev = t;
      }
    }
  // The quantization tolerance can only hold with the seed's kernel table at 8 bits and above.
  CHECK(v::quantization_tolerance({4, 32}, 4096) > v::seed_tolerance(4));
  for (int bits : {1, 2, 4, 8}) {
    const format_desc f{bits, 128};
    const double exact = v::kernel_tolerance(f, compute::exact);
    const double int8 = v::kernel_tolerance(f, compute::int8);
    CHECK(exact <= 1e-6);
    CHECK(exact * 1000.0 <= v::seed_tolerance(bits));
    CHECK(int8 > exact);
    CHECK(int8 < 0.01);
    CHECK(v::attention_kernel_tolerance(f, compute::int8, 0, 0) > int8);
    // Fewer outputs, a wider sampling allowance; many outputs, the table's value.
    CHECK(v::kernel_tolerance(f, compute::int8, 100) >
          v::kernel_tolerance(f, compute::int8, 10000));
    CHECK(v::kernel_tolerance(f, compute::int8, 10000) > int8);
    CHECK(v::quantization_tolerance(f, 4096, 100) > v::quantization_tolerance(f, 4096, 10000));
    CHECK(v::quantization_tolerance(f, 4096, 10000) > v::quantization_tolerance(f, 4096));
  }
  // Unknown formats, policies and shapes have no tolerance (NaN: every check against it fails).
  CHECK(std::isnan(v::quantization_tolerance({3, 32}, 64)));
  CHECK(std::isnan(v::quantization_tolerance({4, 48}, 64)));
  CHECK(std::isnan(v::quantization_tolerance({4, 32}, 0)));
  CHECK(std::isnan(v::kernel_tolerance({4, 32}, static_cast<compute>(5))));
  CHECK_FALSE(v::check{std::numeric_limits<double>::quiet_NaN(), 1.0}.pass());
}

TEST_CASE("validate/tolerances: the quantization model matches aplq::quantize on Gaussian W") {
  // Weight-level relative RMS error over 512 x 1024 weights (the output rel-L2 is this, plus
  // sampling noise): the model is within 2%, except 1-bit zero point, whose model (1) is a bound.
  const index_t rows = 512, cols = 1024;
  rng g(7001);
  const auto w = g.normal(rows * cols);
  std::uint64_t salt = 0;
  for (int bits : {1, 2, 4, 8})
    for (bool zp : {false, true})
      for (int group : {32, 256, whole_row}) {
        ++salt;
        const format_desc f{bits, group, zp, salt % 2 ? scale_kind::f16 : scale_kind::f32};
        double num = 0.0, den = 0.0;
        REQUIRE(visit_format(f, [&](auto fmt) {
                  using F = decltype(fmt);
                  qmatrix<F> q;
                  if (status s = quantize<F>(w.data(), rows, cols, q); s != status::ok)
                    return s;
                  for (index_t r = 0; r < rows; ++r)
                    for (index_t j = 0; j < cols; ++j) {
                      const double d = ref::weight(q.view(), r, j) - w[r * cols + j];
                      num += d * d;
                      den += static_cast<double>(w[r * cols + j]) * w[r * cols + j];
                    }
                  return status::ok;
                }) == status::ok);
        const double measured = std::sqrt(num / den), model = v::quantization_model(f, cols);
        const std::string where = std::string(name_of(f).c_str()) + " " + seed_note();
        INFO(where, " measured ", measured, " model ", model);
        if (bits == 1 && zp) {
          CHECK(measured <= model);
          CHECK(measured >= 0.9 * model);
        } else {
          CHECK(std::fabs(measured / model - 1.0) <= 0.02);
        }
      }
}

TEST_CASE("validate/validate_layer: the dispatch kernels pass on every ISA") {
  const auto kernels = every_isa();
  REQUIRE_FALSE(kernels.empty());
  const layer_data d(7101, 37, 300, 8);
  for (int bits : {1, 2, 4, 8})
    for (bool zp : {false, true})
      for (int group : {32, whole_row}) {
        const format_desc f{bits, group, zp, group == 32 ? scale_kind::f16 : scale_kind::f32,
                            zp ? layout_kind::cpu_striped : layout_kind::sequential};
        const std::string where = std::string(name_of(f).c_str()) + " " + seed_note();
        INFO(where);
        v::layer_result r;
        REQUIRE(v::validate_layer("tails", d.w.data(), d.rows, d.cols, d.x.data(), d.n, f, kernels,
                                  r, {2}) == status::ok);
        CHECK(r.name == "tails");
        CHECK(r.rows == 37);
        CHECK(r.cols == 300);
        CHECK(r.n == 8);
        CHECK(r.has_quantization);
        CHECK(r.kernels.size() == 2 * kernels.size());
        CHECK(r.checks() == static_cast<int>(1 + 2 * kernels.size()));
        CHECK(r.quantization.tolerance ==
              v::quantization_tolerance(f, 300, v::effective_samples(37, 300, 8)));
        for (const auto& k : r.kernels) {
          INFO(k.kernel, " ", k.policy == compute::exact ? "exact" : "int8", " error ",
               k.result.error);
          CHECK(k.result.pass());
          CHECK(k.result.error >= 0.0);
        }
        INFO("quantization error ", r.quantization.error, " tolerance ", r.quantization.tolerance);
        CHECK(r.quantization.pass());
        CHECK(r.pass());
      }
}

TEST_CASE("validate/validate_layer: a kernel runs only for the formats and policies it serves") {
  v::kernel k = dispatch_kernel(dispatch::selected());
  int calls = 0;
  const v::kernel_fn inner = k.run;
  k.run = [&calls, inner](const any_qmatrix_view& w, const float* x, index_t n, float* y,
                          const options& opt) {
    ++calls;
    return inner(w, x, n, y, opt);
  };
  k.serves = [](const format_desc& f, compute p) { return f.bits <= 2 && p == compute::int8; };
  const layer_data d(7102, 33, 100, 2);
  for (int bits : {1, 4}) {
    INFO("bits ", bits, " ", seed_note());
    v::layer_result r;
    REQUIRE(v::validate_layer("served", d.w.data(), d.rows, d.cols, d.x.data(), d.n,
                              format_desc{bits, 32}, {k}, r, {1}) == status::ok);
    if (bits == 1) {
      REQUIRE(r.kernels.size() == 1);
      CHECK(r.kernels[0].policy == compute::int8);
      CHECK(r.kernels[0].result.pass());
    } else {
      CHECK(r.kernels.empty());
      CHECK(r.checks() == 1); // the quantization check alone
    }
  }
  CHECK(calls == 1);
}

TEST_CASE("validate/validate_layer: a kernel given wrong scales fails, the quantization check "
          "does not") {
  const layer_data d(7201, 37, 300, 8);
  const format_desc f{4, 32};
  const std::string where = seed_note();
  INFO(where);
  SUBCASE("every scale 2% off: both policies fail") {
    v::layer_result r;
    REQUIRE(v::validate_layer("tails", d.w.data(), d.rows, d.cols, d.x.data(), d.n, f,
                              {wrong_scales([](std::size_t i) { return i % 2 ? 1.02f : 0.98f; })},
                              r) == status::ok);
    REQUIRE(r.kernels.size() == 2);
    CHECK_FALSE(r.kernels[0].result.pass());
    CHECK_FALSE(r.kernels[1].result.pass());
    CHECK(r.kernels[0].result.error > 0.01);
    CHECK(r.quantization.pass());
    CHECK_FALSE(r.pass());
    CHECK(r.checks_passed() == 1);
  }
  SUBCASE("one scale of 370 off by 0.1%: the exact policy notices") {
    v::layer_result r;
    REQUIRE(
        v::validate_layer("tails", d.w.data(), d.rows, d.cols, d.x.data(), d.n, f,
                          {wrong_scales([](std::size_t i) { return i == 100 ? 1.001f : 1.0f; })},
                          r) == status::ok);
    REQUIRE(r.kernels.size() == 2);
    CHECK(r.kernels[0].policy == compute::exact);
    CHECK_FALSE(r.kernels[0].result.pass());
    CHECK(r.quantization.pass());
  }
}

TEST_CASE("validate/validate_quantized: weights that are already quantized") {
  using F = format<4, 64, true, half, layout::cpu_striped>;
  const layer_data d(7301, 40, 200, 6);
  qmatrix<F> q;
  REQUIRE(quantize<F>(d.w.data(), d.rows, d.cols, q) == status::ok);
  const any_qmatrix_view view = dispatch::erase(q.view());
  const auto kernels = every_isa();
  const std::string where = seed_note();
  INFO(where);

  v::layer_result with, without, fresh;
  REQUIRE(v::validate_quantized("conv", view, d.w.data(), d.x.data(), d.n, kernels, with, {2}) ==
          status::ok);
  CHECK(with.has_quantization);
  CHECK(with.pass());
  CHECK(with.format.bits == 4);
  CHECK(with.format.zero_point);
  // The same numbers as validating from the FP32 weights (same quantizer, same data).
  REQUIRE(v::validate_layer("conv", d.w.data(), d.rows, d.cols, d.x.data(), d.n, describe<F>(),
                            kernels, fresh, {2}) == status::ok);
  CHECK(with.quantization.error == fresh.quantization.error);
  REQUIRE(with.kernels.size() == fresh.kernels.size());
  for (std::size_t i = 0; i < with.kernels.size(); ++i)
    CHECK(with.kernels[i].result.error == fresh.kernels[i].result.error);

  REQUIRE(v::validate_quantized("conv", view, nullptr, d.x.data(), d.n, kernels, without) ==
          status::ok);
  CHECK_FALSE(without.has_quantization);
  CHECK(without.checks() == static_cast<int>(2 * kernels.size()));
  CHECK(without.pass());

  // A tolerance override for real weights (heavier tails than the Gaussian model).
  v::settings loose;
  loose.quantization_tolerance = 0.5;
  REQUIRE(v::validate_quantized("conv", view, d.w.data(), d.x.data(), d.n, {}, with, loose) ==
          status::ok);
  CHECK(with.quantization.tolerance == 0.5);
  CHECK(with.kernels.empty());
}

TEST_CASE("validate/validate_quantized: a quantizer using the wrong code range fails") {
  const layer_data d(7401, 64, 512, 8);
  const std::string where = seed_note();
  INFO(where);
  auto run = [&](auto fmt, int range_bits) {
    using F = decltype(fmt);
    qmatrix<F> q;
    REQUIRE(quantize<F>(d.w.data(), d.rows, d.cols, q, wrong_range_quantizer{range_bits}) ==
            status::ok);
    v::layer_result r;
    REQUIRE(v::validate_quantized("broken", dispatch::erase(q.view()), d.w.data(), d.x.data(), d.n,
                                  every_isa(), r) == status::ok);
    INFO(name_of<F>().c_str(), " with the range of ", range_bits, " bits: error ",
         r.quantization.error, " tolerance ", r.quantization.tolerance);
    for (const auto& k : r.kernels)
      CHECK(k.result.pass()); // the kernels compute these weights correctly all the same
    return r.quantization.pass();
  };
  CHECK(run(format<4, 32>{}, 4));       // the right range: passes
  CHECK_FALSE(run(format<4, 32>{}, 3)); // twice the step
  CHECK(run(format<8, 128>{}, 8));
  CHECK_FALSE(run(format<8, 128>{}, 7));
  CHECK_FALSE(run(format<2, whole_row>{}, 1)); // one level on each side
}

TEST_CASE("validate/validate_attention: the dispatch kernels pass, wrong scales fail") {
  const index_t dim = 64, heads = 4, tokens = 12;
  rng g(7501);
  const float sd = 1.0f / 8.0f;
  const auto wq = g.normal(dim * dim, 0.0f, sd), wk = g.normal(dim * dim, 0.0f, sd);
  const auto wv = g.normal(dim * dim, 0.0f, sd), wo = g.normal(dim * dim, 0.0f, sd);
  const auto x = g.normal(tokens * dim);
  const v::attention_weights w{wq.data(), wk.data(), wv.data(), wo.data()};
  const std::string where = seed_note();
  INFO(where);
  for (int bits : {2, 4, 8}) {
    const format_desc f{bits, 32};
    v::attention_result r;
    REQUIRE(v::validate_attention("attn", w, dim, heads, x.data(), tokens, f, every_isa(), r) ==
            status::ok);
    INFO("bits ", bits, " quantization ", r.quantization.error, " / ", r.quantization.tolerance);
    CHECK(r.tokens == tokens);
    CHECK(r.dim == dim);
    CHECK(r.heads == heads);
    CHECK(r.pass());
    CHECK(r.quantization.tolerance == v::attention_quantization_tolerance(f, dim, tokens, heads));
  }
  v::attention_result bad;
  REQUIRE(v::validate_attention("attn", w, dim, heads, x.data(), tokens, {4, 32},
                                {wrong_scales([](std::size_t i) { return i % 3 ? 1.0f : 1.03f; })},
                                bad) == status::ok);
  CHECK(bad.quantization.pass());
  REQUIRE(bad.kernels.size() == 2);
  CHECK_FALSE(bad.kernels[0].result.pass());
  CHECK_FALSE(bad.kernels[1].result.pass());
}

TEST_CASE("validate: bad arguments give a status and leave the result empty") {
  const layer_data d(7601, 4, 64, 2);
  const format_desc f{4, 32};
  const auto k = every_isa();
  v::layer_result r;
  auto layer = [&](const float* w, index_t rows, index_t cols, const float* x, index_t n,
                   format_desc fd, const std::vector<v::kernel>& ks, const v::settings& s = {}) {
    r.name = "stale";
    const status st = v::validate_layer("bad", w, rows, cols, x, n, fd, ks, r, s);
    if (st != status::ok) {
      CHECK(r.name.empty());
      CHECK(r.kernels.empty());
    }
    return st;
  };
  const float* w = d.w.data();
  const float* x = d.x.data();
  CHECK(layer(nullptr, 4, 64, x, 2, f, k) == status::null_pointer);
  CHECK(layer(w, 4, 64, nullptr, 2, f, k) == status::null_pointer);
  CHECK(layer(w, 0, 64, x, 2, f, k) == status::invalid_shape);
  CHECK(layer(w, 4, -1, x, 2, f, k) == status::invalid_shape);
  CHECK(layer(w, 4, 64, x, 0, f, k) == status::invalid_shape);
  CHECK(layer(w, 4, 64, x, 2, {3, 32}, k) == status::unsupported_format);
  CHECK(layer(w, 4, 64, x, 2, {4, 100}, k) == status::unsupported_format);
  CHECK(layer(w, 4, 64, x, 2, f, {{"empty", nullptr}}) == status::invalid_argument);
  v::settings bad_policy;
  bad_policy.policies = {static_cast<compute>(9)};
  CHECK(layer(w, 4, 64, x, 2, f, k, bad_policy) == status::invalid_argument);

  auto wn = d.w, xn = d.x;
  wn[5] = std::numeric_limits<float>::quiet_NaN();
  xn[70] = std::numeric_limits<float>::infinity();
  CHECK(layer(wn.data(), 4, 64, x, 2, f, k) == status::non_finite);
  CHECK(layer(w, 4, 64, xn.data(), 2, f, k) == status::non_finite);

  // A kernel's own failure is passed on; a kernel that throws is contained.
  const v::kernel refuses{"refuses", [](const any_qmatrix_view&, const float*, index_t, float*,
                                        const options&) { return status::unsupported_arch; }};
  CHECK(layer(w, 4, 64, x, 2, f, {refuses}) == status::unsupported_arch);
  const v::kernel throws{"throws",
                         [](const any_qmatrix_view&, const float*, index_t, float*,
                            const options&) -> status { throw std::runtime_error("kernel bug"); }};
  CHECK(layer(w, 4, 64, x, 2, f, {throws}) == status::internal_error);
  // A kernel that leaves outputs unwritten fails its check (NaN), not the call.
  const v::kernel lazy{"lazy", [](const any_qmatrix_view&, const float*, index_t, float*,
                                  const options&) { return status::ok; }};
  REQUIRE(layer(w, 4, 64, x, 2, f, {lazy}) == status::ok);
  CHECK(std::isnan(r.kernels[0].result.error));
  CHECK_FALSE(r.pass());

  // Already-quantized views: their own checks.
  qmatrix<format<4, 32, true>> q;
  REQUIRE(quantize<format<4, 32, true>>(w, 4, 64, q) == status::ok);
  any_qmatrix_view view = dispatch::erase(q.view());
  auto quantized = [&](const any_qmatrix_view& qv, const float* original, const float* xx) {
    return v::validate_quantized("bad", qv, original, xx, 2, k, r);
  };
  CHECK(quantized(view, w, x) == status::ok);
  any_qmatrix_view bad = view;
  bad.zeros = nullptr;
  CHECK(quantized(bad, w, x) == status::null_pointer);
  bad = view;
  bad.codes = nullptr;
  CHECK(quantized(bad, w, x) == status::null_pointer);
  bad = view;
  bad.rows = 0;
  CHECK(quantized(bad, w, x) == status::invalid_shape);
  bad = view;
  bad.format.bits = 5;
  CHECK(quantized(bad, w, x) == status::unsupported_format);
  CHECK(quantized(view, w, nullptr) == status::null_pointer);
  CHECK(quantized(view, wn.data(), x) == status::non_finite);

  // Attention blocks.
  v::attention_result a;
  const v::attention_weights aw{w, w, w, w}; // 4 x 64 floats are not enough for dim 64: unused
  CHECK(v::validate_attention("bad", aw, 64, 5, x, 2, f, k, a) == status::invalid_shape);
  CHECK(v::validate_attention("bad", aw, 64, 4, x, 0, f, k, a) == status::invalid_shape);
  CHECK(v::validate_attention("bad", {w, w, nullptr, w}, 64, 4, x, 2, f, k, a) ==
        status::null_pointer);
  CHECK(v::validate_attention("bad", aw, 64, 4, x, 2,
                              {4, 32, false, scale_kind::f32, static_cast<layout_kind>(7)}, k,
                              a) == status::unsupported_format);
  CHECK(a.name.empty());
}

TEST_CASE("validate/report: counts and the printed report") {
  const layer_data d(7701, 8, 96, 4);
  const auto k = every_isa();
  v::report rep;
  rep.notes.push_back("note: unit test");
  v::layer_result good, bad;
  REQUIRE(v::validate_layer("good-layer", d.w.data(), 8, 96, d.x.data(), 4, {8, 32}, k, good) ==
          status::ok);
  REQUIRE(v::validate_layer("bad-layer", d.w.data(), 8, 96, d.x.data(), 4, {4, 32},
                            {wrong_scales([](std::size_t) { return 1.1f; })}, bad) == status::ok);
  rep.layers.push_back(good);
  CHECK(rep.tests() == 1);
  CHECK(rep.pass());
  rep.layers.push_back(bad);
  CHECK(rep.tests() == 2);
  CHECK(rep.passed() == 1);
  CHECK_FALSE(rep.pass());
  CHECK(rep.checks() == good.checks() + 3);
  CHECK(rep.checks_passed() == good.checks() + 1);

  std::ostringstream os;
  rep.print(os);
  const std::string text = os.str();
  CHECK(text.rfind("ACCURACY VALIDATION REPORT", 0) == 0);
  CHECK(text.find("note: unit test") != std::string::npos);
  CHECK(text.find("Kernel error tolerances") != std::string::npos);
  CHECK(text.find("Quantization error tolerances") != std::string::npos);
  CHECK(text.find("good-layer") != std::string::npos);
  CHECK(text.find("FAIL kernel wrong-scales, exact") != std::string::npos);
  const std::string overall = "Overall: 1/2 tests passed (" + std::to_string(rep.checks_passed()) +
                              "/" + std::to_string(rep.checks()) + " checks)";
  CHECK(text.find(overall) != std::string::npos);
}
