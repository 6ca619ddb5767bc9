// SPDX-License-Identifier: Apache-2.0
// The kernels' primitives written once for any xsimd architecture, and the chunk geometry they
// share with the hand-written ones (arch/avx2.hpp). A chunk is 32 consecutive codes of one row:
// it never straddles a scale group (groups are whole multiples of 32) and it is the block over
// which the int8 policy quantizes activations.
//
// load_chunk returns the chunk's 32 codes in a layout-dependent lane order (lane_code); the
// kernels permute the activations into the same order once per call, so no primitive ever
// shuffles weights back into index order.
//
// Primitives are overloads on the architecture tag (requires_arch<X> is X const&): the overload
// for the most derived architecture wins, and xsimd::generic serves every other one.
#pragma once

#include <cstring>
#include <type_traits>

#include "../../format.hpp"
#include "../compat.hpp"

namespace aplq {
namespace cpu {

template <class Arch>
using requires_arch = const Arch&;

inline constexpr int chunk_codes = 32;

// The xsimd architecture whose registers the kernels of architecture A use. A itself by default;
// an ISA header may map its tag to narrower vectors (arch/avx512bw.hpp does). Kernels stay
// templated on A, so every ISA's instantiations keep names of their own.
template <class A>
struct vector_arch_of {
  using type = A;
};
template <class A>
using vector_arch = typename vector_arch_of<A>::type;

// The registers of the exact policy's tiles (kernel.hpp, tile_exact): vector_arch<A> by default.
// The AVX-512 tiers take zmm there (arch/avx512bw.hpp), where one vpermps looks a code up in a
// 16-entry f32 table.
template <class A>
struct exact_vector_arch_of : vector_arch_of<A> {};
template <class A>
using exact_vector_arch = typename exact_vector_arch_of<A>::type;

template <class F>
inline constexpr bool is_sequential =
    std::is_same<typename F::layout_type, layout::sequential>::value;

// Which code of a chunk sits in lane l once loaded. Sequential 2- and 4-bit codes come out as
// bit planes (all low fields of the chunk's bytes, then the next field, ...); every other
// layout and width keeps index order.
template <class F>
constexpr int lane_code(int l) noexcept {
  if constexpr (is_sequential<F> && (F::bits == 2 || F::bits == 4)) {
    constexpr int lanes = chunk_codes / F::per_byte;
    return (l % lanes) * F::per_byte + l / lanes;
  } else {
    return l;
  }
}

// Bytes a chunk spans in a sequential row (a striped chunk is one plane of a 32-byte stripe).
template <class F>
inline constexpr index_t chunk_bytes = chunk_codes / F::per_byte;

// The bias subtracted from codes before the u8 x s8 product: 8-bit codes are recentred to int8
// so that the pairwise sums of the product cannot saturate 16 bits; narrower codes go unsigned.
template <class F>
inline constexpr int dot_bias = F::bits == 8 ? 128 : 0;

struct generic_chunk {
  alignas(32) std::uint8_t u[chunk_codes];
};

// `src` points at the chunk's first byte (sequential) or its stripe (striped; plane picks the
// chunk within it).
template <class F, class A>
inline generic_chunk load_chunk(const std::uint8_t* src, int plane,
                                requires_arch<xsimd::generic>) noexcept {
  generic_chunk c;
  if constexpr (is_sequential<F>) {
    (void)plane;
    for (int l = 0; l < chunk_codes; ++l) {
      const int j = lane_code<F>(l);
      c.u[l] = static_cast<std::uint8_t>((src[j / F::per_byte] >> (j % F::per_byte * F::bits)) &
                                         F::code_max);
    }
  } else {
    for (int l = 0; l < chunk_codes; ++l)
      c.u[l] = static_cast<std::uint8_t>((src[l] >> (plane * F::bits)) & F::code_max);
  }
  return c;
}

// out[v] = (codes - c) of lanes [v * W, v * W + W) as floats.
template <class F, class A>
inline void dequantize_chunk(const generic_chunk& codes, float c, xsimd::batch<float, A>* out,
                             requires_arch<xsimd::generic>) noexcept {
  using fb = xsimd::batch<float, A>;
  alignas(64) float tmp[chunk_codes];
  for (int l = 0; l < chunk_codes; ++l)
    tmp[l] = static_cast<float>(codes.u[l]) - c;
  for (int v = 0; v < chunk_codes / static_cast<int>(fb::size); ++v)
    out[v] = fb::load_unaligned(tmp + v * fb::size);
}

// Lane-wise partial sums of (codes - dot_bias) * x; their total is the chunk's integer dot.
template <class F, class A>
inline xsimd::batch<std::int32_t, A> dot_chunk_i8(const generic_chunk& codes, const std::int8_t* x,
                                                  requires_arch<xsimd::generic>) noexcept {
  using ib = xsimd::batch<std::int32_t, A>;
  alignas(64) std::int32_t part[ib::size] = {};
  for (int l = 0; l < chunk_codes; ++l)
    part[l % ib::size] += (static_cast<int>(codes.u[l]) - dot_bias<F>)*x[l];
  return ib::load_unaligned(part);
}

template <class A>
inline float load_scale(float s, requires_arch<xsimd::generic>) noexcept {
  return s;
}
template <class A>
inline float load_scale(half s, requires_arch<xsimd::generic>) noexcept {
  return half_to_float(s);
}

// fb::size consecutive scales (or zero points) as floats.
template <class A>
inline xsimd::batch<float, A> load_scales(const float* s, requires_arch<xsimd::generic>) noexcept {
  return xsimd::batch<float, A>::load_unaligned(s);
}
template <class A>
inline xsimd::batch<float, A> load_scales(const half* s, requires_arch<xsimd::generic>) noexcept {
  alignas(64) float tmp[xsimd::batch<float, A>::size];
  for (std::size_t i = 0; i < xsimd::batch<float, A>::size; ++i)
    tmp[i] = half_to_float(s[i]);
  return xsimd::batch<float, A>::load_aligned(tmp);
}

// ---- The int8 policy's panels (kernel.hpp, int8_panel_task) ----

// Architecture A's int8 panel kernel: `rows` weight rows per vector of `arch` (an xsimd
// architecture, i32 lanes; 0 rows: A has none, the tiles serve every batch), `batch` activation
// rows per kernel call (as many accumulators as the registers hold), and `min_batch`, the batch
// from which the panels beat the tiles.
template <class A>
struct int8_panel_shape {
  using arch = A;
  static constexpr int rows = 0, batch = 0;
  static constexpr index_t min_batch = 0;
};
// What the panels hold of format F's codes on A: u - int8_panel_bias (0, or 128 for 8-bit codes
// where the kernel's products need signed operands); the driver recentres by c - bias.
template <class A, class F>
inline constexpr int int8_panel_bias = 0;

// The int8 panel kernel's primitives, declared here for name lookup only: an architecture with
// int8 panels defines its overloads (arch/avx2.hpp, arch/avx512bw.hpp), and kernel.hpp calls them
// only for such an architecture. B is the register type (__m256i, __m512i) of
// xsimd::batch<std::int32_t, int8_panel_shape<A>::arch>.
// - int8_panel_transpose: R rows' chunk codes (rows[i], as load_chunk returns them) to panel
//   codes less Bias, dword j of every row at out + j * R * 4;
// - int8_panel_magnitude: what int8_panel_step takes of a vector u of panel codes (|u| where the
//   codes are Signed, recentred);
// - int8_panel_step: sum plus the products of u (through its magnitude m) and x, a broadcast
//   dword of activations, four per lane, in the arch's partial-sum form;
// - int8_panel_sum: those partial sums as one i32 dot per lane;
// - int8_panel_bits: lane i the dword whose byte q is bit q of ((p[i] >> shift) & 15), shift 0
//   or 4, for the R bytes from p (one bit plane of 4 codes of each of R rows, as lut.hpp's tiles
//   hold them).
template <class A, int Bias, class Rows>
void int8_panel_transpose(const Rows& rows, std::uint8_t* out,
                          requires_arch<xsimd::generic>) noexcept;
template <class A, bool Signed, class B>
B int8_panel_magnitude(B u, requires_arch<xsimd::generic>) noexcept;
template <class A, bool Signed, class B>
B int8_panel_step(B sum, B u, B m, B x, requires_arch<xsimd::generic>) noexcept;
template <class A, bool Signed, class B>
B int8_panel_sum(B sum, requires_arch<xsimd::generic>) noexcept;
template <class A>
void int8_panel_bits(const std::uint8_t* p, int shift, requires_arch<xsimd::generic>) noexcept;

} // namespace cpu
} // namespace aplq
