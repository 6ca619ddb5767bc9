// SPDX-License-Identifier: Apache-2.0
// CPU GEMV and GEMM on the architecture this translation unit is compiled for (static dispatch:
// xsimd::default_arch, the best instruction set the compiler flags enable). For one binary that
// picks the instruction set at run time, link aplq_dispatch (aplq/dispatch.hpp).
#pragma once

#include "kernel.hpp"

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

} // namespace aplq
