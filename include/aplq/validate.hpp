// SPDX-License-Identifier: Apache-2.0
// aplq::validate: accuracy validation of quantized layers, the API that aplq-accuracy is built on
// and that user code can call. It answers the two questions DESIGN.md keeps apart, each against
// its own tolerance:
//   quantization error  rel-L2 of the quantized layer's output (the oracle aplq::ref::gemm on the
//                       quantized weights, in double) against the FP32 layer (double accumulation)
//   kernel error        rel-L2 of the kernel under test against the oracle on the same quantized
//                       weights, once per compute policy (exact, int8)
// The kernel under test is any callable with the signature of aplq::dispatch::gemm (kernel_fn),
// so the same checks serve the CPU dispatch, a GPU backend or a user's own kernel. Results go
// into a `report`, which prints the ACCURACY VALIDATION REPORT with both tolerance tables.
// Header-only, no JSON dependency, and nothing here throws: entry points return aplq::status.
//
// Tolerances (docs/accuracy.md has the measurements behind every number)
//
// Kernel error. Let u = 2^-24 (f32 rounding).
//  - exact: the kernel forms the same sum as the oracle in f32, blocked (tests/cpu/kernel.cpp
//    bounds each output by depth * u * sum_j |w_j x_j|, depth = 48 + K/1024). That bound is a
//    worst case; over many outputs the rounding errors are independent and the rel-L2 is about
//    u * sqrt(depth / 3): 2.5e-7 at K = 4096, 3.6e-7 at K = 65536. The tolerance is the design's
//    contract, 1e-6, which covers K up to 65536 with a factor of 2.8 over that model.
//  - int8: activations are rounded per 32-element chunk to x' = dx * round(x / dx), dx =
//    max|x| / 127, so x - x' is uniform in [-dx/2, dx/2] with variance dx^2 / 12, and the output
//    error sum_j w_j (x_j - x'_j) has variance sum_j w_j^2 dx^2 / 12. Against ||W x||^2 = sum_j
//    w_j^2 sigma_x^2 that is rel-L2 = sqrt(E[m^2]) / (127 sqrt(12)), m the largest |x| of 32
//    standard normals: 5.4e-3 for zero-mean Gaussian activations, whatever the bit width.
//    Activations with heavier tails than a Gaussian (real LLM activations) have a larger
//    dx / sigma_x and a larger int8 error.
//
// Quantization error, for W with i.i.d. Gaussian entries (sigma = 1 below) and activations
// independent of W: the output error (W_q - W) x has E||.||^2 = ||W_q - W||_F^2 sigma_x^2, so the
// output rel-L2 is the weights' relative RMS error, sqrt(mse), with per group of n weights:
//  - symmetric, bits >= 2 (s = M / L, M the group's max |w|, L = 2^(bits-1)): rounding to a grid
//    of step s leaves uniform noise, s^2 / 12 (Sheppard; exact to ~1e-6 for Gaussians even at a
//    step of 1.3 sigma). E[s^2] = E[M^2] / L^2, with E[M^2] for the max of n half-normals by
//    numerical integration. The element of largest magnitude is exact: factor (n - 1) / n. The
//    side opposite that element ends one step short, at (L - 1) s: weights in ((L - 1/2) s, M]
//    clamp, adding integral ((w - c)^2 - s^2/12) phi(w) dw over that interval (c = (L - 1) s;
//    closed form with the normal tail): +15% mse for q2 g32, +2.4% for q4 g32.
//  - symmetric, 1 bit (codes are signs, s = mean |w|): exactly mse = (1 - 2/pi) (n - 1) / n,
//    since sum (|w| - mean|w|)^2 = (n - 1) Var|w| in expectation and Var|w| = 1 - 2/pi.
//  - zero point, bits >= 2 (s = R / (2^bits - 1), R = max(w, 0) - min(w, 0)): s^2 / 12 again,
//    with E[R^2] ~ 2 E[A^2] + 2 E[A]^2, A = max(0, max of n normals) (the covariance of the two
//    ends, which is slightly negative, is dropped: a small overestimate).
//  - zero point, 1 bit: the grid is {0, +-R} (zero is kept exact), so nearly every weight rounds
//    to 0 and the error is that of W = 0: rel-L2 = 1 is the model, a bound (0 is a level, so no
//    weight's error exceeds |w|; measured 0.95 to 1.0). The format is not useful; the suite
//    shows it honestly.
//  - scales stored in f16 (f32) add at most a relative 2^-11 (2^-24) to a weight that sits on the
//    grid; it enters as a floor, mse += u_s^2, and matters only for groups of one weight.
// A row of K weights has full groups of min(G, K) and a tail group; the model averages their
// mse. Measured against aplq::quantize on 2M Gaussian weights (K = 300, 1024, 4096; groups 32
// to whole row), every symmetric and zero-point model is within 2% of the measured error, most
// within 0.5%.
//
// Margins. A layer's rel-L2 is a ratio of two quadratic forms in the activations, x^T dW^T dW x
// over x^T W^T W x; for random matrices each fluctuates by a relative variance of about
// 2 (1/rows + 1/cols) per activation row, so the rel-L2 fluctuates around its expectation by
// 1/sqrt(N), N = n / (1/rows + 1/cols) effective samples (predicted standard deviation of
// error / model 0.062, 0.025, 0.016 for the suite's 37x300 n8, 256x1024 n8, 4096x4096 n2;
// measured 0.055 to 0.064, 0.023 to 0.025, 0.011; int8 up to 1.13 times that). Tolerance =
// model * (1.05 + 5 / sqrt(N)) for the quantization error and model * (1.05 + 6 / sqrt(N)) for
// the int8 kernel error: 5% for the models' approximations plus five standard deviations. A
// quantizer that uses the code range of the next lower bit width doubles s and the error, and
// fails once N exceeds about 100. The tables print the limit of many samples.
//
// Attention blocks (x [T, d] -> q, k, v projections, per-head causal softmax(q k^T / sqrt(dh)) v,
// o projection): the four projections' independent errors add in quadrature, the v and o errors
// in full and the q and k errors damped by the softmax (factor gamma <= 1 for unit-variance
// scores), so the block's relative error is at most sqrt(2 + 2 gamma^2) <= 2 times one
// projection's (measured: 1.78, i.e. gamma = 0.76, for both errors at 2 to 8 bits). Block
// tolerances are 2 times the layer model, with the margin for N = T * heads samples (the softmax
// rows; fewer than the measured spread implies, so the margin is on the safe side).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <new>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cpu/kernel.hpp"
#include "quantize.hpp"
#include "ref.hpp"
#include "visit.hpp"

