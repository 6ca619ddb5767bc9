// SPDX-License-Identifier: Apache-2.0
// AVX2 primitives where xsimd has no instruction: nibble / bit-plane expansion of packed codes
// into 32 bytes, the u8 x s8 dot (vpmaddubsw + vpmaddwd), the u8 -> f32 widening, and F16C scale
// loads. Compiled only when the translation unit targets AVX2.
#pragma once

#if defined(__AVX2__)

#include <immintrin.h>

#include "generic.hpp"

namespace aplq {
namespace cpu {

namespace avx2 {

// Codes of one chunk as 32 bytes in lane_code order.
template <class F>
inline __m256i load_chunk(const std::uint8_t* src, int plane) noexcept {
  const __m256i mask = _mm256_set1_epi8(static_cast<char>(F::code_max));
  if constexpr (F::bits == 8) {
    (void)plane;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  } else if constexpr (!is_sequential<F>) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(plane * F::bits)), mask);
  } else if constexpr (F::bits == 4) {
    // 16 bytes: low nibbles -> lanes 0..15, high nibbles -> lanes 16..31.
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
  } else if constexpr (F::bits == 2) {
    // 8 bytes broadcast to four 64-bit lanes, lane p shifted by 2p: field p of every byte.
    std::uint64_t bytes;
    std::memcpy(&bytes, src, sizeof bytes);
    const __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(bytes)),
                                        _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(v, mask);
  } else {
    // 4 bytes, one bit per code in index order: byte l/8 to lane l, then test bit l%8.
    std::uint32_t bits;
    std::memcpy(&bits, src, sizeof bits);
    const __m256i spread =
        _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                             2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
    return _mm256_min_epu8(_mm256_and_si256(spread, bit), _mm256_set1_epi8(1));
  }
}

// Eight i32 partial sums of (codes - dot_bias) * x.
template <class F>
inline __m256i dot_chunk_i8(__m256i codes, const std::int8_t* x) noexcept {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  __m256i pairs;
  if constexpr (F::bits == 8) {
    // (u - 128) as int8; |w| * sign(x, w) keeps vpmaddubsw's operands u8 x s8 without overflow.
    const __m256i w = _mm256_xor_si256(codes, _mm256_set1_epi8(static_cast<char>(0x80)));
    pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
  } else {
    pairs = _mm256_maddubs_epi16(codes, xv);
  }
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

} // namespace avx2

template <class F, class A>
inline __m256i load_chunk(const std::uint8_t* src, int plane, requires_arch<xsimd::avx2>) noexcept {
  return avx2::load_chunk<F>(src, plane);
}

template <class F, class A>
inline void dequantize_chunk(__m256i codes, float c, xsimd::batch<float, A>* out,
                             requires_arch<xsimd::avx2>) noexcept {
  const __m128i lo = _mm256_castsi256_si128(codes);
  const __m128i hi = _mm256_extracti128_si256(codes, 1);
  if constexpr (!F::zero_point && F::bits >= 2) {
    // c = 2^(bits-1) is an integer: subtract it on the bytes, widen as signed, no float subtract.
    (void)c;
    const __m256i q =
        _mm256_sub_epi8(codes, _mm256_set1_epi8(static_cast<char>(1 << (F::bits - 1))));
    const __m128i qlo = _mm256_castsi256_si128(q);
    const __m128i qhi = _mm256_extracti128_si256(q, 1);
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qlo));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qlo, 8)));
    out[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qhi));
    out[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qhi, 8)));
  } else {
    const __m256 cv = _mm256_set1_ps(c);
    out[0] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), cv);
    out[1] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), cv);
    out[2] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), cv);
    out[3] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), cv);
  }
}

template <class F, class A>
inline xsimd::batch<std::int32_t, A> dot_chunk_i8(__m256i codes, const std::int8_t* x,
                                                  requires_arch<xsimd::avx2>) noexcept {
  return avx2::dot_chunk_i8<F>(codes, x);
}

#if defined(__F16C__)
template <class A>
inline float load_scale(half s, requires_arch<xsimd::avx2>) noexcept {
  return _cvtsh_ss(s.bits);
}
template <class A>
inline xsimd::batch<float, A> load_scales(const half* s, requires_arch<xsimd::avx2>) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}
#endif

} // namespace cpu
} // namespace aplq

#endif // __AVX2__
