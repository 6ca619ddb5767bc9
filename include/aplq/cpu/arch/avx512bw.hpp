// SPDX-License-Identifier: Apache-2.0
// AVX-512BW: the kernels run on 256-bit vectors with the AVX2 primitives, compiled with
// AVX-512VL so they also get EVEX encodings and 32 vector registers. A chunk (32 codes) fills
// exactly one ymm, and on AMD Zen 4, where 512-bit operations are split in two, zmm kernels were
// slower: in-cache int8 GEMV of q4_g32_s32 1024x1024 took 64 us with zmm batches against 50 us
// with ymm (best of 300 calls, one thread). The exceptions are the panel kernels of large
// batches, where every vector operation does the same work in more rows: the exact policy's
// FMA-bound micro-kernel (panel_shape in kernel.hpp) and, with VNNI, the int8 panel kernel below;
// and the exact policy's tiles, whose dequantization is a table lookup on zmm (below).
#pragma once

#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__)

#include "avx2.hpp"

namespace aplq {
namespace cpu {

template <>
struct vector_arch_of<xsimd::avx512bw> {
  using type = xsimd::fma3<xsimd::avx2>;
};

// The exact policy's tiles on zmm. A chunk's code bytes are widened to 32 dwords once, and for
// up to 4 bits one vpermps per 16 codes looks u - c up in a 16-entry f32 table, indexed by the
// low 4 bits of each dword: so the bits above a code (the next planes of a striped byte) need no
// mask, and the table repeats its 2^bits values. A 4-bit stripe costs 2 widenings, 2 shifts and
// 4 lookups for its 64 codes, where the ymm dequantization takes 9 shuffles per 32.
// 4096x4096 exact GEMV out of cache on a 2-vCPU Intel Xeon (Emerald Rapids), ymm -> zmm tiles,
// median of 4 alternating runs of 200 calls each, 1 thread: q4_g32_s32 1570 -> 1095 us,
// q4_g32_z_s32 1992 -> 1236, q8_g32_s32 2291 -> 1807, q2_g32_s32 1288 -> 867, q1_g32_s32
// 1395 -> 947; 2 threads, q4_g32_s32 755 -> 625; batch 4, 1 thread, q4_g32_s32 3943 -> 3548.
template <>
struct exact_vector_arch_of<xsimd::avx512bw> {
  using type = xsimd::avx512bw;
};

// A chunk's 32 codes in lane_code order, one per dword: lanes 0-15 in v[0], 16-31 in v[1]. Up
// to 4 bits, a dword's bits above the code are left as they are (dequantize_chunk ignores them).
struct zmm_chunk {
  __m512i v[2];
};

template <class F, class A>
APLQ_FORCE_INLINE zmm_chunk load_chunk(const std::uint8_t* src, int plane,
                                       requires_arch<xsimd::avx512bw>) noexcept {
  const auto bytes16 = [src](int at) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at)));
  };
  if constexpr (F::bits == 8) {
    (void)plane;
    return {{bytes16(0), bytes16(16)}};
  } else if constexpr (!is_sequential<F>) {
    // Striped: plane p of the stripe's 32 bytes. The compiler shares the widening between the
    // planes of a stripe (for_each_chunk passes them as constants).
    const __m128i shift = _mm_cvtsi32_si128(plane * F::bits);
    return {{_mm512_srl_epi32(bytes16(0), shift), _mm512_srl_epi32(bytes16(16), shift)}};
  } else if constexpr (F::bits == 4) {
    // 16 bytes: low nibbles to lanes 0-15, high nibbles to lanes 16-31.
    (void)plane;
    const __m512i b = bytes16(0);
    return {{b, _mm512_srli_epi32(b, 4)}};
  } else if constexpr (F::bits == 2) {
    // 8 bytes: field p of byte k to lane 8p + k.
    (void)plane;
    std::uint64_t bytes;
    std::memcpy(&bytes, src, sizeof bytes);
    const __m512i b = _mm512_cvtepu8_epi32(_mm_set1_epi64x(static_cast<long long>(bytes)));
    const __m512i lo = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    return {{_mm512_srlv_epi32(b, lo),
             _mm512_srlv_epi32(b, _mm512_add_epi32(lo, _mm512_set1_epi32(4)))}};
  } else {
    // 4 bytes: bit l to lane l.
    (void)plane;
    std::uint32_t bits;
    std::memcpy(&bits, src, sizeof bits);
    const __m512i b = _mm512_set1_epi32(static_cast<int>(bits));
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return {{_mm512_srlv_epi32(b, lo),
             _mm512_srlv_epi32(b, _mm512_add_epi32(lo, _mm512_set1_epi32(16)))}};
  }
}

