// SPDX-License-Identifier: Apache-2.0
// AVX2 primitives where xsimd has no instruction: nibble / bit-plane expansion of packed codes
// into 32 bytes, the u8 x s8 dot (vpmaddubsw + vpmaddwd), codes to f32 (a vpshufb table lookup
// up to 4 bits, widening at 8), F16C scale loads, and the int8 panel kernel (8 weight rows per
// ymm). Compiled only when the translation unit targets AVX2.
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

// Eight i32 partial sums of (codes - dot_bias) * x. Always inlined: a translation unit built
// with AVX512-VNNI (the avx512vnni tier) gets its own body inside its own kernels.
template <class F>
APLQ_FORCE_INLINE __m256i dot_chunk_i8(__m256i codes, const std::int8_t* x) noexcept {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  // vpdpbusd: u8 x s8, four products per i32 lane, no 16-bit intermediate (same integers).
  const __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes, xv);
  if constexpr (F::bits == 8) // (u - 128) * x = u * x - 128 * x
    return _mm256_sub_epi32(
        sum, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), xv));
  else
    return sum;
#else
  __m256i pairs;
  if constexpr (F::bits == 8) {
    // (u - 128) as int8; |w| * sign(x, w) keeps vpmaddubsw's operands u8 x s8 without overflow.
    const __m256i w = _mm256_xor_si256(codes, _mm256_set1_epi8(static_cast<char>(0x80)));
    pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
  } else {
    pairs = _mm256_maddubs_epi16(codes, xv);
  }
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
#endif
}

// v, as far as the optimizer knows, changed: an add chain through it stays a chain. GCC
// reassociates a chain of integer adds into a tree, whose partial sums (for every activation row
// of a panel at once) then spill to the stack.
APLQ_FORCE_INLINE void opaque(__m256i& v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}

} // namespace avx2

template <class F, class A>
inline __m256i load_chunk(const std::uint8_t* src, int plane, requires_arch<xsimd::avx2>) noexcept {
  return avx2::load_chunk<F>(src, plane);
}

// The upper 16 bits of the f32 encoding of v, for v a multiple of 1/2 with at most eight
// significant bits (|v| <= 127.5): the lower 16 bits of such a float are zero. Only evaluated
// at compile time (the tables below are constant-initialized), so no code of it is shared
// between the per-ISA builds of this header.
constexpr std::uint16_t f32_high_half(double v) noexcept {
  if (v == 0.0)
    return 0;
  const unsigned sign = v < 0.0 ? 1u : 0u;
  double m = v < 0.0 ? -v : v;
  int e = 0;
  while (m >= 2.0) {
    m /= 2.0;
    ++e;
  }
  while (m < 1.0) {
    m *= 2.0;
    --e;
  }
  return static_cast<std::uint16_t>(sign << 15 | static_cast<unsigned>(e + 127) << 7 |
                                    static_cast<unsigned>((m - 1.0) * 128.0));
}

// The low (bytes[0]) and high (bytes[1]) byte of f32_high_half(u - c) for code u = i % 16, as
// vpshufb tables (the same 16 entries in both 128-bit lanes). c is the format's constant for
// symmetric formats and 0 for zero-point ones, whose group c is subtracted in f32 afterwards.
template <class F>
struct high_half_table {
  alignas(32) std::uint8_t bytes[2][32];
  constexpr high_half_table() noexcept : bytes{} {
    const double c = F::zero_point ? 0.0 : static_cast<double>(F::affine_c(0.0f));
    for (int i = 0; i < 32; ++i) {
      const int u = i % 16;
      const std::uint16_t h = u <= static_cast<int>(F::code_max) ? f32_high_half(u - c) : 0;
      bytes[0][i] = static_cast<std::uint8_t>(h & 0xff);
      bytes[1][i] = static_cast<std::uint8_t>(h >> 8);
    }
  }
};
template <class F>
inline constexpr high_half_table<F> high_halves{};

