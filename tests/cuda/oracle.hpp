// SPDX-License-Identifier: Apache-2.0
// The host side of every check of the aplq::cuda kernels, shared by the cuda test suite
// (tests/cuda/*.cu) and the GPU check tool (tools/gpu-check): the data of one case (Gaussian
// weights quantized with aplq::quantize, activations for the largest batch), the oracle
// aplq::ref::gemm in double, the per-output f32 summation bound of each kernel, and the
// comparison of what a launch wrote. Host code only (no doctest, no Thrust), so both can include
// it.
#pragma once

#include <aplq/cuda/matmul.cuh>
#include <aplq/quantize.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

namespace aplq {
namespace cuda_check {

inline std::vector<float> normal(std::mt19937_64& gen, index_t n, float mean) {
  std::normal_distribution<float> d(mean, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v)
    e = d(gen);
  return v;
}

// The forward error bound of a kernel's f32 summation for output (i, r) is
//   depth * 2^-24 * sum_j |w_j x_ij| (first order); each kernel has its depth. The ones that
//   form w first start with 2 for w = a * (u - c) (two roundings).
enum class kernel { gemv_sequential, tiled, gemm };

// gemv_sequential (gemv.cuh):
//   + 16 * per_byte           the FMAs of one 16-byte chunk's partial sum
//   + ceil(chunks / 32) + 2   a lane's partial sums (its chunks, one head and one tail byte)
//   + 5                       the warp reduction.
// tiled (tiled_gemm.cuh, the tensor cores): products are exact (16-bit codes u - c or u, 16-bit
// activations or exact bf16 parts of f32 ones); a segment of S = min(group, 128) columns is a
// chain of S / 16 mma steps. One step adds 16 products to its f32 input aligned to the largest
// term and truncated (Ampere, Hopper), then truncates the sum: at most 17 + 1 units of 2^-23 of
// the terms' magnitude, so 36 * S / 16 in units of 2^-24
//   + 2                       z * sum(x) off the sums (zero points) and the scale's FMA
//   + segments + 2            the warp's total: a segment at a time (a warp's run of units may
//                             start and end inside one), counted over runs of ceil(units / 8)
//                             units (the kernel's 16 warps run ceil(units / 16))
//   + 16                      the fixed-order sum of the block's warps (at most 16)
//   + 2                       the three parts of an f32 activation.
//   Zero-point formats subtract z * sum(x) from sum(u x): their bound's magnitude is
//   sum_j |a| (|u| + |z|) |x| (magnitude_split below) instead of sum_j |w x|.
// gemm_tiles (gemm.cuh), 32-column steps:
//   + 32                      the FMAs of one step's partial sum
//   + 32                      the middle sum (at most 32 steps)
//   + ceil(steps / 32) + 1    the total, and the last middle sum added at the end.
template <class F>
double summation_depth(kernel which, index_t cols) {
  switch (which) {
  case kernel::gemv_sequential: {
    const double chunks = static_cast<double>(F::row_bytes(cols) / 16 + 1);
    return 2.0 + 16.0 * F::per_byte + std::ceil(chunks / 32.0) + 2.0 + 5.0;
  }
  case kernel::tiled: {
    const index_t unit = cuda::tiled_view<F>::unit_codes;
    const index_t seg = cuda::detail::mma_segment<F>;
    const index_t units = (cols + unit - 1) / unit;
    const double segments = std::ceil(static_cast<double>((units + 7) / 8 * unit) / seg);
    return 36.0 * static_cast<double>(seg / 16) + 2.0 + segments + 2.0 + 16.0 + 2.0;
  }
  case kernel::gemm: {
    const double steps = static_cast<double>((cols + 31) / 32);
    return 2.0 + 32.0 + 32.0 + std::ceil(steps / 32.0) + 1.0;
  }
  }
  return 0.0;
}

// The kernel a launch of cuda::gemm with n activation rows runs.
inline kernel gemm_kernel(index_t n, bool tiled) {
  if (tiled)
    return kernel::tiled;
  return n > cuda::gemv_max_n ? kernel::gemm : kernel::gemv_sequential;
}

// One case: W [m, k] quantized to F, x [max_n][k]; expect and magnitude (sum_j |w_j x_ij|)
// [max_n][m] (a batch of n uses the first n rows); for zero-point formats also magnitude_split
// (sum_j |a_j| (|u_j| + |z_j|) |x_ij|, the tiled kernel's).
template <class F>
struct gemv_case {
  qmatrix<F> q;
  std::vector<float> x;
  std::vector<double> expect;
  std::vector<double> magnitude;
  std::vector<double> magnitude_split;
  index_t max_n = 0;
};

// Activations rounded to the storage type X (float, half or bfloat16) the kernel will read.
inline float round_to(float v, float) { return v; }
inline float round_to(float v, half) { return half_to_float(float_to_half(v)); }
inline float round_to(float v, bfloat16) { return bfloat16_to_float(float_to_bfloat16(v)); }

template <class X>
std::vector<X> stored_as(const std::vector<float>& v) {
  std::vector<X> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same<X, float>::value)
      out[i] = v[i];
    else if constexpr (std::is_same<X, half>::value)
      out[i] = float_to_half(v[i]);
    else
      out[i] = float_to_bfloat16(v[i]);
  }
  return out;
}