// Entry i: (i mod 2^bits) - c, with the format's c for symmetric formats and 0 for zero-point
// ones (whose group c is subtracted from the table).
template <class F>
struct code_value_table {
  alignas(64) float v[16];
  constexpr code_value_table() noexcept : v{} {
    const float c = F::zero_point ? 0.0f : F::affine_c(0.0f);
    for (int i = 0; i < 16; ++i)
      v[i] = static_cast<float>(i & static_cast<int>(F::code_max)) - c;
  }
};
template <class F>
inline constexpr code_value_table<F> code_values{};

template <class F, class A>
APLQ_FORCE_INLINE void dequantize_chunk(const zmm_chunk& codes, float c,
                                        xsimd::batch<float, A>* out,
                                        requires_arch<xsimd::avx512bw>) noexcept {
  if constexpr (F::bits <= 4) {
    __m512 table = _mm512_load_ps(code_values<F>.v);
    if constexpr (F::zero_point)
      table = _mm512_sub_ps(table, _mm512_set1_ps(c));
    else
      (void)c;
    out[0] = _mm512_permutexvar_ps(codes.v[0], table);
    out[1] = _mm512_permutexvar_ps(codes.v[1], table);
  } else if constexpr (F::zero_point) {
    const __m512 cv = _mm512_set1_ps(c);
    out[0] = _mm512_sub_ps(_mm512_cvtepi32_ps(codes.v[0]), cv);
    out[1] = _mm512_sub_ps(_mm512_cvtepi32_ps(codes.v[1]), cv);
  } else {
    // c = 128, subtracted exactly on the integers.
    (void)c;
    const __m512i cv = _mm512_set1_epi32(128);
    out[0] = _mm512_cvtepi32_ps(_mm512_sub_epi32(codes.v[0], cv));
    out[1] = _mm512_cvtepi32_ps(_mm512_sub_epi32(codes.v[1], cv));
  }
}

