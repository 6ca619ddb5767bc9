// SPDX-License-Identifier: Apache-2.0
// A quantization format is a type: bit width, group size, zero-point policy, scale type and
// layout are template parameters of `format`, and every kernel, packer and test is written once
// against it. The only place that turns run-time numbers into a format is visit_format
// (visit.hpp).
//
// clang-format off
// Values. A row of K weights is cut into groups of Group consecutive weights (or one group for
// the whole row) that share a scale s (and a zero point z). Each weight is stored as an unsigned
// code u in [0, 2^Bits):
//   symmetric, Bits >= 2:  w = s * (u - 2^(Bits-1))     (q = u - 2^(Bits-1), signed)
//   symmetric, Bits == 1:  w = s * (2u - 1)             (q in {-1, +1}; bit 1 means +s)
//   zero point:            w = s * (u - z)              (z stored like s, one per group)
// Every case is the affine form w = a * (u - c) with a per-group (a, c) (affine_a and affine_c below), which
// is what the kernels compute. Ternary weights (q in {-1, 0, +1}) ride on 2-bit symmetric.
// Scales and zero points are planar arrays [rows][groups], f32 or f16, separate from the codes.
//
// Layouts, 4-bit, one row (cN = code N, low bits first):
//
//   sequential (interchange):        byte:   0        1        2            K/2-1
//                                           [c1|c0]  [c3|c2]  [c5|c4] ...  [cK-1|cK-2]
//   2-bit:  byte j = [c4j+3|c4j+2|c4j+1|c4j]      1-bit: byte j = bits c8j (LSB) .. c8j+7 (MSB)
//
//   striped<32> (CPU kernels):       byte:   0         1         ...  31
//                                stripe 0   [c32|c0]  [c33|c1]  ...  [c63|c31]
//                                stripe 1   [c96|c64] [c97|c65] ...  [c127|c95]
//   2-bit: byte i of a stripe = [c96+i|c64+i|c32+i|ci]  (128 codes per stripe)
//   1-bit: bit p of byte i of a stripe = code 32p + i   (256 codes per stripe)
//   8-bit: one code per byte; rows padded to 32 bytes.
//   One 32-byte load, a shift by p*Bits and a mask give codes 32p .. 32p+31 in order.
// clang-format on
#pragma once

#include <type_traits>

#include "half.hpp"
#include "layout.hpp"

namespace aplq {

// Group value meaning "one group spanning the whole row" (per-row scales).
inline constexpr int whole_row = 0;

template <int Bits, int Group, bool ZeroPoint = false, class Scale = float,
          class Layout = layout::sequential>
struct format {
  static_assert(Bits == 1 || Bits == 2 || Bits == 4 || Bits == 8,
                "format: Bits must be 1, 2, 4 or 8");
  static_assert(Group == whole_row || Group == 32 || Group == 64 || Group == 128 || Group == 256,
                "format: Group must be 32, 64, 128, 256 or whole_row");
  static_assert(std::is_same<Scale, float>::value || std::is_same<Scale, half>::value,
                "format: Scale must be float or aplq::half");

  static constexpr int bits = Bits;
  static constexpr int group = Group;
  static constexpr bool zero_point = ZeroPoint;
  static constexpr int per_byte = 8 / Bits;
  static constexpr unsigned code_max = (1u << Bits) - 1u;
  using scale_type = Scale;
  using layout_type = Layout;
  template <class L>
  using with_layout = format<Bits, Group, ZeroPoint, Scale, L>;

  APLQ_HOST_DEVICE static constexpr index_t groups(index_t cols) noexcept {
    return Group == whole_row ? 1 : (cols + Group - 1) / Group;
  }
  APLQ_HOST_DEVICE static constexpr index_t group_size(index_t cols) noexcept {
    return Group == whole_row ? cols : index_t{Group};
  }
  APLQ_HOST_DEVICE static constexpr index_t row_bytes(index_t cols) noexcept {
    return Layout::template row_bytes<Bits>(cols);
  }

  // Symmetric formats: the signed value q of code u.
  APLQ_HOST_DEVICE static constexpr int symmetric_value(unsigned u) noexcept {
    return Bits == 1 ? 2 * static_cast<int>(u) - 1 : static_cast<int>(u) - (1 << (Bits - 1));
  }
  // The affine form w = a * (u - c) of a group with stored scale s and zero point z.
  APLQ_HOST_DEVICE static constexpr float affine_a(float s) noexcept {
    return (!ZeroPoint && Bits == 1) ? 2.0f * s : s;
  }
  APLQ_HOST_DEVICE static constexpr float affine_c(float z) noexcept {
    return ZeroPoint ? z : (Bits == 1 ? 0.5f : static_cast<float>(1 << (Bits - 1)));
  }
};

// Short names for the common formats (sequential layout, f32 scales, symmetric).
using q1_row = format<1, whole_row>;
using q1_g32 = format<1, 32>;
using q1_g128 = format<1, 128>;
using q2_g32 = format<2, 32>;
using q2_g128 = format<2, 128>;
using q4_g32 = format<4, 32>;
using q4_g64 = format<4, 64>;
using q4_g128 = format<4, 128>;
using q8_g32 = format<8, 32>;
using q8_g128 = format<8, 128>;
using q8_row = format<8, whole_row>;

template <class T>
struct is_format : std::false_type {};
template <int B, int G, bool Z, class S, class L>
struct is_format<format<B, G, Z, S, L>> : std::true_type {};

} // namespace aplq