template <class F, class A>
inline void dequantize_chunk(__m256i codes, float c, xsimd::batch<float, A>* out,
                             requires_arch<xsimd::avx2>) noexcept {
  if constexpr (F::bits <= 4) {
    // Codes of up to 4 bits take 16 values, and u - c (or u) is a small float whose lower 16
    // bits are zero: two vpshufb look up its upper bytes and two unpacks put them in the upper
    // half of each 32-bit lane. The vpermd first moves dwords 0, 2, 4, 6 (lanes 0-3, 8-11,
    // 16-19, 24-27) to the low 128-bit lane, so that the in-lane unpacks return lanes in order.
    // Nine shuffles, against an add, three extracts, four widenings and four conversions.
    // AVX2, in cache, one thread, q4_g32_s32 in a 4-row tile: 1.79 -> 1.56 ns per 32 codes.
    const __m256i q = _mm256_permutevar8x32_epi32(codes, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    const __m256i lo = _mm256_shuffle_epi8(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(high_halves<F>.bytes[0])), q);
    const __m256i hi = _mm256_shuffle_epi8(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(high_halves<F>.bytes[1])), q);
    const __m256i w0 = _mm256_unpacklo_epi8(lo, hi); // lanes 0-3, 8-11 | 4-7, 12-15
    const __m256i w1 = _mm256_unpackhi_epi8(lo, hi); // lanes 16-19, 24-27 | 20-23, 28-31
    const __m256i zero = _mm256_setzero_si256();
    out[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w0));
    out[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w0));
    out[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w1));
    out[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w1));
    if constexpr (F::zero_point) {
      const __m256 cv = _mm256_set1_ps(c);
      for (int v = 0; v < 4; ++v)
        out[v] = _mm256_sub_ps(out[v], cv);
    } else {
      (void)c;
    }
  } else {
    // 8-bit codes widen and convert.
    const __m128i lo = _mm256_castsi256_si128(codes);
    const __m128i hi = _mm256_extracti128_si256(codes, 1);
    if constexpr (!F::zero_point) {
      // c = 128: subtract it on the bytes, widen as signed, no float subtract.
      (void)c;
      const __m256i q = _mm256_sub_epi8(codes, _mm256_set1_epi8(static_cast<char>(0x80)));
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
}

template <class F, class A>
APLQ_FORCE_INLINE xsimd::batch<std::int32_t, A> dot_chunk_i8(__m256i codes, const std::int8_t* x,
                                                             requires_arch<xsimd::avx2>) noexcept {
  return avx2::dot_chunk_i8<F>(codes, x);
}

#if defined(__FMA__)
// The int8 panel kernel (kernel.hpp, int8_panel_task) on ymm: 8 weight rows per vector. Codes of
// up to 4 bits stay unsigned and a chunk's 8 vpmaddubsw products add up in 16 bits (at most
// 8 * 2 * 15 * 127 = 30480, no saturation) before one vpmaddwd widens them; 8-bit codes are
// stored recentred, u - 128 as int8 (int8_panel_bias), and take the sign trick of dot_chunk_i8
// with a widening per step.
// 4096x4096, one AVX2 thread of a 2-vCPU Intel Xeon, weights in the last-level cache, best of
// 30, tiles against panels: q4_g32 batch 4 1742 and 1905 us, 8: 3388 and 2794, 16: 6885 and
// 4632, 64: 26.6 and 16.0 ms; q8_g32 batch 8 3477 and 3437 us, 64: 28.3 and 22.6 ms.
template <>
struct int8_panel_shape<xsimd::fma3<xsimd::avx2>> {
  using arch = xsimd::fma3<xsimd::avx2>;
  static constexpr int rows = 8, batch = 4; // 4 x (i16 sums, f32 sums) + codes, x, products
  static constexpr index_t min_batch = 8;
};
template <class F>
inline constexpr int int8_panel_bias<xsimd::fma3<xsimd::avx2>, F> = dot_bias<F>;

// rows[i]: chunk codes of weight row i (8 dwords); out [8][8][4] gets dword j of the 8 rows at
// out + 32 j, as u - Bias. An 8 x 8 dword transpose: two rounds of unpacks, then 128-bit halves.
template <class A, int Bias>
APLQ_FORCE_INLINE void int8_panel_transpose(const __m256i (&rows)[8], std::uint8_t* out,
                                            requires_arch<xsimd::avx2>) noexcept {
  static_assert(Bias == 0 || Bias == 128, "codes are unsigned or recentred 8-bit codes");
  // t[q][j]: rows 4q .. 4q+3 of column j (low 128 bits) and of column j + 4 (high 128 bits).
  __m256i t[2][4];
  for (int q = 0; q < 2; ++q) {
    const __m256i* g = rows + 4 * q;
    const __m256i s0 = _mm256_unpacklo_epi32(g[0], g[1]), s1 = _mm256_unpackhi_epi32(g[0], g[1]);
    const __m256i s2 = _mm256_unpacklo_epi32(g[2], g[3]), s3 = _mm256_unpackhi_epi32(g[2], g[3]);
    t[q][0] = _mm256_unpacklo_epi64(s0, s2);
    t[q][1] = _mm256_unpackhi_epi64(s0, s2);
    t[q][2] = _mm256_unpacklo_epi64(s1, s3);
    t[q][3] = _mm256_unpackhi_epi64(s1, s3);
  }
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(Bias));
  for (int j = 0; j < 4; ++j) {
    __m256i lo = _mm256_permute2x128_si256(t[0][j], t[1][j], 0x20);
    __m256i hi = _mm256_permute2x128_si256(t[0][j], t[1][j], 0x31);
    if constexpr (Bias != 0) {
      lo = _mm256_xor_si256(lo, flip);
      hi = _mm256_xor_si256(hi, flip);
    } else {
      (void)flip;
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * j), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * (j + 4)), hi);
  }
}