// Fresh data for a case, or the status that stopped it. Zero-point formats see skewed weights,
// as real ones are; activations have a mean too, and are rounded to X first, so the oracle sees
// exactly what the kernel reads.
template <class F, class X = float>
status make_case(index_t m, index_t k, std::mt19937_64& gen, gemv_case<F>& c,
                 index_t max_n = cuda::gemv_max_n) {
  c.max_n = max_n;
  const std::vector<float> w = normal(gen, m * k, F::zero_point ? 0.4f : 0.0f);
  c.x = normal(gen, max_n * k, 0.2f);
  for (float& v : c.x)
    v = round_to(v, X{});
  if (status s = quantize<F>(w.data(), m, k, c.q); s != status::ok)
    return s;
  const qmatrix_view<F> host = c.q.view();
  c.expect.assign(static_cast<std::size_t>(max_n * m), 0.0);
  if (status s = ref::gemm(host, c.x.data(), max_n, c.expect.data()); s != status::ok)
    return s;
  c.magnitude.assign(c.expect.size(), 0.0);
  c.magnitude_split.assign(F::zero_point ? c.expect.size() : 0, 0.0);
  std::vector<double> wd(static_cast<std::size_t>(k)), split(F::zero_point ? wd.size() : 0);
  for (index_t r = 0; r < m; ++r) {
    for (index_t j = 0; j < k; ++j) {
      wd[j] = std::fabs(ref::weight(host, r, j));
      if constexpr (F::zero_point) {
        const index_t g = r * host.groups() + j / F::group_size(k);
        split[j] = std::fabs(static_cast<double>(to_float(host.scales[g]))) *
                   (ref::get_code<F>(host.row(r), j) +
                    std::fabs(static_cast<double>(to_float(host.zeros[g]))));
      }
    }
    for (index_t i = 0; i < max_n; ++i) {
      double mag = 0.0, mag_split = 0.0;
      for (index_t j = 0; j < k; ++j) {
        const double xv = std::fabs(static_cast<double>(c.x[i * k + j]));
        mag += wd[j] * xv;
        if constexpr (F::zero_point)
          mag_split += split[j] * xv;
      }
      c.magnitude[i * m + r] = mag;
      if constexpr (F::zero_point)
        c.magnitude_split[i * m + r] = mag_split;
    }
  }
  return status::ok;
}

// What one launch wrote into y [n * m outputs, then guard floats that were NaN before it].
struct outcome {
  std::size_t outputs = 0;
  index_t out_of_bound = 0; // outputs beyond their bound, NaN (never written) included
  index_t worst = -1;       // the one furthest beyond, or -1
  double worst_excess = 0.0;
  double rel_l2 = 0.0;
  std::size_t touched = 0; // guard floats written

  // DESIGN.md's contract for the exact path, rel-L2 <= 1e-6, is about many outputs.
  bool rel_l2_ok() const { return outputs < 30 || rel_l2 <= 1e-6; }
  bool pass() const { return worst < 0 && rel_l2_ok() && touched == 0; }
};

// Compares y with the oracle within the bound of the kernel that wrote it.
template <class F>
outcome compare(const gemv_case<F>& c, index_t n, const std::vector<float>& y, kernel which) {
  outcome o;
  const double scale = summation_depth<F>(which, c.q.cols()) * std::ldexp(1.0, -24) * 1.01;
  const std::vector<double>& magnitude =
      F::zero_point && which == kernel::tiled ? c.magnitude_split : c.magnitude;
  o.outputs = static_cast<std::size_t>(n * c.q.rows());
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < o.outputs; ++i) {
    const double err = std::fabs(static_cast<double>(y[i]) - c.expect[i]);
    num += err * err;
    den += c.expect[i] * c.expect[i];
    const double bound = scale * magnitude[i] + 1e-30;
    if (!(err <= bound)) {
      ++o.out_of_bound;
      if (o.worst < 0 || !(err - bound <= o.worst_excess)) {
        o.worst = static_cast<index_t>(i);
        o.worst_excess = err - bound;
      }
    }
  }
  o.rel_l2 = den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
  for (std::size_t i = o.outputs; i < y.size(); ++i)
    o.touched += !std::isnan(y[i]);
  return o;
}

} // namespace cuda_check
} // namespace aplq