// Without VNNI, the int8 panels of arch/avx2.hpp (8 rows per ymm, vpmaddubsw).
template <>
struct int8_panel_shape<xsimd::avx512bw> : int8_panel_shape<xsimd::fma3<xsimd::avx2>> {};
template <class F>
inline constexpr int int8_panel_bias<xsimd::avx512bw, F> = dot_bias<F>;
template <class A, int Bias>
APLQ_FORCE_INLINE void int8_panel_transpose(const __m256i (&rows)[8], std::uint8_t* out,
                                            requires_arch<xsimd::avx512bw>) noexcept {
  int8_panel_transpose<A, Bias>(rows, out, xsimd::fma3<xsimd::avx2>{});
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_magnitude(__m256i u, requires_arch<xsimd::avx512bw>) noexcept {
  return int8_panel_magnitude<A, Signed>(u, xsimd::fma3<xsimd::avx2>{});
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_step(__m256i sum, __m256i u, __m256i m, __m256i x,
                                          requires_arch<xsimd::avx512bw>) noexcept {
  return int8_panel_step<A, Signed>(sum, u, m, x, xsimd::fma3<xsimd::avx2>{});
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m256i int8_panel_sum(__m256i sum, requires_arch<xsimd::avx512bw>) noexcept {
  return int8_panel_sum<A, Signed>(sum, xsimd::fma3<xsimd::avx2>{});
}
template <class A>
APLQ_FORCE_INLINE __m256i int8_panel_bits(const std::uint8_t* p, int shift,
                                          requires_arch<xsimd::avx512bw>) noexcept {
  return int8_panel_bits<A>(p, shift, xsimd::fma3<xsimd::avx2>{});
}

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
template <>
struct exact_vector_arch_of<avx512vnni> : exact_vector_arch_of<xsimd::avx512bw> {};

// The int8 panel kernel (kernel.hpp, int8_panel_task): a zmm of 16 i32 lanes holds 16 weight
// rows, so vpdpbusd with one broadcast dword of activations adds 4 products to each of 16
// outputs, and a chunk's 16 integer dots meet their scales in four vector operations (the
// tiles need a conversion and an FMA per row and chunk, for a vector of 8 partial sums).
// 4096x4096, one thread of a 2-vCPU Intel Xeon, weights in the last-level cache, best of 30,
// tiles against panels: q4_g32 batch 2 943 and 1147 us, 3: 1477 and 1282, 4: 1352 and 1289, 8:
// 2787 and 1583; q8_g32 and q2_g128 alike.
template <>
struct int8_panel_shape<avx512vnni> {
  using arch = xsimd::avx512bw;
  static constexpr int rows = 16, batch = 8; // 8 x (i32 sums, f32 sums) + codes, a, c
  static constexpr index_t min_batch = 3;
};
template <class F>
inline constexpr int int8_panel_bias<avx512vnni, F> = 0;

// rows[i] holds chunk codes of weight row i (32 bytes, 8 dwords); out [8][16][4] gets dword j of
// all 16 rows at out + 64 j. Two 8 x 8 dword transposes, rows 0-7 in the low halves of the zmm
// and rows 8-15 in the high halves: two rounds of unpacks, then one two-source permute per
// output.
template <class A, int Bias>
APLQ_FORCE_INLINE void int8_panel_transpose(const __m256i (&rows)[16], std::uint8_t* out,
                                            requires_arch<avx512vnni>) noexcept {
  static_assert(Bias == 0, "vpdpbusd takes the codes unsigned");
  __m512i z[8];
  for (int i = 0; i < 8; ++i)
    z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(rows[i]), rows[i + 8], 1);
  // Per 128-bit lane L of a half: t[q][j] = rows 4q .. 4q+3 of column j (L = 0) or j + 4 (L = 1).
  __m512i t[2][4];
  for (int q = 0; q < 2; ++q) {
    const __m512i* g = z + 4 * q;
    const __m512i s0 = _mm512_unpacklo_epi32(g[0], g[1]), s1 = _mm512_unpackhi_epi32(g[0], g[1]);
    const __m512i s2 = _mm512_unpacklo_epi32(g[2], g[3]), s3 = _mm512_unpackhi_epi32(g[2], g[3]);
    t[q][0] = _mm512_unpacklo_epi64(s0, s2);
    t[q][1] = _mm512_unpackhi_epi64(s0, s2);
    t[q][2] = _mm512_unpacklo_epi64(s1, s3);
    t[q][3] = _mm512_unpackhi_epi64(s1, s3);
  }
  // Column j: rows 0-3 and 4-7 from lane 0 of t[0][j] and t[1][j] (their low halves), rows 8-11
  // and 12-15 from lane 2 (their high halves); column j + 4 from lanes 1 and 3.
  const __m512i low = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
  const __m512i high = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  for (int j = 0; j < 4; ++j) {
    _mm512_store_si512(out + 64 * j, _mm512_permutex2var_epi64(t[0][j], low, t[1][j]));
    _mm512_store_si512(out + 64 * (j + 4), _mm512_permutex2var_epi64(t[0][j], high, t[1][j]));
  }
}

// vpdpbusd: u8 codes x s8 activations, four products per lane into the i32 sum, no 16-bit
// intermediate.
template <class A, bool Signed>
APLQ_FORCE_INLINE __m512i int8_panel_magnitude(__m512i u, requires_arch<avx512vnni>) noexcept {
  static_assert(!Signed, "vpdpbusd takes the codes unsigned");
  return u;
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m512i int8_panel_step(__m512i sum, __m512i u, __m512i, __m512i x,
                                          requires_arch<avx512vnni>) noexcept {
  return _mm512_dpbusd_epi32(sum, u, x);
}
template <class A, bool Signed>
APLQ_FORCE_INLINE __m512i int8_panel_sum(__m512i sum, requires_arch<avx512vnni>) noexcept {
  return sum;
}
// The 16 possible dwords, one vpermd lookup.
template <class A>
APLQ_FORCE_INLINE __m512i int8_panel_bits(const std::uint8_t* p, int shift,
                                          requires_arch<avx512vnni>) noexcept {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i nibble =
      _mm512_and_si512(_mm512_srl_epi32(bytes, _mm_cvtsi32_si128(shift)), _mm512_set1_epi32(15));
  const __m512i spread = _mm512_set_epi32( // element n: byte q is bit q of n
      0x01010101, 0x01010100, 0x01010001, 0x01010000, 0x01000101, 0x01000100, 0x01000001,
      0x01000000, 0x00010101, 0x00010100, 0x00010001, 0x00010000, 0x00000101, 0x00000100,
      0x00000001, 0x00000000);
  return _mm512_permutexvar_epi32(nibble, spread);
}
#endif

} // namespace cpu
} // namespace aplq

#endif
