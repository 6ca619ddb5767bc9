// SPDX-License-Identifier: Apache-2.0
// The CPU kernels instantiated for avx2 (built with that ISA's compiler flags; see
// src/meson.build).
#define APLQ_DISPATCH_ARCH xsimd::fma3<xsimd::avx2>
#define APLQ_DISPATCH_FN gemm_avx2
#define APLQ_DISPATCH_LUT_FN lut_gemm_avx2
#include "kernels.inc"
