// SPDX-License-Identifier: Apache-2.0
// AVX-512BW primitives. A chunk stays 32 bytes (expanded with the AVX2 code, which AVX-512BW
// machines run natively); the widening to f32 fills 16-lane registers.
#pragma once

#if defined(__AVX512BW__) && defined(__AVX512F__)

#include "avx2.hpp"

namespace aplq {
namespace cpu {

template <class F, class A>
inline __m256i load_chunk(const std::uint8_t* src, int plane,
                          requires_arch<xsimd::avx512bw>) noexcept {
  return avx2::load_chunk<F>(src, plane);
}

template <class F, class A>
inline void dequantize_chunk(__m256i codes, float c, xsimd::batch<float, A>* out,
                             requires_arch<xsimd::avx512bw>) noexcept {
  const __m512 cv = _mm512_set1_ps(c);
  out[0] =
      _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(codes))), cv);
  out[1] = _mm512_sub_ps(
      _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(codes, 1))), cv);
}

template <class F, class A>
inline xsimd::batch<std::int32_t, A> dot_chunk_i8(__m256i codes, const std::int8_t* x,
                                                  requires_arch<xsimd::avx512bw>) noexcept {
  return _mm512_zextsi256_si512(avx2::dot_chunk_i8<F>(codes, x));
}

#if defined(__F16C__)
template <class A>
inline float load_scale(half s, requires_arch<xsimd::avx512bw>) noexcept {
  return _cvtsh_ss(s.bits);
}
#endif

} // namespace cpu
} // namespace aplq

#endif
