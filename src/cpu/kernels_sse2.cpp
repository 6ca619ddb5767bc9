// SPDX-License-Identifier: Apache-2.0
// The CPU kernels instantiated for sse2 (built with that ISA's compiler flags; see
// src/meson.build).
#define APLQ_DISPATCH_ARCH xsimd::sse2
#define APLQ_DISPATCH_FN gemm_sse2
#define APLQ_DISPATCH_LUT_FN lut_gemm_sse2
#include "kernels.inc"
