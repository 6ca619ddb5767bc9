// SPDX-License-Identifier: Apache-2.0
// The CPU kernels instantiated for avx512bw (built with that ISA's compiler flags; see
// src/meson.build).
#define APLQ_DISPATCH_ARCH xsimd::avx512bw
#define APLQ_DISPATCH_FN gemm_avx512bw
#define APLQ_DISPATCH_LUT_FN lut_gemm_avx512bw
#include "kernels.inc"