namespace aplq {
namespace validate {

// ---------------------------------------------------------------------------------------------
// Tolerances

// Margins: model * (allowance + sigmas / sqrt(N)) for N effective samples (file comment).
inline constexpr double model_allowance = 1.05;
inline constexpr double quantization_sigmas = 5.0;
inline constexpr double int8_sigmas = 6.0; // the int8 error fluctuates 1.2 times as much
// The exact policy's tolerance: DESIGN.md's contract.
inline constexpr double exact_kernel_tolerance = 1e-6;
// Attention blocks: both models are this factor times the layer model.
inline constexpr double attention_factor = 2.0;

// The effective number of independent samples behind the rel-L2 of a [rows, cols] layer over n
// activation rows: n / (1/rows + 1/cols).
inline double effective_samples(index_t rows, index_t cols, index_t n) noexcept {
  if (rows <= 0 || cols <= 0 || n <= 0)
    return 0.0;
  const double r = static_cast<double>(rows), c = static_cast<double>(cols);
  return static_cast<double>(n) * r * c / (r + c);
}

// The margin over a model for a rel-L2 over `samples` effective samples (<= 0: the limit of
// many).
inline double margin(double sigmas, double samples) noexcept {
  return samples > 0.0 ? model_allowance + sigmas / std::sqrt(samples) : model_allowance;
}

// The kernel-error table of the tool set users migrate from, printed for comparison.
inline double seed_tolerance(int bits) noexcept {
  switch (bits) {
  case 1: return 0.05;
  case 2: return 0.01;
  case 4: return 0.005;
  case 8: return 0.001;
  default: return std::numeric_limits<double>::quiet_NaN();
  }
}

// ||a - b|| / ||b|| in double (the absolute norm when b is zero).
template <class A>
double rel_l2(const std::vector<A>& a, const std::vector<double>& b) noexcept {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

namespace detail {

inline bool known_format(const format_desc& f) noexcept {
  return visit_format(f, [](auto) { return status::ok; }) == status::ok;
}

// P(Z > t) and the density of a standard normal Z.
inline double normal_tail(double t) noexcept { return 0.5 * std::erfc(t / std::sqrt(2.0)); }
inline double normal_pdf(double t) noexcept {
  return std::exp(-0.5 * t * t) / std::sqrt(2.0 * 3.14159265358979323846);
}

// E[X^k] = integral_0^inf k t^(k-1) P(X > t) dt for X >= 0, by Simpson's rule on [0, 16] with
// step 1/64 (exact to ~1e-9 for the tails below; beyond 16 they are zero in double).
template <class Tail>
double moment(const Tail& tail, int k) noexcept {
  const int steps = 1024;
  const double h = 16.0 / steps;
  double sum = 0.0;
  for (int i = 0; i <= steps; ++i) {
    const double t = i * h;
    const double f = (k == 1 ? 1.0 : k * std::pow(t, k - 1)) * tail(t);
    sum += f * (i == 0 || i == steps ? 1.0 : (i % 2 ? 4.0 : 2.0));
  }
  return sum * h / 3.0;
}

// X = the largest of n |N(0,1)|: P(X > t) = 1 - (1 - 2Q(t))^n, computed without cancellation.
inline double max_abs_moment(index_t n, int k) noexcept {
  return moment(
      [n](double t) {
        return -std::expm1(static_cast<double>(n) * std::log1p(-2.0 * normal_tail(t)));
      },
      k);
}

// X = max(0, the largest of n N(0,1)): P(X > t) = 1 - (1 - Q(t))^n for t >= 0.
inline double max_pos_moment(index_t n, int k) noexcept {
  return moment(
      [n](double t) { return -std::expm1(static_cast<double>(n) * std::log1p(-normal_tail(t))); },
      k);
}

// Mean squared error per weight (weights ~ N(0, 1)) of round-to-nearest quantization in a group
// of n weights, without the scale-storage floor. See the file comment for the derivation.
inline double group_mse(int bits, bool zero_point, index_t n) noexcept {
  if (n <= 1)
    return 0.0; // a lone weight is a grid point (up to the scale's own rounding)
  const double nn = static_cast<double>(n);
  if (!zero_point && bits == 1)
    return (1.0 - 2.0 / 3.14159265358979323846) * (nn - 1.0) / nn;
  if (zero_point && bits == 1)
    return 1.0;
  if (zero_point) {
    const double a1 = max_pos_moment(n, 1), a2 = max_pos_moment(n, 2);
    const double steps = static_cast<double>((1 << bits) - 1);
    return (2.0 * a2 + 2.0 * a1 * a1) / (steps * steps) / 12.0;
  }
  const double levels = static_cast<double>(1 << (bits - 1)); // L
  const double s2 = max_abs_moment(n, 2) / (levels * levels);
  const double s = std::sqrt(s2);
  // Weights in (t, m] on the side opposite the largest clamp to c: integral_t^m (w - c)^2 phi dw
  // = G(t) - G(m) with G(a) = (1 + c^2) Q(a) + (a - 2c) phi(a), less the s^2/12 the uniform model
  // already counts there. m = L s, the group's largest magnitude: no weight lies beyond it.
  const double t = (levels - 0.5) * s, c = (levels - 1.0) * s, m = levels * s;
  auto g = [c](double a) { return (1.0 + c * c) * normal_tail(a) + (a - 2.0 * c) * normal_pdf(a); };
  const double clamp = g(t) - g(m) - s2 / 12.0 * (normal_tail(t) - normal_tail(m));
  return s2 / 12.0 * (nn - 1.0) / nn + (clamp > 0.0 ? clamp : 0.0);
}

// Relative error of a stored scale: half an ulp of f16 or f32, doubled for the quotient it is.
inline double scale_rounding(scale_kind s) noexcept {
  return s == scale_kind::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -24);
}

} // namespace detail

// The model: expected rel-L2 quantization error of a [rows, cols] layer with Gaussian weights
// and activations, for format f (no margin). NaN for a format aplq does not have or cols <= 0.
inline double quantization_model(const format_desc& f, index_t cols) noexcept {
  if (cols <= 0 || !detail::known_format(f))
    return std::numeric_limits<double>::quiet_NaN();
  const index_t g = f.group == whole_row || f.group > cols ? cols : index_t{f.group};
  const index_t full = cols / g, tail = cols % g;
  double mse = static_cast<double>(full * g) * detail::group_mse(f.bits, f.zero_point, g);
  if (tail > 0)
    mse += static_cast<double>(tail) * detail::group_mse(f.bits, f.zero_point, tail);
  mse /= static_cast<double>(cols);
  const double u = detail::scale_rounding(f.scale);
  return std::sqrt(mse + u * u);
}

// Quantization-error tolerance (rel-L2 vs FP32) of a layer with `cols` input columns and Gaussian
// weights, measured over `samples` effective samples (effective_samples(rows, cols, n); <= 0:
// the limit of many, as the tables print). cols matters for whole-row groups, for groups wider
// than a row and for the tail group of a row.
inline double quantization_tolerance(const format_desc& f, index_t cols,
                                     double samples = 0.0) noexcept {
  return margin(quantization_sigmas, samples) * quantization_model(f, cols);
}

// The int8 policy's model: rel-L2 of rounding zero-mean Gaussian activations per 32-element
// chunk to 255 levels, sqrt(E[m^2]) / (127 sqrt(12)).
inline double int8_model() noexcept {
  return std::sqrt(detail::max_abs_moment(32, 2)) / (127.0 * std::sqrt(12.0));
}

// Kernel-error tolerance (rel-L2 vs the oracle on the same quantized weights), K <= 65536, over
// `samples` effective samples (<= 0: many). NaN for an unknown format or policy.
inline double kernel_tolerance(const format_desc& f, compute policy,
                               double samples = 0.0) noexcept {
  if (!detail::known_format(f))
    return std::numeric_limits<double>::quiet_NaN();
  switch (policy) {
  case compute::exact: return exact_kernel_tolerance;
  case compute::int8: return margin(int8_sigmas, samples) * int8_model();
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// The same two tolerances for an attention block of width `dim`, `tokens` tokens and `heads`
// heads (<= 0: many).
inline double attention_quantization_tolerance(const format_desc& f, index_t dim, index_t tokens,
                                               index_t heads) noexcept {
  return attention_factor * quantization_tolerance(f, dim, static_cast<double>(tokens * heads));
}
inline double attention_kernel_tolerance(const format_desc& f, compute policy, index_t tokens,
                                         index_t heads) noexcept {
  if (policy == compute::exact)
    return attention_factor * kernel_tolerance(f, policy);
  return attention_factor * kernel_tolerance(f, policy, static_cast<double>(tokens * heads));
}

// ---------------------------------------------------------------------------------------------
// Results

// One error against one tolerance. NaN (a kernel that wrote NaN, or left outputs unwritten)
// fails.
struct check {
  double error = std::numeric_limits<double>::quiet_NaN();
  double tolerance = 0.0;
  bool pass() const noexcept { return error <= tolerance; }
};

// The kernel error of one kernel under one compute policy.
struct kernel_check {
  std::string kernel; // the kernel's name ("avx2", "cuda", ...)
  compute policy = compute::exact;
  check result;
};

// What every result has: the quantization check (when an FP32 original was given) and the
// kernel checks, and whether they all pass.
struct result_base {
  std::string name;
  format_desc format;
  bool has_quantization = false; // false: no FP32 original, no quantization check
  double quantization_model = 0; // the model behind the quantization tolerance (0: override)
  check quantization;
  std::vector<kernel_check> kernels;

  int checks() const noexcept { return static_cast<int>(kernels.size()) + has_quantization; }
  int checks_passed() const noexcept {
    int n = has_quantization && quantization.pass();
    for (const auto& k : kernels)
      n += k.result.pass();
    return n;
  }
  bool pass() const noexcept { return checks_passed() == checks(); }
  // The largest error over the kernels for one policy (NaN beats everything; -1: none ran).
  double worst_kernel_error(compute policy) const noexcept {
    double worst = -1.0;
    for (const auto& k : kernels)
      if (k.policy == policy) {
        if (std::isnan(k.result.error))
          return k.result.error;
        worst = std::max(worst, k.result.error);
      }
    return worst;
  }
};

// One layer y = W x: W [rows, cols], n activation rows.
struct layer_result : result_base {
  index_t rows = 0, cols = 0, n = 0;
};

// One attention block: x [tokens, dim], `heads` heads, four [dim, dim] projections.
struct attention_result : result_base {
  index_t tokens = 0, dim = 0, heads = 0;
};

// ---------------------------------------------------------------------------------------------
// The kernel under test

// Computes Y [n][w.rows] = X [n][w.cols] W^T as aplq::dispatch::gemm does. It must honour
// opt.policy (and may use opt.threads).
using kernel_fn = std::function<status(const any_qmatrix_view& w, const float* x, index_t n,
                                       float* y, const options& opt)>;

// serves: the formats and policies the kernel computes (a kernel made for some of them, such as
// the table lookup of 1- and 2-bit formats); empty means every one.
struct kernel {
  using serves_fn = std::function<bool(const format_desc&, compute)>;
  kernel() = default;
  kernel(std::string name_, kernel_fn run_, serves_fn serves_ = {})
      : name(std::move(name_)), run(std::move(run_)), serves(std::move(serves_)) {}

  std::string name;
  kernel_fn run;
  serves_fn serves;
  bool runs(const format_desc& f, compute p) const { return !serves || serves(f, p); }
};

struct settings {
  int threads = 1; // passed to the kernels in options::threads
  std::vector<compute> policies{compute::exact, compute::int8};
  // > 0: use this quantization tolerance instead of the Gaussian-weight one (for real weights,
  // whose heavier tails give larger errors than the model's); attention_factor times it for
  // attention blocks.
  double quantization_tolerance = 0.0;
};

namespace detail {

inline bool all_finite(const float* v, index_t n) noexcept {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      return false;
  return true;
}

inline status check_arguments(const std::vector<kernel>& kernels, const settings& s) noexcept {
  for (const auto& k : kernels)
    if (!k.run)
      return status::invalid_argument;
  for (compute p : s.policies)
    if (p != compute::exact && p != compute::int8)
      return status::invalid_argument;
  return status::ok;
}

// Y [n][rows] = X [n][cols] W^T in double, W in FP32.
inline void fp32_gemm(const float* w, index_t rows, index_t cols, const float* x, index_t n,
                      double* y) noexcept {
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < rows; ++r) {
      double sum = 0.0;
      const float* wr = w + r * cols;
      const float* xi = x + i * cols;
      for (index_t j = 0; j < cols; ++j)
        sum += static_cast<double>(wr[j]) * static_cast<double>(xi[j]);
      y[i * rows + r] = sum;
    }
}

template <class F>
any_qmatrix_view erase(const qmatrix_view<F>& v) noexcept {
  return {describe<F>(), v.codes, v.scales, v.zeros, v.rows, v.cols};
}

// Runs one kernel under one policy; y is poisoned first so that outputs it never writes fail.
inline status run_kernel(const kernel& k, const any_qmatrix_view& w, const float* x, index_t n,
                         compute policy, int threads, std::vector<float>& y) {
  y.assign(static_cast<std::size_t>(n * w.rows), std::numeric_limits<float>::quiet_NaN());
  options opt;
  opt.threads = threads;
  opt.policy = policy;
  return k.run(w, x, n, y.data(), opt);
}

// The checks of one layer on typed quantized weights q (original: the FP32 W, or null).
template <class F>
status check_layer(const qmatrix_view<F>& q, const float* original, const float* x, index_t n,
                   const std::vector<kernel>& kernels, const settings& s, layer_result& out) {
  const format_desc f = describe<F>();
  const double samples = effective_samples(q.rows, q.cols, n);
  out.format = f;
  out.rows = q.rows;
  out.cols = q.cols;
  out.n = n;
  std::vector<double> y_ref(static_cast<std::size_t>(n * q.rows)); // [n][rows], the oracle
  if (status st = ref::gemm(q, x, n, y_ref.data()); st != status::ok)
    return st;
  out.has_quantization = original != nullptr;
  if (original != nullptr) {
    std::vector<double> y_fp(y_ref.size()); // [n][rows], the FP32 layer
    fp32_gemm(original, q.rows, q.cols, x, n, y_fp.data());
    out.quantization_model = s.quantization_tolerance > 0.0 ? 0.0 : quantization_model(f, q.cols);
    out.quantization.error = rel_l2(y_ref, y_fp);
    out.quantization.tolerance = s.quantization_tolerance > 0.0
                                     ? s.quantization_tolerance
                                     : quantization_tolerance(f, q.cols, samples);
  }
  const any_qmatrix_view erased = erase(q);
  std::vector<float> y;
  for (const auto& k : kernels)
    for (compute p : s.policies) {
      if (!k.runs(f, p))
        continue;
      if (status st = run_kernel(k, erased, x, n, p, s.threads, y); st != status::ok)
        return st;
      out.kernels.push_back({k.name, p, {rel_l2(y, y_ref), kernel_tolerance(f, p, samples)}});
    }
  return status::ok;
}

// Turns what escapes the standard library into a status (nothing leaves include/aplq).
template <class Body>
status guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return status::out_of_memory;
  } catch (...) {
    return status::internal_error; // a kernel_fn that threw
  }
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Entry points

// Validates one layer from its FP32 weights: quantizes w [rows][cols] to format f (aplq::quantize,
// round to nearest), runs the oracle on the quantized weights and every kernel under every policy
// of `s` on x [n][cols], and fills `out` (replacing what it held). Bad arguments give a status
// and leave `out` empty: null_pointer, invalid_shape, unsupported_format, non_finite (NaN/Inf in
// w or x), invalid_argument (an empty kernel_fn, an unknown policy); a kernel's own non-ok status
// is returned as is.
inline status validate_layer(std::string name, const float* w, index_t rows, index_t cols,
                             const float* x, index_t n, const format_desc& f,
                             const std::vector<kernel>& kernels, layer_result& out,
                             const settings& s = {}) noexcept {
  return detail::guarded([&]() -> status {
    out = layer_result{};
    if (rows <= 0 || cols <= 0 || n <= 0)
      return status::invalid_shape;
    if (w == nullptr || x == nullptr)
      return status::null_pointer;
    if (status st = detail::check_arguments(kernels, s); st != status::ok)
      return st;
    if (!detail::all_finite(x, n * cols))
      return status::non_finite;
    layer_result r;
    r.name = std::move(name);
    const status st = visit_format(f, [&](auto fmt) -> status {
      using F = decltype(fmt);
      qmatrix<F> q;
      if (status e = quantize<F>(w, rows, cols, q); e != status::ok)
        return e;
      return detail::check_layer(q.view(), w, x, n, kernels, s, r);
    });
    if (st == status::ok)
      out = std::move(r);
    return st;
  });
}

// Validates one layer whose weights are already quantized (a converted model): the kernel error
// always, the quantization error when `original` (the FP32 W [w.rows][w.cols]) is given (else
// null). Statuses as validate_layer, plus those of w's own checks.
inline status validate_quantized(std::string name, const any_qmatrix_view& w, const float* original,
                                 const float* x, index_t n, const std::vector<kernel>& kernels,
                                 layer_result& out, const settings& s = {}) noexcept {
  return detail::guarded([&]() -> status {
    out = layer_result{};
    if (w.rows <= 0 || w.cols <= 0 || n <= 0)
      return status::invalid_shape;
    if (x == nullptr)
      return status::null_pointer;
    if (status st = detail::check_arguments(kernels, s); st != status::ok)
      return st;
    if (!detail::all_finite(x, n * w.cols) ||
        (original != nullptr && !detail::all_finite(original, w.rows * w.cols)))
      return status::non_finite;
    layer_result r;
    r.name = std::move(name);
    const status st = visit_format(w.format, [&](auto fmt) -> status {
      using F = decltype(fmt);
      using scale_type = typename F::scale_type;
      const qmatrix_view<F> q{static_cast<const std::uint8_t*>(w.codes),
                              static_cast<const scale_type*>(w.scales),
                              static_cast<const scale_type*>(w.zeros), w.rows, w.cols};
      if (status e = q.validate(); e != status::ok)
        return e;
      return detail::check_layer(q, original, x, n, kernels, s, r);
    });
    if (st == status::ok)
      out = std::move(r);
    return st;
  });
}

// The four projections of an attention block, each W [dim][dim] in FP32 (out x in).
struct attention_weights {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* o = nullptr;
};

namespace detail {

// Per-head causal attention: o [t][d] = sum_{j <= t} softmax_j(q_t . k_j / sqrt(dh)) v_j, all in
// double from the projections' outputs; the result is rounded to float, the o projection's input.
template <class Q>
void attend(const std::vector<Q>& q, const std::vector<Q>& k, const std::vector<Q>& v,
            index_t tokens, index_t dim, index_t heads, std::vector<float>& out) {
  const index_t dh = dim / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  out.assign(static_cast<std::size_t>(tokens * dim), 0.0f);
  std::vector<double> p(static_cast<std::size_t>(tokens)), acc(static_cast<std::size_t>(dh));
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < tokens; ++t) {
      double top = -std::numeric_limits<double>::infinity();
      for (index_t j = 0; j <= t; ++j) {
        double dot = 0.0;
        for (index_t i = h * dh; i < (h + 1) * dh; ++i)
          dot += static_cast<double>(q[t * dim + i]) * static_cast<double>(k[j * dim + i]);
        p[j] = dot * scale;
        top = std::max(top, p[j]);
      }
      double sum = 0.0;
      for (index_t j = 0; j <= t; ++j)
        sum += p[j] = std::exp(p[j] - top);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (index_t j = 0; j <= t; ++j)
        for (index_t i = 0; i < dh; ++i)
          acc[i] += p[j] / sum * static_cast<double>(v[j * dim + h * dh + i]);
      for (index_t i = 0; i < dh; ++i)
        out[t * dim + h * dh + i] = static_cast<float>(acc[i]);
    }
}

template <class F>
status check_attention(const attention_weights& w, index_t dim, index_t heads, const float* x,
                       index_t tokens, const std::vector<kernel>& kernels, const settings& s,
                       attention_result& out) {
  const format_desc f = describe<F>();
  out.format = f;
  out.tokens = tokens;
  out.dim = dim;
  out.heads = heads;
  const float* fp[4] = {w.q, w.k, w.v, w.o};
  qmatrix<F> qm[4];
  for (int i = 0; i < 4; ++i)
    if (status st = quantize<F>(fp[i], dim, dim, qm[i]); st != status::ok)
      return st;
  const std::size_t size = static_cast<std::size_t>(tokens * dim);

  // The FP32 block and the oracle's block (double accumulation throughout).
  std::vector<double> proj_fp[3], proj_ref[3], y_fp(size), y_ref(size);
  for (int i = 0; i < 3; ++i) {
    proj_fp[i].resize(size);
    proj_ref[i].resize(size);
    fp32_gemm(fp[i], dim, dim, x, tokens, proj_fp[i].data());
    if (status st = ref::gemm(qm[i].view(), x, tokens, proj_ref[i].data()); st != status::ok)
      return st;
  }
  std::vector<float> att;
  attend(proj_fp[0], proj_fp[1], proj_fp[2], tokens, dim, heads, att);
  fp32_gemm(w.o, dim, dim, att.data(), tokens, y_fp.data());
  attend(proj_ref[0], proj_ref[1], proj_ref[2], tokens, dim, heads, att);
  if (status st = ref::gemm(qm[3].view(), att.data(), tokens, y_ref.data()); st != status::ok)
    return st;
  out.has_quantization = true;
  out.quantization_model = quantization_model(f, dim) * attention_factor;
  out.quantization.error = rel_l2(y_ref, y_fp);
  out.quantization.tolerance = s.quantization_tolerance > 0.0
                                   ? attention_factor * s.quantization_tolerance
                                   : attention_quantization_tolerance(f, dim, tokens, heads);

  // The same block with every projection computed by the kernel under test.
  std::vector<float> proj[3], y;
  for (const auto& k : kernels)
    for (compute p : s.policies) {
      if (!k.runs(f, p))
        continue;
      for (int i = 0; i < 3; ++i)
        if (status st = run_kernel(k, erase(qm[i].view()), x, tokens, p, s.threads, proj[i]);
            st != status::ok)
          return st;
      attend(proj[0], proj[1], proj[2], tokens, dim, heads, att);
      if (status st = run_kernel(k, erase(qm[3].view()), att.data(), tokens, p, s.threads, y);
          st != status::ok)
        return st;
      out.kernels.push_back(
          {k.name, p, {rel_l2(y, y_ref), attention_kernel_tolerance(f, p, tokens, heads)}});
    }
  return status::ok;
}

} // namespace detail

// Validates an attention block: x [tokens][dim] -> q, k, v = x Wq^T, x Wk^T, x Wv^T (quantized to
// f), per-head causal softmax(q k^T / sqrt(dim / heads)) v, o projection (quantized). The
// quantization error compares the oracle's block with the FP32 block, the kernel error the
// block whose four projections the kernel computes with the oracle's block. heads must divide
// dim. Statuses as validate_layer.
inline status validate_attention(std::string name, const attention_weights& w, index_t dim,
                                 index_t heads, const float* x, index_t tokens,
                                 const format_desc& f, const std::vector<kernel>& kernels,
                                 attention_result& out, const settings& s = {}) noexcept {
  return detail::guarded([&]() -> status {
    out = attention_result{};
    if (dim <= 0 || heads <= 0 || tokens <= 0 || dim % heads != 0)
      return status::invalid_shape;
    if (w.q == nullptr || w.k == nullptr || w.v == nullptr || w.o == nullptr || x == nullptr)
      return status::null_pointer;
    if (status st = detail::check_arguments(kernels, s); st != status::ok)
      return st;
    if (!detail::all_finite(x, tokens * dim))
      return status::non_finite;
    attention_result r;
    r.name = std::move(name);
    const status st = visit_format(f, [&](auto fmt) -> status {
      return detail::check_attention<decltype(fmt)>(w, dim, heads, x, tokens, kernels, s, r);
    });
    if (st == status::ok)
      out = std::move(r);
    return st;
  });
}

// ---------------------------------------------------------------------------------------------
// The report

struct report {
  std::vector<std::string> notes; // printed under the title: run context (seed, kernels, ...)
  std::vector<layer_result> layers;
  std::vector<attention_result> attention;
  index_t table_cols = 4096; // K of the whole-row column in the quantization tolerance table

