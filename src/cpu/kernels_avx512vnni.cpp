// SPDX-License-Identifier: Apache-2.0
// The CPU kernels instantiated for AVX512-VNNI (the avx512bw kernels with vpdpbusd dot
// products; built with that ISA's compiler flags, see src/meson.build).
#define APLQ_DISPATCH_ARCH aplq::cpu::avx512vnni
#define APLQ_DISPATCH_FN gemm_avx512vnni
#define APLQ_DISPATCH_LUT_FN lut_gemm_avx512vnni
#include "kernels.inc"
