// SPDX-License-Identifier: Apache-2.0
// AVX-512BW: the kernels run on 256-bit vectors with the AVX2 primitives, compiled with
// AVX-512VL so they also get EVEX encodings and 32 vector registers. A chunk (32 codes) fills
// exactly one ymm, and on AMD Zen 4, where 512-bit operations are split in two, zmm kernels were
// slower: in-cache int8 GEMV of q4_g32_s32 1024x1024 took 64 us with zmm batches against 50 us
// with ymm (best of 300 calls, one thread). The one exception is the exact policy's FMA-bound
// panel micro-kernel, which uses zmm (panel_shape in kernel.hpp).
#pragma once

#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__)

#include "avx2.hpp"

namespace aplq {
namespace cpu {

template <>
struct vector_arch_of<xsimd::avx512bw> {
  using type = xsimd::fma3<xsimd::avx2>;
};

#if defined(__AVX512VNNI__)
// AVX512-VNNI (Intel from Cascade Lake, AMD from Zen 4): the avx512bw kernels with vpdpbusd for
// the int8 dot products (arch/avx2.hpp). xsimd 8 has no tag for it, so this is aplq's own, used
// only as the kernels' template argument (its instantiations get names of their own); vectors
// stay xsimd's.
struct avx512vnni : xsimd::avx512bw {
  static constexpr char const* name() noexcept { return "avx512vnni"; }
};
template <>
struct vector_arch_of<avx512vnni> {
  using type = xsimd::fma3<xsimd::avx2>;
};
#endif

} // namespace cpu
} // namespace aplq

#endif