  // A test is one layer or block; it passes when all of its checks do.
  int tests() const noexcept { return static_cast<int>(layers.size() + attention.size()); }
  int passed() const noexcept {
    int n = 0;
    for (const auto& l : layers)
      n += l.pass();
    for (const auto& a : attention)
      n += a.pass();
    return n;
  }
  int checks() const noexcept { return count(&result_base::checks); }
  int checks_passed() const noexcept { return count(&result_base::checks_passed); }
  bool pass() const noexcept { return passed() == tests(); }

  // Prints the ACCURACY VALIDATION REPORT. Never throws: should formatting run out of memory,
  // the stream's badbit is set.
  void print(std::ostream& os) const noexcept;

private:
  int count(int (result_base::*what)() const noexcept) const noexcept {
    int n = 0;
    for (const auto& l : layers)
      n += (l.*what)();
    for (const auto& a : attention)
      n += (a.*what)();
    return n;
  }
};

namespace detail {

inline const char* policy_name(compute p) noexcept {
  return p == compute::exact ? "exact" : "int8";
}

// printf into a std::string (lines of the report).
template <class... Args>
std::string format_line(const char* fmt, Args... args) {
  const int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(static_cast<std::size_t>(n > 0 ? n : 0), '\0');
  std::snprintf(&s[0], s.size() + 1, fmt, args...);
  return s;
}

inline std::string sci(double v) {
  if (v < 0.0)
    return "-";
  return format_line("%.2e", v);
}

inline void print_results(std::ostream& os, const result_base& r, const std::string& shape,
                          int name_width) {
  const double ex = r.worst_kernel_error(compute::exact);
  const double i8 = r.worst_kernel_error(compute::int8);
  double ex_tol = -1.0, i8_tol = -1.0;
  for (const auto& k : r.kernels)
    (k.policy == compute::exact ? ex_tol : i8_tol) = k.result.tolerance;
  os << format_line("  %-*s %-16s %-18s %9s %8s  %9s %8s  %9s %8s  %s\n", name_width,
                    r.name.c_str(), shape.c_str(), name_of(r.format).c_str(),
                    r.has_quantization ? sci(r.quantization.error).c_str() : "-",
                    r.has_quantization ? sci(r.quantization.tolerance).c_str() : "-",
                    sci(ex).c_str(), sci(ex_tol).c_str(), sci(i8).c_str(), sci(i8_tol).c_str(),
                    r.pass() ? "PASS" : "FAIL");
  if (r.has_quantization && !r.quantization.pass())
    os << format_line("      FAIL quantization error %s > %s\n", sci(r.quantization.error).c_str(),
                      sci(r.quantization.tolerance).c_str());
  for (const auto& k : r.kernels)
    if (!k.result.pass())
      os << format_line("      FAIL kernel %s, %s: error %s > %s\n", k.kernel.c_str(),
                        policy_name(k.policy),
                        std::isnan(k.result.error) ? "nan" : sci(k.result.error).c_str(),
                        sci(k.result.tolerance).c_str());
}

} // namespace detail

namespace detail {

inline void print_report(const report& rep, std::ostream& os) {
  const auto& notes = rep.notes;
  const auto& layers = rep.layers;
  const auto& attention = rep.attention;
  const index_t table_cols = rep.table_cols;
  os << "ACCURACY VALIDATION REPORT\n==========================\n";
  for (const auto& n : notes)
    os << n << "\n";
  os << "\nTwo questions, never mixed (rel-L2 = ||a - b|| / ||b|| over all outputs):\n"
        "  quantization error  quantized layer (oracle, double) vs the FP32 layer\n"
        "  kernel error        kernel vs the oracle on the same quantized weights\n";

  os << "\nKernel error tolerances (rel-L2 vs the oracle; K <= 65536, zero-mean Gaussian "
        "activations)\n";
  os << format_line("  %-5s %-11s %-11s %s\n", "bits", "seed table", "aplq exact", "aplq int8");
  for (int bits : {1, 2, 4, 8}) {
    const format_desc f{bits, 128};
    os << format_line("  %-5d %-11s %-11s %s\n", bits, sci(seed_tolerance(bits)).c_str(),
                      sci(kernel_tolerance(f, compute::exact)).c_str(),
                      sci(kernel_tolerance(f, compute::int8)).c_str());
  }
  os << format_line(
      "  exact: f32 summation rounding, model 2^-24 sqrt(depth/3) <= 3.6e-7 for K <= 65536;\n"
      "  tolerance DESIGN.md's 1e-6. int8: activations rounded per 32 to max|x|/127 steps,\n"
      "  model %.2e at any bit width, x (%.2f + %.0f/sqrt(N)), N = n / (1/rows + 1/cols).\n"
      "  Both measure the kernel, not the format; the seed table is for comparison only.\n",
      int8_model(), model_allowance, int8_sigmas);

  os << format_line("\nQuantization error tolerances (rel-L2 vs FP32, Gaussian weights; model x "
                    "%.2f, the limit of\nmany samples; a layer's tolerance adds %.0f/sqrt(N) x "
                    "model)\n",
                    model_allowance, quantization_sigmas);
  os << format_line("  %-15s %9s %9s %9s %9s %11s\n", "format", "g32", "g64", "g128", "g256",
                    format_line("row(K=%lld)", static_cast<long long>(table_cols)).c_str());
  for (int bits : {1, 2, 4, 8})
    for (bool zp : {false, true}) {
      std::string line = format_line("  q%d %-12s", bits, zp ? "zero point" : "symmetric");
      for (int g : {32, 64, 128, 256, whole_row})
        line += format_line(g == whole_row ? " %11s" : " %9s",
                            sci(quantization_tolerance({bits, g, zp}, table_cols)).c_str());
      os << line << "\n";
    }
  os << format_line(
      "  symmetric >= 2 bits: uniform noise s^2/12, s = group max / 2^(b-1), plus the clamp of\n"
      "  the short side; 1 bit: (1 - 2/pi)(n-1)/n exactly; zero point: s = range / (2^b - 1);\n"
      "  1-bit zero point: W rounds to ~0, model 1 (a bound). f16 scales add <= 2^-11.\n"
      "  Attention blocks: %.0f x the layer models, N = T x heads.\n",
      attention_factor);

  // The name column fits the longest name (layer names of a converted model are long).
  std::size_t longest = 14;
  for (const auto& l : layers)
    longest = std::max(longest, l.name.size());
  for (const auto& a : attention)
    longest = std::max(longest, a.name.size());
  const int name_width = static_cast<int>(longest);
  auto header = [&](const char* what, const char* shape) {
    os << format_line("\n%s\n  %-*s %-16s %-18s %9s %8s  %9s %8s  %9s %8s  %s\n", what, name_width,
                      "name", shape, "format", "quant err", "tol", "exact err", "tol", "int8 err",
                      "tol", "result");
  };
  if (!layers.empty()) {
    header("LAYERS (kernel errors: the largest over the kernels)", "rows x cols, n");
    for (const auto& l : layers)
      detail::print_results(os, l,
                            format_line("%lldx%lld n%lld", static_cast<long long>(l.rows),
                                        static_cast<long long>(l.cols),
                                        static_cast<long long>(l.n)),
                            name_width);
  }
  if (!attention.empty()) {
    header("ATTENTION BLOCKS (q, k, v, o quantized; causal softmax in double)", "T x d, heads");
    for (const auto& a : attention)
      detail::print_results(os, a,
                            format_line("%lldx%lld h%lld", static_cast<long long>(a.tokens),
                                        static_cast<long long>(a.dim),
                                        static_cast<long long>(a.heads)),
                            name_width);
  }
  os << format_line("\nOverall: %d/%d tests passed (%d/%d checks)\n", rep.passed(), rep.tests(),
                    rep.checks_passed(), rep.checks());
}

} // namespace detail

inline void report::print(std::ostream& os) const noexcept {
  try {
    detail::print_report(*this, os);
  } catch (...) {
    os.setstate(std::ios::badbit);
  }
}

} // namespace validate
} // namespace aplq
