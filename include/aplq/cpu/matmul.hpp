// SPDX-License-Identifier: Apache-2.0
// CPU GEMV and GEMM on the architecture this translation unit is compiled for (static dispatch:
// xsimd::default_arch, the best instruction set the compiler flags enable). For one binary that
// picks the instruction set at run time, link aplq_dispatch (aplq/dispatch.hpp).
#pragma once

#include "kernel.hpp"
#include "lut.hpp"

namespace aplq {

// y [w.rows] = W x, x [w.cols].
template <class F>
status gemv(const qmatrix_view<F>& w, const float* x, float* y, const options& opt = {}) noexcept {
  return cpu::gemv<xsimd::default_arch>(w, x, y, opt);
}

// Y [n][w.rows] = X [n][w.cols] W^T.
template <class F>
status gemm(const qmatrix_view<F>& w, const float* x, index_t n, float* y,
            const options& opt = {}) noexcept {
  return cpu::gemm<xsimd::default_arch>(w, x, n, y, opt);
}

// The table-lookup kernels of 1- and 2-bit formats on a cpu::lut_matrix (int8 policy). The
// constraint keeps a call like gemm<Arch>(qmatrix_view, ...) from instantiating lut_view<Arch>
// when argument-dependent lookup brings these overloads in.
template <class F, std::enable_if_t<is_format<F>::value, int> = 0>
status gemv(const cpu::lut_view<F>& w, const float* x, float* y,
            const options& opt = {1, compute::int8}) noexcept {
  return cpu::gemv<xsimd::default_arch>(w, x, y, opt);
}
template <class F, std::enable_if_t<is_format<F>::value, int> = 0>
status gemm(const cpu::lut_view<F>& w, const float* x, index_t n, float* y,
            const options& opt = {1, compute::int8}) noexcept {
  return cpu::gemm<xsimd::default_arch>(w, x, n, y, opt);
}

} // namespace aplq
