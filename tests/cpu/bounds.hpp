// SPDX-License-Identifier: Apache-2.0
// The CPU kernels' error bounds against aplq::ref, shared by the kernel tests (cpu/kernel.cpp,
// cpu/lut.cpp), and the helpers that check outputs element by element.
#pragma once

#include "../testing.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace aplq_test {

using namespace aplq;

// The int8 policy's error bound. The kernel multiplies the quantized weights with x' = dx * xq,
// where per 32-element chunk dx = max|x| / 127 and xq = round(x / dx), so |x - x'| <= dx / 2 and
//   |y_int8 - y_exact| <= sum_j |w_j| * dx_j / 2.
// On top comes f32 rounding of the integer sums' scaling and the zero-point correction, bounded
// by 1e-5 * sum_j |a_j| * 2^bits * (|x_j| + dx_j), where a_j is the group's affine scale.
// With rounding_only, just the f32 part: how far two f32 evaluations of the same integer dots
// (the plain int8 kernels and the table-lookup ones) may differ.
template <class F>
std::vector<double> int8_bound(const qmatrix_view<F>& w, const std::vector<float>& x, index_t n,
                               bool rounding_only = false) {
  std::vector<double> bound(static_cast<std::size_t>(n * w.rows));
  const index_t k = w.cols;
  for (index_t i = 0; i < n; ++i) {
    std::vector<double> dx(static_cast<std::size_t>(k));
    for (index_t c = 0; c < k; c += 32) {
      double amax = 0.0;
      for (index_t j = c; j < std::min(k, c + 32); ++j)
        amax = std::max(amax, std::fabs(static_cast<double>(x[i * k + j])));
      for (index_t j = c; j < std::min(k, c + 32); ++j)
        dx[j] = amax / 127.0;
    }
    for (index_t r = 0; r < w.rows; ++r) {
      double act = 0.0, rounding = 0.0;
      for (index_t j = 0; j < k; ++j) {
        const index_t g = r * w.groups() + j / F::group_size(k);
        const double a = std::fabs(F::affine_a(to_float(w.scales[g])));
        act += std::fabs(ref::weight(w, r, j)) * dx[j] / 2.0;
        rounding += a * (1 << F::bits) * (std::fabs(x[i * k + j]) + dx[j]);
      }
      bound[i * w.rows + r] = (rounding_only ? 0.0 : act) + 1e-5 * rounding + 1e-30;
    }
  }
  return bound;
}

// The exact policy's per-output bound: the forward error of the kernel's blocked f32 summation
// is at most depth * 2^-24 * sum_j |w_j x_j|, with depth
// - for the tile kernels (batch < 12): a chunk's 32/W products, up to 32 chunks per block,
//   K/1024 blocks, the lane reduction and the scaling: 48 + K/1024;
// - for the panel kernel (exact policy, batch >= 12, `panel`): w = a * (u - c) (2), a chunk's
//   32 products (32), up to 32 chunks per block (32), K/1024 blocks and the last one: 67 + K/1024;
// - or depth_of_kernel, when given.
template <class F>
std::vector<double> exact_bound(const qmatrix_view<F>& w, const std::vector<float>& x, index_t n,
                                bool panel = false, double depth_of_kernel = 0.0) {
  std::vector<double> bound(static_cast<std::size_t>(n * w.rows));
  const double depth = depth_of_kernel > 0.0
                           ? depth_of_kernel
                           : (panel ? 67.0 : 48.0) + static_cast<double>(w.cols) / 1024.0;
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < w.rows; ++r) {
      double mag = 0.0;
      for (index_t j = 0; j < w.cols; ++j)
        mag += std::fabs(ref::weight(w, r, j) * x[i * w.cols + j]);
      bound[i * w.rows + r] = depth * std::ldexp(1.0, -24) * mag + 1e-30;
    }
  return bound;
}

// The exact policy on a lut_matrix (cpu/lut.hpp): the same forward error bound as exact_bound,
// with the depth of its summation: a table entry (2), a chunk's 8 lookups per bit plane (up to 8
// additions for 1 bit, 16 for 2: the scalar tile's, one after another), up to 32 chunks per
// block, the block's scaling (1) and one addition per block into the row (for groups of up to
// 1024 columns a block is a group: K/32 of them at group 32). The parts of a weight sum to at
// most f times its size in magnitude, so the depth counts f times: 2-bit symmetric f = 3 (w = -s
// is s - 2s); with a zero point the parts are those of u - r, r the code nearest z, and
// |u - r| <= 2 |u - z|, so f = 2 for 1 bit and 6 for 2 bits. With a zero point each group's first
// block opens with (r - z) sum x, at most 1 times the group's sum |w x| / s, so the chain counts
// f + 1 times, and that term's own depth comes on top: the sum of x (8 interleaved sums per
// chunk, then chunk by chunk: 7 + chunks per group) and r - z and the product (2).
template <class F>
std::vector<double> lut_exact_bound(const qmatrix_view<F>& w, const std::vector<float>& x,
                                    index_t n) {
  const index_t chunks = (w.cols + 31) / 32;
  const index_t per_group = std::max<index_t>(1, F::group_size(w.cols) / 32);
  const index_t blocks = (chunks + per_group - 1) / per_group * ((per_group + 31) / 32);
  const double f = F::zero_point ? (F::bits == 1 ? 2.0 : 6.0) : (F::bits == 1 ? 1.0 : 3.0);
  const double chain = (F::bits == 1 ? 44.0 : 52.0) + static_cast<double>(blocks);
  const index_t group_chunks = std::min(chunks, (F::group_size(w.cols) + 31) / 32);
  return exact_bound(w, x, n, false,
                     F::zero_point ? (f + 1.0) * chain + 9.0 + static_cast<double>(group_chunks)
                                   : f * chain);
}

// The first output outside its bound (-1: none), with by how much.
template <class Y>
std::pair<index_t, double> worst_outside(const std::vector<Y>& y, const std::vector<double>& expect,
                                         const std::vector<double>& bound) {
  std::pair<index_t, double> worst{-1, 0.0};
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(static_cast<double>(y[i]) - expect[i]);
    if (!(err <= bound[i]) && (worst.first < 0 || !(err - bound[i] <= worst.second)))
      worst = {static_cast<index_t>(i), err - bound[i]};
  }
  return worst;
}

// Calls run(threads, y) for 2 and 7 threads; each must give `expect` bit for bit.
template <class Run>
void check_thread_counts(const std::vector<float>& expect, Run&& run) {
  for (int threads : {2, 7}) {
    INFO("threads=", threads);
    std::vector<float> y(expect.size(), std::numeric_limits<float>::quiet_NaN());
    REQUIRE(run(threads, y.data()) == status::ok);
    CHECK(std::memcmp(y.data(), expect.data(), y.size() * sizeof(float)) == 0);
  }
}

inline std::vector<float> poisoned(index_t n) {
  return std::vector<float>(static_cast<std::size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

} // namespace aplq_test
