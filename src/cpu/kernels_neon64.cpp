// SPDX-License-Identifier: Apache-2.0
// The CPU kernels instantiated for neon64 (built with that ISA's compiler flags; see
// src/meson.build).
#define APLQ_DISPATCH_ARCH xsimd::neon64
#define APLQ_DISPATCH_FN gemm_neon64
#define APLQ_DISPATCH_LUT_FN lut_gemm_neon64
#include "kernels.inc"