template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_magnitude(__m256i u, requires_arch<xsimd::avx2>) noexcept {
  return Signed ? _mm256_abs_epi8(u) : u;
}
// Unsigned codes: 16 i16 pair sums, added up in 16 bits over a chunk's 8 steps (at most 30480,
// so the saturating add, which the compiler leaves in its chain, gives the same integers);
// Signed: the sign trick of dot_chunk_i8 and a widening to i32 per step. Plain adds (see
// opaque) against these: 4096 columns, 1024 rows, batch 16, one AVX2 thread, in cache, best of
// 200, 4-bit group 32 1160-1190 -> 934-957 us, 8-bit 1413-1474 -> 1272-1365.
template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_step(__m256i sum, __m256i u, __m256i m, __m256i x,
                                          requires_arch<xsimd::avx2>) noexcept {
  if constexpr (Signed) {
    __m256i s =
        _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(m, _mm256_sign_epi8(x, u)),
                                                _mm256_set1_epi16(1)));
    avx2::opaque(s);
    return s;
  } else {
    return _mm256_adds_epi16(sum, _mm256_maddubs_epi16(m, x));
  }
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_sum(__m256i sum, requires_arch<xsimd::avx2>) noexcept {
  return Signed ? sum : _mm256_madd_epi16(sum, _mm256_set1_epi16(1));
}
// Each of the 8 bytes spread over its row's dword, then one bit per byte (as load_chunk's 1-bit
// expansion).
template <class A>
APLQ_FORCE_INLINE __m256i int8_panel_bits(const std::uint8_t* p, int shift,
                                          requires_arch<xsimd::avx2>) noexcept {
  std::int64_t bytes;
  std::memcpy(&bytes, p, sizeof bytes);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi64x(bytes), _mm256_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4,
                                                  4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7));
  const __m256i bit = _mm256_set1_epi32(shift == 0 ? 0x08040201 : static_cast<int>(0x80402010u));
  return _mm256_min_epu8(_mm256_and_si256(spread, bit), _mm256_set1_epi8(1));
}
#endif

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
